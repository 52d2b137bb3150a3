"""Preparing datasets from folders, zips and synthetic faces (facegan.data.prepare, facegan.data.sources)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.errors import FaceganError
from tests.conftest import jpeg_bytes, make_image_folder, make_zip


def test_prepare_nested_folder(image_folder: Path, tmp_path: Path) -> None:
    res = prepare(str(image_folder), tmp_path / "out", size=32, quiet=True)
    assert res.count == 40 and res.skipped == []
    ds = PackedDataset(res.out)
    assert ds.images.shape == (40, 3, 32, 32) and ds.images.dtype == np.uint8
    man = json.loads((res.out / "manifest.json").read_text())
    assert man["count"] == 40 and man["size"] == 32 and man["content_hash"].startswith("sha256:")
    assert man["files"][0] == "part0/deeper/000000.jpg"
    assert "center-crop" in man["crop"]


def test_prepare_zip_in_place_matches_folder(tmp_path: Path) -> None:
    """A zip is read without extracting and gives the same pixels as the same files in a folder."""
    zpath = make_zip(tmp_path / "img_align_celeba.zip", 20)
    folder = tmp_path / "folder" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(20):
        (folder / f"{i + 1:06d}.jpg").write_bytes(jpeg_bytes(i))
    a = prepare(str(zpath), tmp_path / "a", size=32, quiet=True)
    b = prepare(str(tmp_path / "folder"), tmp_path / "b", size=32, quiet=True)
    assert a.count == b.count == 20
    assert PackedDataset(a.out).content_hash == PackedDataset(b.out).content_hash
    assert not any(p.suffix == ".jpg" for p in tmp_path.rglob("*") if "a" in p.parts)


def test_prepare_resize_then_center_crop(tmp_path: Path) -> None:
    """A 40x80 image: shorter side → 32, then the middle 32x32 (the seeds' Resize + CenterCrop)."""
    img = np.zeros((80, 40, 3), np.uint8)
    img[:20] = 255  # top quarter white: cropped away
    img[20:60] = 128
    src = tmp_path / "src"
    src.mkdir()

    Image.fromarray(img).save(src / "tall.png")
    out = PackedDataset(prepare(str(src), tmp_path / "out", size=32, quiet=True).out)
    assert out.images.shape == (1, 3, 32, 32)
    assert abs(int(out.images[0].mean()) - 128) <= 2


def test_bad_files_are_skipped_and_reported(tmp_path: Path) -> None:
    good = jpeg_bytes(1)
    zpath = make_zip(
        tmp_path / "mixed.zip",
        5,
        prefix="images/",
        extra={
            "images/truncated.jpg": good[: len(good) // 2],
            "images/garbage.jpg": b"this is not a jpeg",
            "images/notes.txt": b"hello",
            "images/tiny.jpg": jpeg_bytes(2, w=8, h=8),
        },
    )
    res = prepare(str(zpath), tmp_path / "out", size=32, quiet=True)
    assert res.count == 5
    reasons = {s["file"]: s["reason"] for s in res.skipped}
    assert set(reasons) == {
        "images/truncated.jpg",
        "images/garbage.jpg",
        "images/notes.txt",
        "images/tiny.jpg",
    }
    assert "too small" in reasons["images/tiny.jpg"]
    assert "not a readable image" in reasons["images/garbage.jpg"]
    assert "truncated" in reasons["images/truncated.jpg"]
    man = json.loads((res.out / "manifest.json").read_text())
    assert man["skipped_count"] == 4 and len(man["skipped"]) == 4


@pytest.mark.parametrize("case", ["missing", "empty_dir", "zip_no_images", "all_too_small", "not_zip"])
def test_unusable_sources_fail_with_one_clear_error(tmp_path: Path, case: str) -> None:
    if case == "missing":
        src, expect = tmp_path / "nope", "does not exist"
    elif case == "empty_dir":
        src, expect = tmp_path / "empty", "no image files"
        src.mkdir()
    elif case == "zip_no_images":
        src, expect = tmp_path / "docs.zip", "no image files"
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("readme.txt", "x")
    elif case == "all_too_small":
        src, expect = tmp_path / "small", "no usable images"
        src.mkdir()
        for i in range(3):
            (src / f"{i}.jpg").write_bytes(jpeg_bytes(i, w=10, h=10))
    else:
        src, expect = tmp_path / "file.bin", "neither a folder nor a zip"
        src.write_bytes(b"abc")
    with pytest.raises(FaceganError, match=expect):
        prepare(str(src), tmp_path / "out", size=32, quiet=True)
    assert not (tmp_path / "out" / "images.u8").exists()


def test_size_must_be_power_of_two(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FaceganError, match="power of two"):
        prepare(str(image_folder), tmp_path / "out", size=48, quiet=True)


def test_existing_output_is_protected(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(str(image_folder), out, size=32, quiet=True)
    with pytest.raises(FaceganError, match="--force"):
        prepare(str(image_folder), out, size=32, quiet=True)
    prepare(str(image_folder), out, size=32, quiet=True, force=True)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(FaceganError, match="non-empty"):
        prepare(str(image_folder), other, size=32, quiet=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_parallel_prepare_matches_serial(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", 600, nested=False)
    a = prepare(str(src), tmp_path / "a", size=32, workers=1, quiet=True)
    b = prepare(str(src), tmp_path / "b", size=32, workers=2, quiet=True)
    assert PackedDataset(a.out).content_hash == PackedDataset(b.out).content_hash


def test_synthetic_dataset_is_deterministic(tmp_path: Path) -> None:
    a = prepare("synthetic", tmp_path / "a", size=32, synthetic_count=16, quiet=True)
    b = prepare("synthetic", tmp_path / "b", size=32, synthetic_count=16, quiet=True)
    assert a.count == 16
    assert PackedDataset(a.out).content_hash == PackedDataset(b.out).content_hash
