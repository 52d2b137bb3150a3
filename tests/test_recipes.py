"""The GPU recipes (docs/recipes.md) run, at tiny scale on the CPU, exactly as written (so they cannot rot).

Every `facegan prepare` / `facegan train` line between docs/recipes.md's gpu-recipes markers is run through
the real CLI with the same flags, except: the data source is a small zip made here, the networks are
shrunk and the run lasts 2 steps, and FID (which needs Inception weights) is measured with SWD.
"""

from __future__ import annotations

import re
import shlex
import zipfile
from pathlib import Path

import pytest

from facegan.cli.main import main
from facegan.networks.checkpoint import load_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
TINY = [
    "--steps",
    "2",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--batch-size",
    "8",
    "--eval-every",
    "2",
    "--eval-num-fake",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


def recipe_lines() -> list[list[str]]:
    text = RECIPES.read_text(encoding="utf-8")
    block = re.search(r"<!-- gpu-recipes:begin -->(.*?)<!-- gpu-recipes:end -->", text, re.S)
    assert block, "docs/recipes.md lost its gpu-recipes section"
    joined = block.group(1).replace("\\\n", " ")
    return [
        shlex.split(line.split("#")[0])[1:]
        for line in joined.splitlines()
        if line.strip().startswith(("facegan prepare", "facegan train"))
    ]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def without(args: list[str], name: str) -> list[str]:
    i = args.index(name)
    return args[:i] + args[i + 2 :]


def test_the_readme_has_recipes_for_both_architectures_sizes_and_datasets() -> None:
    trains = [a for a in recipe_lines() if a[0] == "train"]
    assert {option(a, "--preset") for a in trains} >= {"dcgan-plus", "r3gan"}
    datasets = {Path(option(a, "--data")).name for a in trains}
    assert datasets >= {"celeba64", "celeba128", "anime64", "anime128"}
    assert all("fid50k" in option(a, "--eval-metrics") for a in trains)


@pytest.mark.parametrize("index", range(len([a for a in recipe_lines() if a[0] == "train"])))
def test_gpu_recipe_runs_at_tiny_scale(index: int, tmp_path: Path) -> None:
    from tests.conftest import jpeg_bytes

    src = tmp_path / "faces.zip"  # large enough for the 128 px recipes
    with zipfile.ZipFile(src, "w") as zf:
        for i in range(24):
            zf.writestr(f"img_align_celeba/{i + 1:06d}.jpg", jpeg_bytes(i, 140, 150))
    lines = recipe_lines()
    train = [a for a in lines if a[0] == "train"][index]
    data = option(train, "--data")
    (prep,) = [a for a in lines if a[0] == "prepare" and option(a, "--out") == data]
    out = tmp_path / Path(data).name
    assert main(["prepare", str(src), *without(prep[2:], "--out"), "--out", str(out), "--quiet"]) == 0
    args = without(train[1:], "--data")
    if "--inception-weights" in args:  # offline: no Inception weights, so SWD stands in for FID
        args = without(args, "--inception-weights")
    args = [*without(args, "--eval-metrics"), "--eval-metrics", "swd"]
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(out), *args, *TINY, "--outdir", str(runs)]) == 0
    (run,) = runs.iterdir()
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["config"]["preset"] == option(train, "--preset") and ckpt["step"] == 2
    assert ckpt["config"]["model"]["size"] == int(option(prep, "--size"))
    assert (run / "metrics.jsonl").is_file()
