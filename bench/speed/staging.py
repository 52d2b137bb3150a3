"""The benchmark's data: packed once for facegan, and the very same files staged for the reference."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.speed.env import log
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare

SYNTH_W, SYNTH_H = 89, 109  # the shared CelebA copy's size (official aligned CelebA halved)


@dataclass
class Staged:
    """The same images in both forms: facegan's packed array and the reference's ImageFolder."""

    description: str
    packed: Path
    image_root: Path  # ImageFolder root: one class folder holding the kept JPEGs
    count: int
    prepare_s: float


def make_synthetic_jpegs(root: Path, n: int) -> Path:
    """`n` procedurally drawn faces as JPEGs in CelebA's layout (`img_align_celeba/000001.jpg`)."""
    from PIL import Image

    from facegan.data.synthetic import synthetic_face

    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    left = (SYNTH_H - SYNTH_W) // 2
    for i in range(n):
        face = synthetic_face(i, SYNTH_H)[:, left : left + SYNTH_W]  # (109, 89, 3): portrait like CelebA
        Image.fromarray(face).save(folder / f"{i + 1:06d}.jpg", quality=95)
    return root


def stage_data(data: str, size: int, tmp: Path) -> Staged:
    """Pack `data` for facegan, then stage exactly the files it kept for the reference's ImageFolder."""
    if data.startswith("synthetic:"):
        n = int(data.split(":", 1)[1])
        log(f"drawing {n} synthetic {SYNTH_W}×{SYNTH_H} JPEGs")
        source, description = str(make_synthetic_jpegs(tmp / "synthetic", n)), f"{n} synthetic JPEGs"
    else:
        source, description = data, str(Path(data).resolve())
    log(f"packing {source} at {size}px with facegan.data.prepare.prepare (outside timing)")
    t0 = time.perf_counter()
    prepared = prepare(source, tmp / "packed", size, quiet=True)
    prepare_s = time.perf_counter() - t0
    kept: list[str] = PackedDataset(prepared.out).manifest["files"]

    # ImageFolder wants root/<class>/<image>; names are flattened so nested sources work too.
    image_dir = tmp / "reference" / "images"
    image_dir.mkdir(parents=True)
    if Path(source).is_dir():
        for name in kept:  # links, not copies: the reference reads the very same files
            (image_dir / name.replace("/", "__")).symlink_to(Path(source).resolve() / name)
    else:
        with zipfile.ZipFile(source) as zf:
            for name in kept:
                (image_dir / name.replace("/", "__")).write_bytes(zf.read(name))
    return Staged(description, prepared.out, image_dir.parent, prepared.count, prepare_s)
