"""Every verb takes `--config FILE` and `--print-config`: what --print-config prints, fed back through
--config, prints the identical text (a fixed point); a bad value or key in a file is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegan.cli.main import VERBS, main

# Each verb with a command line that sets something of each kind (a number, a list, a choice, a flag).
ARGS = {
    "prepare": ["src", "--out", "o", "--size", "32", "--min-side", "20", "--force", "--holdout", "0.2"],
    "train": ["--preset", "tiny", "--lr", "1e-3", "--hflip", "--diffaug", "color", "--steps", "9"],
    "generate": ["--pretrained", "celeba64", "--n", "4", "--edit", "Smiling=1", "--truncation", "0.7"],
    "export": ["--checkpoint", "g.safetensors", "--out", "x.zip", "--format", "hub", "--dataset", "a/b"],
    "evaluate": ["--pretrained", "celeba64", "--data", "d", "--num-fake", "8", "--real-split", "all"],
    "plot": ["runs/00001"],
    "serve": [
        "--checkpoint",
        "a=x.pt",
        "--checkpoint",
        "y.pt",
        "--forwarded-allow-ips",
        "10.0.0.1,10.1.0.0/16",
    ],
    "directions": ["--pretrained", "celeba64", "--out", "d.safetensors", "--method", "ganspace"],
    "evaluate-edits": ["--pretrained", "celeba64", "--data", "d", "--attrs", "a.txt", "--half", "A"],
}
# A value of the wrong type for one setting of each verb, as a config file line, and what the error says.
BAD = {
    "prepare": ("size: big", "size must be an integer, got 'big'"),
    "train": ("model:\n  ngf: wide", "model.ngf must be an integer, got 'wide'"),
    "generate": ("n: many", "n must be an integer, got 'many'"),
    "export": ("format: zip", "format must be one of safetensors, hub, onnx or null, got 'zip'"),
    "evaluate": ("batch_size: [1]", "batch_size must be an integer"),
    "plot": ("run: [a, b]", "run must be a string or null"),
    "serve": ("port: high", "port must be an integer, got 'high'"),
    "directions": ("count: 2.5", "count must be an integer, got '2.5'"),
    "evaluate-edits": ("half: C", "half must be one of A, B, got 'C'"),
}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_verb_is_covered() -> None:
    assert set(ARGS) == set(VERBS) == set(BAD)


@pytest.mark.parametrize("verb", list(VERBS))
def test_print_config_is_a_fixed_point(verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, first, err = cli(capsys, verb, *ARGS[verb], "--print-config")
    assert code == 0, err
    assert first.startswith(f"# facegan {verb} config") and "print_config" not in first
    (tmp_path / "a.yaml").write_text(first)
    code, again, err = cli(capsys, verb, "--config", str(tmp_path / "a.yaml"), "--print-config")
    assert code == 0, err
    assert again == first
    # not just any fixed point: the settings given on the command line are in it
    code, plain, _ = cli(capsys, verb, "--print-config")
    assert code == 0 and plain != first


@pytest.mark.parametrize("verb", list(VERBS))
def test_bad_value_in_a_config_file_is_one_line(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, expect = BAD[verb]
    (tmp_path / "bad.yaml").write_text(line + "\n")
    code, out, err = cli(capsys, verb, *ARGS[verb], "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"facegan {verb}: error: {tmp_path / 'bad.yaml'}: " in err and expect in err, err


@pytest.mark.parametrize("verb", list(VERBS))
def test_unknown_key_in_a_config_file_is_one_line(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "typo.yaml").write_text("no_such_setting: 1\n")
    code, _, err = cli(capsys, verb, "--config", str(tmp_path / "typo.yaml"), "--print-config")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unknown key 'no_such_setting'" in err


def test_flags_win_over_the_file_wherever_they_stand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "g.yaml").write_text("n: 5\nseed: '7'\n")
    for argv in (
        ["--n", "3", "--config", str(tmp_path / "g.yaml")],
        ["--config", str(tmp_path / "g.yaml"), "--n", "3"],
    ):
        code, out, _ = cli(capsys, "generate", *argv, "--print-config")
        assert code == 0 and "\nn: 3\n" in out and "\nseed: '7'\n" in out


def test_required_settings_may_come_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "prepare", "--size", "32")
    assert code == 2 and "the following arguments are required: source, --out" in err
    (tmp_path / "p.yaml").write_text("source: nowhere\nout: o\n")
    code, _, err = cli(capsys, "prepare", "--config", str(tmp_path / "p.yaml"))
    assert code == 2 and "the following arguments are required" not in err  # got as far as reading 'nowhere'
    assert "nowhere" in err


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["generate"], "one of the arguments --checkpoint --pretrained is required"),
        (["generate", "--checkpoint", "a.pt", "--pretrained", "celeba64"], "--pretrained: not allowed with"),
        (["evaluate", "--data", "d"], "one of the arguments --fakes --checkpoint --pretrained is required"),
        (
            ["evaluate", "--pretrained", "celeba64", "--data", "d", "--batch-size", "0"],
            "--batch-size must be >= 1",
        ),
        (["export", "--pretrained", "celeba64"], "the following arguments are required: --out"),
    ],
)
def test_model_source_and_batch_checks(
    argv: list[str], expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, err
