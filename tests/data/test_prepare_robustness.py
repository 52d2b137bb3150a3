"""Prepare under faults and odd input: dead or killed workers, two processes at once, files replaced,
oversized, encrypted, high-bit-depth, hidden or oddly named, and publishing only what is on disk."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from facegan.cli.main import main
from facegan.data import decode
from facegan.data import prepare as preparation
from facegan.data.dataset import PackedDataset, resolve_dataset
from facegan.data.decode import MAX_PIXELS, Decoder
from facegan.data.prepare import prepare
from facegan.errors import FaceganError
from tests.conftest import constant_png, deadline, jpeg_bytes, make_image_folder, make_zip, patch_zip_member

# ----------------------------------------------------------------------------- prepare robustness


class _DiesOnKillJpg(Decoder):
    """Decodes normally, but a worker process SIGKILLs itself on "kill.jpg" (as the OOM killer would)."""

    def __call__(self, name: str) -> tuple[str, np.ndarray | None, str]:
        if name.endswith("kill.jpg") and str(os.getpid()) != os.environ.get("FACEGAN_TEST_PARENT"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(name)


def test_dead_worker_is_one_error_and_force_replaces_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 12, nested=False)
    (src / "kill.jpg").write_bytes(jpeg_bytes(99))
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setenv("FACEGAN_TEST_PARENT", str(os.getpid()))
        m.setattr(preparation, "Decoder", _DiesOnKillJpg)
        m.setattr(decode, "POOL_MIN_FILES", 1)  # use worker processes even for a few files
        m.setattr(decode, "CHUNK", 2)
        with deadline(60), pytest.raises(FaceganError, match="worker process died") as err:
            prepare(str(src), out, size=32, workers=2, quiet=True)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "src"]  # no output, no build folder
    assert prepare(str(src), out, size=32, workers=2, quiet=True).count == 13
    # An older facegan killed mid-write left images.u8.partial: refused without --force, replaced with it.
    half = tmp_path / "half"
    half.mkdir()
    (half / "images.u8.partial").write_bytes(b"\0" * 100)
    with pytest.raises(FaceganError, match=r"half-written.*--force"):
        prepare(str(src), half, size=32, quiet=True)
    assert prepare(str(src), half, size=32, quiet=True, force=True).count == 13
    assert sorted(p.name for p in half.iterdir()) == ["images.u8", "manifest.json"]


def test_builds_of_killed_prepares_are_removed_but_live_ones_kept(image_folder: Path, tmp_path: Path) -> None:
    """A prepare killed outright (SIGKILL, power cut) leaves its build folder; the next one removes it."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / f".out.tmp-{host}-{dead}-0badc0de"
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-5ca1ab1e"  # a running preparer's work: never touched
    other = tmp_path / f".out.tmp-elsewhere-{dead}-0ddba11a"  # another machine's (shared disk): not ours
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "images.u8").write_bytes(b"\0" * 10)
    prepare(str(image_folder), tmp_path / "out", size=32, quiet=True)
    assert not stale.exists() and (live / "images.u8").exists() and (other / "images.u8").exists()


def _slow_tqdm(iterable: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
    """Stands in for the progress bar: makes each file take 10 ms, so two preparers surely overlap."""
    for item in iterable:
        time.sleep(0.01)
        yield item


def _prepare_in_child(how: str, src: str, target: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        if how == "cache":
            ds = resolve_dataset(src, 32, cache_dir=Path(target), quiet=True)
        else:
            ds = PackedDataset(prepare(src, target, size=32, force=True, quiet=True).out)
        results.put(("ok", str(ds.root), ds.content_hash, len(ds)))
    except BaseException as err:
        results.put(("error", repr(err), "", 0))


@pytest.mark.parametrize("how", ["cache", "force"])
def test_two_processes_preparing_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    src = make_image_folder(tmp_path / "src", 30, nested=False)
    expected = PackedDataset(prepare(str(src), tmp_path / "reference", size=32, quiet=True).out).content_hash
    target = tmp_path / ("cache" if how == "cache" else "out")
    if how == "force":
        prepare(str(src), target, size=32, quiet=True)  # both replace an existing dataset
    monkeypatch.setattr(preparation, "tqdm", _slow_tqdm)
    ctx = multiprocessing.get_context()
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_prepare_in_child, args=(how, str(src), str(target), start, results))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [g[0] for g in got] == ["ok", "ok"], got
    assert got[0][1:] == got[1][1:] and got[0][2] == expected and got[0][3] == 30
    ds = PackedDataset(got[0][1])
    assert ds.content_hash == expected and np.array(ds.images).shape == (30, 3, 32, 32)
    assert not [p for p in target.parent.rglob("*.tmp-*")]  # no build folder left behind


def test_cache_sees_an_image_replaced_in_place(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = resolve_dataset(str(image_folder), 32, cache_dir=cache, quiet=True)
    victim = image_folder / "part1" / "deeper" / "000001.jpg"
    index = before.manifest["files"].index("part1/deeper/000001.jpg")
    old_pixels = np.array(before.images[index])
    victim.write_bytes(jpeg_bytes(77, w=60, h=70))  # same name, other content; the folders' mtimes stay
    after = resolve_dataset(str(image_folder), 32, cache_dir=cache, quiet=True)
    assert after.root != before.root and after.content_hash != before.content_hash
    assert not np.array_equal(np.array(after.images[index]), old_pixels)


def test_image_over_pixel_limit_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    (src / "bomb.png").write_bytes(constant_png(10_000, 10_000))  # 97 KB on disk, 100 Mpx decoded
    decoded: list[int] = []
    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size[0] * self.size[1])
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    assert res.count == 3 and max(decoded) <= MAX_PIXELS  # the bomb was never decoded
    (entry,) = res.skipped
    assert entry["file"] == "bomb.png" and "too large (10000x10000" in entry["reason"]
    assert "not decoded" in entry["reason"]


def test_encrypted_and_unsupported_zip_members_are_skipped(tmp_path: Path) -> None:
    zpath = make_zip(
        tmp_path / "d.zip",
        4,
        prefix="images/",
        extra={"images/locked.jpg": jpeg_bytes(10), "images/aes.jpg": jpeg_bytes(11)},
    )
    patch_zip_member(zpath, "images/locked.jpg", flag_bits=0x1)
    patch_zip_member(zpath, "images/aes.jpg", compress_type=99)  # WinZip AES: zipfile cannot read it
    res = prepare(str(zpath), tmp_path / "out", size=32, quiet=True)
    reasons = {s["file"]: s["reason"] for s in res.skipped}
    assert res.count == 4 and set(reasons) == {"images/locked.jpg", "images/aes.jpg"}
    assert "encrypted" in reasons["images/locked.jpg"]
    assert "unsupported zip compression (method 99" in reasons["images/aes.jpg"]


@pytest.mark.parametrize(
    ("mode", "fmt", "value"),
    [
        ("I;16", "PNG", 32768),  # 16-bit grey PNG
        ("I", "TIFF", 32768),  # 16-bit values in a 32-bit integer image
        ("F", "TIFF", 0.5),  # float image, 0..1
    ],
)
def test_high_bit_depth_images_are_scaled_not_clipped(
    tmp_path: Path, mode: str, fmt: str, value: float
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    img = Image.fromarray(np.full((40, 40), value, dtype))
    assert img.mode == mode
    img.save(src / f"grey.{fmt.lower()}", format=fmt)
    ds = PackedDataset(prepare(str(src), tmp_path / "out", size=32, quiet=True).out)
    assert abs(int(np.median(ds.images[0])) - 128) <= 1  # mid-grey, not 255 (clipped) or 0


def test_folder_hidden_special_and_broken_files_are_listed(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    (src / ".thumb.jpg").write_bytes(jpeg_bytes(5))
    (src / ".git" / "objects").mkdir(parents=True)
    (src / ".git" / "objects" / "a.jpg").write_bytes(jpeg_bytes(6))
    os.mkfifo(src / "pipe.jpg")  # opening it for reading would block forever
    (src / "gone.jpg").symlink_to(src / "missing.jpg")
    (src / "elsewhere").symlink_to(tmp_path)
    with deadline(60):
        res = prepare(str(src), tmp_path / "out", size=32, quiet=True)
    reasons = {s["file"]: s["reason"] for s in res.skipped}
    assert res.count == 3
    assert reasons == {
        ".thumb.jpg": "hidden file (name starts with '.')",
        ".git/": "hidden folder (not read)",
        "pipe.jpg": "not a regular file (FIFO)",
        "gone.jpg": "broken symlink",
        "elsewhere": "symlink to a folder (not followed)",
    }


def test_zip_unsafe_hidden_and_duplicate_members_are_listed(tmp_path: Path) -> None:
    zpath = make_zip(
        tmp_path / "d.zip",
        3,
        prefix="images/",
        extra={
            "../evil.jpg": jpeg_bytes(20),
            "/etc/abs.jpg": jpeg_bytes(21),
            "images/.DS_Store": b"x",
            "__MACOSX/images/._000001.jpg": b"x",
            "__MACOSX/images/._000002.jpg": b"x",
        },
    )
    with zipfile.ZipFile(zpath, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": exactly what this test wants
        zf.writestr("images/000001.jpg", jpeg_bytes(30))
    res = prepare(str(zpath), tmp_path / "out", size=32, quiet=True)
    reasons = {s["file"]: s["reason"] for s in res.skipped}
    assert res.count == 3
    assert reasons == {
        "../evil.jpg": "unsafe path (absolute or '..'); not read",
        "/etc/abs.jpg": "unsafe path (absolute or '..'); not read",
        "images/.DS_Store": "hidden file (name starts with '.')",
        "__MACOSX/": "macOS metadata folder (2 files not read)",
        "images/000001.jpg": "duplicate name in the zip (2 members; the last is used)",
    }
    files = json.loads((res.out / "manifest.json").read_text())["files"]
    assert files == ["images/000001.jpg", "images/000002.jpg", "images/000003.jpg"]
    direct = PackedDataset(
        prepare(
            str(make_zip(tmp_path / "last.zip", 0, extra={"a.jpg": jpeg_bytes(30)})),
            tmp_path / "last",
            size=32,
            quiet=True,
        ).out
    )
    assert np.array_equal(PackedDataset(res.out).images[0], direct.images[0])  # the last copy was packed


def test_non_utf8_and_control_character_names_print_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_image_folder(tmp_path / "src", 3, nested=False)
    root = os.fsencode(src)
    with open(os.path.join(root, b"caf\xe9.jpg"), "wb") as fh:  # Latin-1 name on a UTF-8 system
        fh.write(jpeg_bytes(8))
    with open(os.path.join(root, b"notes\xff\n.txt"), "wb") as fh:
        fh.write(b"x")
    out = tmp_path / "out"
    assert main(["prepare", str(src), "--out", str(out), "--size", "32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 4 images" in printed and "skipped 1 files: notes\\xff\\n.txt (not an image" in printed
    raw = (out / "manifest.json").read_bytes()
    man = json.loads(raw.decode("utf-8"))
    assert "caf\\xe9.jpg" in man["files"] and man["skipped"][0]["file"] == "notes\\xff\\n.txt"
    assert all(not any(0xD800 <= ord(c) <= 0xDFFF for c in name) for name in man["files"])
    odd_root = os.fsdecode(root + b"\xff")  # a non-UTF-8 source folder name, through the cache
    os.rename(src, odd_root)
    assert len(resolve_dataset(odd_root, 32, cache_dir=tmp_path / "cache", quiet=True)) == 4


def test_a_dataset_is_on_disk_before_it_is_published(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut just after the rename that publishes a dataset must not leave a folder of zeros
    under its name: images.u8 and manifest.json are synced before it."""
    events: list[tuple[str, int]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def rename(src: Any, dst: Any, **kwargs: Any) -> None:
        events.append(("rename", 0))
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    out = prepare(str(image_folder), tmp_path / "out", size=32, quiet=True).out
    published = events.index(("rename", 0))
    for name in ("images.u8", "manifest.json"):
        assert ("fsync", (out / name).stat().st_ino) in events[:published], f"{name} was published unsynced"
