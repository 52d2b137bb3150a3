"""Hostile or changing files in a `facegan prepare` source (issue M): transparency, links out of the
source, elongated images, formats that would run programs, files and zips that change mid-prepare, and
a prepared dataset whose stored shape was altered."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

import facegan.data.decode
from facegan.cli.main import main
from facegan.data import prepare as preparation
from facegan.data.dataset import PackedDataset
from facegan.data.decode import Decoder
from facegan.data.prepare import prepare
from facegan.data.sources import scan_source
from facegan.errors import FaceganError
from tests.conftest import constant_png, deadline, jpeg_bytes, make_image_folder, make_zip

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _half_transparent(mode: str) -> Image.Image:
    """40×40: the left half fully transparent over a hidden red, the right half opaque blue."""
    if mode == "RGBA":
        a = np.zeros((40, 40, 4), np.uint8)
        a[:, :20] = (*RED, 0)
        a[:, 20:] = (*BLUE, 255)
        return Image.fromarray(a)
    if mode == "LA":  # grey + alpha: hidden black under transparency, opaque black on the right
        a = np.zeros((40, 40, 2), np.uint8)
        a[:, 20:, 1] = 255
        return Image.fromarray(a, "LA")
    img = Image.new("P", (40, 40))  # palette: index 0 red (marked transparent), index 1 blue
    img.putpalette([*RED, *BLUE] + [0] * 762)
    img.paste(1, (20, 0, 40, 40))
    img.info["transparency"] = 0
    return img


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA"])
def test_transparent_pixels_are_composited_on_white(tmp_path: Path, mode: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    img = _half_transparent(mode)
    img.save(src / "cutout.png", transparency=0) if mode == "P" else img.save(src / "cutout.png")
    assert Image.open(src / "cutout.png").mode == mode
    res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    pixels = PackedDataset(res.out).images[0]  # (3, 32, 32)
    assert (pixels[:, :, :12] == 255).all(), "the hidden colour under transparency was packed"
    opaque = (0, 0, 0) if mode == "LA" else BLUE
    assert tuple(int(v) for v in pixels[:, 16, 28]) == opaque
    assert "white" in json.loads((res.out / "manifest.json").read_text())["transparency"]


def test_symlinks_out_of_the_source_are_not_followed(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg_bytes(50))
    (src / "leak.jpg").symlink_to(outside / "secret.jpg")  # absolute link out
    (src / "sub").mkdir()
    (src / "sub" / "rel.jpg").symlink_to(Path("..", "..", "private", "secret.jpg"))  # relative link out
    (src / "alias.jpg").symlink_to("000001.jpg")  # a link that stays inside is still read
    res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    reasons = {s["file"]: s["reason"] for s in res.skipped}
    assert res.count == 4
    assert reasons == {
        "leak.jpg": "symlink to a file outside the source (not followed)",
        "sub/rel.jpg": "symlink to a file outside the source (not followed)",
    }
    man = json.loads((res.out / "manifest.json").read_text())
    assert "alias.jpg" in man["files"] and "only to files inside the source" in man["links"]


def test_a_link_redirected_out_of_the_source_after_listing_is_not_read(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", 2, nested=False)
    (tmp_path / "secret.jpg").write_bytes(jpeg_bytes(50))
    (src / "alias.jpg").symlink_to("000001.jpg")
    listing = scan_source(str(src))
    assert "alias.jpg" in listing.images
    (src / "alias.jpg").unlink()
    (src / "alias.jpg").symlink_to(tmp_path / "secret.jpg")  # swapped between the listing and the read
    decode = Decoder(str(src), "folder", 32, 16, 0)
    _name, pixels, reason = decode("alias.jpg")
    assert pixels is None and reason == "symlink to a file outside the source (not followed)"


def _refuse_elongated_decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record every full decode; one of an elongated image fails the test instead of costing GBs."""
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        w, h = self.size
        decoded.append((w, h))
        if max(w, h) > 8 * min(w, h):
            raise AssertionError(f"decoded an elongated {w}x{h} image")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decoded


@pytest.mark.parametrize(
    ("w", "h", "expect"),
    [
        (1_250_000, 32, "too large (1250000x32; a side over"),  # the 39 KB PNG: 40 Mpx, 64 MB decoded
        (3200, 320, "too elongated (3200x320"),  # small, but resizing to S would make a 10·S×S image
    ],
)
def test_elongated_images_are_refused_from_their_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, w: int, h: int, expect: str
) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    (src / "strip.png").write_bytes(constant_png(w, h))
    decoded = _refuse_elongated_decodes(monkeypatch)
    res = prepare(str(src), tmp_path / "out", size=32, min_side=16, quiet=True)
    assert res.count == 3 and (w, h) not in decoded
    (entry,) = res.skipped
    assert entry["file"] == "strip.png" and entry["reason"].startswith(expect), entry["reason"]


def test_a_file_that_is_really_eps_never_reaches_ghostscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    (src / "face.png").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 40\n"
        b"newpath 0 0 moveto 40 40 lineto stroke\nshowpage\n%%EOF\n"
    )
    calls: list[str] = []

    def ghostscript(*args: Any, **kwargs: Any) -> Any:  # a Ghostscript that fails, as in the issue
        calls.append("gs")
        raise subprocess.CalledProcessError(1, ["gs"])

    def popen(*args: Any, **kwargs: Any) -> Any:
        calls.append(f"popen {args[0]!r}")
        raise AssertionError("prepare started an external program")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")
    monkeypatch.setattr(subprocess, "Popen", popen)
    res = prepare(str(src), tmp_path / "out", size=32, workers=1, quiet=True)
    assert calls == [] and res.count == 3
    (entry,) = res.skipped
    assert entry["file"] == "face.png" and "not a readable image" in entry["reason"]
    assert "accepted formats: JPEG" in entry["reason"]


def test_an_unexpected_codec_error_skips_the_file_not_the_prepare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    (src / "odd.jpg").write_bytes(jpeg_bytes(9, w=50, h=50))
    real = facegan.data.decode.to_rgb

    def to_rgb(img: Image.Image) -> Image.Image:
        if img.size == (50, 50):
            raise RuntimeError("codec bug")
        return real(img)

    monkeypatch.setattr(facegan.data.decode, "to_rgb", to_rgb)
    res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    assert res.count == 3
    assert res.skipped == [{"file": "odd.jpg", "reason": "could not decode (RuntimeError: codec bug)"}]


# ----------------------------------------------------------------------------- a source that changes


def _after_listing(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Run `change()` right after prepare has listed its source (before any file is read)."""
    real = preparation.source_listing

    def listing(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        change()
        return found

    monkeypatch.setattr(preparation, "source_listing", listing)


def test_a_file_replaced_by_a_fifo_is_skipped_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 4, nested=False)

    def to_fifo() -> None:
        (src / "000002.jpg").unlink()
        os.mkfifo(src / "000002.jpg")  # opening it to read would wait for a writer forever

    _after_listing(monkeypatch, to_fifo)
    with deadline(30):
        res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    assert res.count == 3
    assert res.skipped == [
        {
            "file": "000002.jpg",
            "reason": "not a regular file (FIFO) when read; it was replaced after the listing",
        }
    ]


def test_a_file_rewritten_during_prepare_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 4, nested=False)
    _after_listing(monkeypatch, lambda: (src / "000003.jpg").write_bytes(jpeg_bytes(70, w=60, h=60)))
    with pytest.raises(FaceganError, match=r"000003\.jpg changed while it was being prepared") as err:
        prepare(str(src), tmp_path / "out", size=32, quiet=True)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_a_zip_replaced_after_listing_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zpath = make_zip(tmp_path / "faces.zip", 4)
    other = make_zip(tmp_path / "other.zip", 3, prefix="renamed/")
    _after_listing(monkeypatch, lambda: os.replace(other, zpath))
    with pytest.raises(FaceganError, match="changed while it was being prepared") as err:
        prepare(str(zpath), tmp_path / "out", size=32, quiet=True)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(fcntl is None, reason="no flock on this platform")
def test_a_zip_replaced_while_waiting_for_the_lock_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zpath = make_zip(tmp_path / "faces.zip", 4)
    out = tmp_path / "out"
    fd = os.open(tmp_path / ".out.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another preparer of `out` holds it
    listed = threading.Event()
    _after_listing(monkeypatch, listed.set)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["count"] = prepare(str(zpath), out, size=32, quiet=True).count
        except BaseException as err:
            result["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert listed.wait(30)
        worker.join(0.5)  # prepare has listed the zip and now waits for the lock
        assert worker.is_alive()
        os.replace(make_zip(tmp_path / "new.zip", 3, prefix="renamed/"), zpath)
    finally:
        os.close(fd)  # releases the lock
    worker.join(30)
    assert result == {"count": 3}, result
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert files == ["renamed/000001.jpg", "renamed/000002.jpg", "renamed/000003.jpg"]


# ------------------------------------------------------------------------- a dataset altered after prepare


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("shape", [64, 12, 16, 16], "3 colour channels"),  # same bytes: 64·3·32·32
        ("shape", [256, 3, 16, 16], "the manifest's count 64"),
        ("shape", [64, 3, 16, 64], "square"),
        ("size", 64, "size 64"),
        ("count", 65, "the manifest's count 65"),
        ("dtype", "float32", "dtype"),
    ],
)
def test_a_dataset_whose_stored_shape_was_altered_is_refused(
    prepared: Path, key: str, value: Any, message: str
) -> None:
    path = prepared / "manifest.json"
    man = json.loads(path.read_text())
    man[key] = value
    path.write_text(json.dumps(man))
    with pytest.raises(FaceganError, match=message) as err:
        PackedDataset(prepared)
    assert "\n" not in str(err.value) and "re-create it with `facegan prepare`" in str(err.value)


def test_training_on_an_altered_dataset_is_one_line_not_a_deep_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_image_folder(tmp_path / "src", 64, nested=False)
    data = prepare(str(src), tmp_path / "data", size=64, quiet=True).out
    path = data / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "shape": [64, 12, 32, 32], "size": 32}))
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--size",
            "32",
            "--latent-dim",
            "16",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--batch-size",
            "16",
            "--steps",
            "1",
            "--outdir",
            str(tmp_path / "runs"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "3 colour channels" in err, err


def test_a_zip_member_gone_when_read_is_skipped_not_a_keyerror(tmp_path: Path) -> None:
    """A member listed but not in the zip when read (a Decoder given no stamps cannot tell why)."""
    zpath = make_zip(tmp_path / "faces.zip", 2)
    decode = Decoder(str(zpath), "zip", 32, 16, 0)
    _name, pixels, reason = decode("img_align_celeba/000009.jpg")
    assert pixels is None and reason == "no longer in the zip"
