"""A resumed run with EMA and DiffAugment equals the uninterrupted run, weights and exports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file

from facegan.config.files import preset_config, with_overrides
from facegan.networks.checkpoint import load_checkpoint
from facegan.sampling.generate import load_generator
from facegan.training.loop import train

# ----------------------------------------------------------------------------- resume


def test_resume_with_ema_and_diffaug_equals_the_uninterrupted_run(prepared: Path, tmp_path: Path) -> None:
    base = with_overrides(
        preset_config("dcgan-plus"),
        {
            "size": 32,
            "latent_dim": 16,
            "ngf": 8,
            "ndf": 8,
            "batch_size": 16,
            "data": str(prepared),
            "ema_kimg": 0.05,
            "r1_gamma": 0.1,
            "r1_every": 4,
            "steps": 6,
            "ckpt_every": 3,
            "sample_every": 3,
            "num_samples": 4,
        },
    )  # R1 runs at steps 0 and 4: once before and once after the resume
    whole = train(base, tmp_path / "a", quiet=True)
    first = train(base.replace(train=dataclasses.replace(base.train, steps=3)), tmp_path / "b", quiet=True)
    second = train(
        None,
        tmp_path / "b",
        resume=str(first.run_dir),
        overrides_on_resume={"steps": 6},  # type: ignore[arg-type]
        quiet=True,
    )
    assert second.step == whole.step == 6
    a = load_checkpoint(whole.run_dir / "checkpoints" / "latest.pt")
    b = load_checkpoint(second.run_dir / "checkpoints" / "latest.pt")
    for key in ("G", "D", "G_ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert not all(torch.equal(a["G"][k], a["G_ema"][k]) for k in a["G"])
    # the averaged generator is the one users get: generate and the exported file
    loaded = load_generator(whole.run_dir).state_dict()
    exported = load_file(str(whole.run_dir / "generator.safetensors"))
    assert all(
        torch.equal(loaded[k], a["G_ema"][k]) and torch.equal(exported[k], a["G_ema"][k]) for k in a["G_ema"]
    )
