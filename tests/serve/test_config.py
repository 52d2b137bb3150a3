"""`facegan serve`'s settings (facegan/serve/config.py): every ServeConfig/ServeLimits field is a flag."""

from __future__ import annotations

import pytest


def test_serve_flags_are_the_config_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """Every ServeConfig/ServeLimits field is a flag of `facegan serve`, and the flags given (only
    those) land in the config; repeated flags collect, --forwarded-allow-ips splits on commas."""
    import dataclasses

    from facegan.cli.flags import given_fields
    from facegan.cli.main import build_parser
    from facegan.serve import ServeConfig, ServeLimits

    def config(argv: list[str]) -> ServeConfig:
        args = build_parser().parse_args(["serve", *argv])
        limits = ServeLimits(**given_fields(args, ServeLimits))
        return ServeConfig(**given_fields(args, ServeConfig), limits=limits)

    run = "runs/00001-celeba/checkpoints/latest.pt"
    cfg = config(
        [
            "--checkpoint",
            "a=x.pt",
            "--checkpoint",
            run,
            "--pretrained",
            "celeba64",
            "--port",
            "0",
            "--workers",
            "2",
            "--amp",
            "off",
            "--budget-mpix",
            "8",
            "--client-budget-mpix",
            "4",
            "--forwarded-allow-ips",
            "10.0.0.1, 10.1.0.0/16",
        ]
    )
    assert cfg == ServeConfig(
        checkpoint=("a=x.pt", run),
        pretrained=("celeba64",),
        port=0,
        workers=2,
        amp="off",
        limits=ServeLimits(
            budget_mpix=8, client_budget_mpix=4, forwarded_allow_ips=("10.0.0.1", "10.1.0.0/16")
        ),
    )
    assert list(cfg.sources())[1:] == ["a", "00001-celeba"]  # after the shipped celeba64
    assert config([]) == ServeConfig()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    serve_help = capsys.readouterr().out
    for kind in (ServeConfig, ServeLimits):
        for f in dataclasses.fields(kind):
            if f.name != "limits":
                assert f"--{f.name.replace('_', '-')}" in serve_help, f.name
    assert "(default: 64)" in serve_help and "--checkpoint [NAME=]PATH" in serve_help
