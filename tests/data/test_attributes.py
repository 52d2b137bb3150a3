"""CelebA attribute files read by `facegan prepare` and kept aligned with the prepared images (issue K)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.cli.main import main
from facegan.data.attributes import ATTRIBUTES
from facegan.data.dataset import PackedDataset
from facegan.data.prepare import prepare
from facegan.errors import FaceganError
from tests.conftest import jpeg_bytes, make_zip

NAMES = [f"Attr_{i:02d}" for i in range(40)]


def values(i: int) -> list[int]:
    """A distinct ±1 pattern per image number."""
    return [1 if (i >> (k % 8)) & 1 else -1 for k in range(40)]


def row(name: str, vals: list[int] | list[str]) -> str:
    return name + " " + " ".join(f"{v:>2}" for v in vals)  # the official file pads with double spaces


def write_attrs(path: Path, lines: list[str], *, names: list[str] = NAMES, count: int | None = None) -> Path:
    path.write_text(
        f"{len(lines) if count is None else count}\n{' '.join(names)} \n" + "\n".join(lines) + "\n"
    )
    return path


def reports(printed: str, word: str) -> list[str]:
    """The printed attribute reports that mention `word` (not the summary line, which names a path)."""
    return [
        ln
        for ln in printed.splitlines()
        if ln.startswith("attributes: ") and not ln.startswith("attributes: labels for") and word in ln
    ]


def celeba(tmp_path: Path, n: int = 6) -> Path:
    """A zip of `n` CelebA-layout images, 000003.jpg too small to keep (so alignment must skip it)."""
    return make_zip(
        tmp_path / "img_align_celeba.zip",
        0,
        extra={
            f"img_align_celeba/{i:06d}.jpg": jpeg_bytes(i, w=10, h=10) if i == 3 else jpeg_bytes(i)
            for i in range(1, n + 1)
        },
    )


def test_a_good_file_beside_the_zip_is_found_and_stays_aligned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zpath = celeba(tmp_path)
    write_attrs(tmp_path / "list_attr_celeba.txt", [row(f"{i:06d}.jpg", values(i)) for i in range(1, 9)])
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "labels for 5 of 5 images (40 attributes" in printed and "problem" not in printed
    ds = PackedDataset(out)
    assert ds.manifest["files"] == [f"img_align_celeba/{i:06d}.jpg" for i in (1, 2, 4, 5, 6)]
    got = ds.attributes
    assert got is not None
    names, labels = got
    assert names == NAMES and labels.dtype == torch.int8 and labels.shape == (5, 40)
    for k, i in enumerate((1, 2, 4, 5, 6)):  # the skipped 000003.jpg's row is not shifted onto 000004
        assert labels[k].tolist() == values(i)
    man = ds.manifest["attributes"]
    assert man["file"] == ATTRIBUTES and man["names"] == NAMES and man["unlabelled"] == 0
    assert man["source"] == str((tmp_path / "list_attr_celeba.txt").resolve())
    # replaced without labels: the old labels go too, never left beside other images
    assert (
        main(
            [
                "prepare",
                str(zpath),
                "--out",
                str(out),
                "--size",
                "32",
                "--quiet",
                "--force",
                "--no-attributes",
            ]
        )
        == 0
    )
    assert not (out / ATTRIBUTES).exists() and PackedDataset(out).attributes is None


def test_a_found_file_of_other_images_is_not_used_and_a_given_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An anime zip in the folder that holds CelebA's list_attr_celeba.txt: no row names its images.
    zpath = make_zip(
        tmp_path / "anime_faces.zip", 0, extra={f"images/{i}_2000.jpg": jpeg_bytes(i) for i in range(1, 5)}
    )
    attrs = write_attrs(
        tmp_path / "list_attr_celeba.txt", [row(f"{i:06d}.jpg", values(i)) for i in range(1, 9)]
    )
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "none of its 8 rows names one of these images, so it is not used" in printed
    assert not (out / ATTRIBUTES).exists() and PackedDataset(out).attributes is None
    rc = main(
        ["prepare", str(zpath), "--out", str(tmp_path / "o2"), "--size", "32", "--attributes", str(attrs)]
    )
    err = capsys.readouterr().err
    assert (
        rc == 2
        and "none of its 8 rows names one of the 4 images" in err
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "o2").exists()  # refused before anything was written


def test_an_explicit_file_and_a_folder_source(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    (src / "a").mkdir(parents=True)
    for i in (1, 2):
        (src / "a" / f"{i:06d}.jpg").write_bytes(jpeg_bytes(i))
    labels = write_attrs(tmp_path / "labels.txt", [row(f"{i:06d}.jpg", values(i)) for i in (1, 2)])
    res = prepare(str(src), tmp_path / "out", size=32, attributes=labels, quiet=True)
    got = PackedDataset(res.out).attributes
    assert got is not None and got[1].tolist() == [values(1), values(2)]
    # no file given and none beside the source: no labels
    assert PackedDataset(prepare(str(src), tmp_path / "none", size=32, quiet=True).out).attributes is None
    with pytest.raises(FaceganError, match=r"attribute file .*does not exist"):
        prepare(str(src), tmp_path / "x", size=32, attributes=tmp_path / "nope.txt", quiet=True)


def test_missing_rows_leave_zeros_and_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zpath = celeba(tmp_path)
    write_attrs(tmp_path / "list_attr_celeba.txt", [row(f"{i:06d}.jpg", values(i)) for i in (1, 2, 4)])
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 0
    (line,) = reports(capsys.readouterr().out, "no row")
    assert line.startswith(
        "attributes: 2 images have no row (img_align_celeba/000005.jpg, "
        "img_align_celeba/000006.jpg); their labels are 0"
    )
    got = PackedDataset(out).attributes
    assert got is not None
    assert got[1][3:].abs().sum() == 0 and got[1][2].tolist() == values(4)
    man = PackedDataset(out).manifest["attributes"]
    assert man["unlabelled"] == 2


def test_duplicated_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zpath = celeba(tmp_path)
    lines = [row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)]
    lines.append(row("000002.jpg", values(2)))  # the same again: harmless, used
    lines.append(row("000004.jpg", values(9)))  # a different copy: which is right is unknowable
    write_attrs(tmp_path / "list_attr_celeba.txt", lines)
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    (line,) = reports(printed, "duplicated")
    assert "2 files have duplicated rows" in line
    assert "000002.jpg (lines 4 and 9, identical: used)" in line
    assert "000004.jpg (lines 6 and 10, they differ: not used)" in line
    got = PackedDataset(out).attributes
    assert got is not None
    assert got[1][1].tolist() == values(2) and got[1][2].abs().sum() == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (row("000002.jpg", values(2)[:39]), "39 values, the header names 40"),
        (row("000002.jpg", [*values(2), 1]), "41 values, the header names 40"),
        (row("000002.jpg", [2, *values(2)[1:]]), "value '2' is not 1 or -1"),
        (row("000002.jpg", ["x", *values(2)[1:]]), "value 'x' is not 1 or -1"),
        ("000002.jpg", "no values"),
    ],
)
def test_malformed_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, reason: str) -> None:
    zpath = celeba(tmp_path)
    lines = [row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)]
    lines[1] = bad
    write_attrs(tmp_path / "list_attr_celeba.txt", lines)
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 0
    (line,) = reports(capsys.readouterr().out, "malformed")
    assert line.startswith(f"attributes: 1 malformed row (line 4, 000002.jpg: {reason})")
    got = PackedDataset(out).attributes
    assert got is not None
    assert got[1][1].abs().sum() == 0  # no label rather than a guess
    assert [got[1][k].tolist() for k in (0, 2, 3, 4)] == [values(i) for i in (1, 4, 5, 6)]
    problems = PackedDataset(out).manifest["attributes"]["problems"]
    assert {"line": 4, "file": "000002.jpg", "reason": reason} in problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "6\n"
            + " ".join(NAMES[:39])
            + "\n"
            + "\n".join(row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)),
            "header names 39 attributes but the rows hold 40 values",
        ),
        (
            " ".join(NAMES) + "\n" + "\n".join(row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)),
            "line 1 should be the number of rows",
        ),
        ("6\n" + " ".join([*NAMES[:39], "Attr_00"]) + "\n", "names Attr_00 twice"),
        ("6\n", "line 2 should name the attributes"),
        ("", "line 1 should be the number of rows"),
    ],
)
def test_a_header_that_does_not_fit_is_refused_before_decoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    zpath = celeba(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_text(text)
    out = tmp_path / "out"
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "list_attr_celeba.txt" in err, err
    assert not out.exists()
    # --no-attributes prepares the images alone
    assert main(["prepare", str(zpath), "--out", str(out), "--size", "32", "--no-attributes", "--quiet"]) == 0
    assert PackedDataset(out).attributes is None


def test_count_line_and_rows_for_no_image_are_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zpath = celeba(tmp_path)
    lines = [row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)]
    write_attrs(tmp_path / "list_attr_celeba.txt", [*lines, row("999999.jpg", values(1))], count=9)
    assert main(["prepare", str(zpath), "--out", str(tmp_path / "out"), "--size", "32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "attributes: line 1 says 9 rows but 7 follow" in printed
    assert "attributes: 2 rows name no prepared image (000003.jpg, 999999.jpg)" in printed


def test_tampered_attribute_file_is_refused(tmp_path: Path) -> None:
    zpath = celeba(tmp_path)
    write_attrs(tmp_path / "list_attr_celeba.txt", [row(f"{i:06d}.jpg", values(i)) for i in range(1, 7)])
    out = prepare(str(zpath), tmp_path / "out", size=32, quiet=True).out
    (out / ATTRIBUTES).write_bytes((out / ATTRIBUTES).read_bytes()[:-1])
    with pytest.raises(FaceganError, match=f"{ATTRIBUTES} holds 199 bytes") as err:
        PackedDataset(out)
    assert "\n" not in str(err.value)
    man = json.loads((out / "manifest.json").read_text())
    man["attributes"]["names"] = NAMES[:39]
    (out / "manifest.json").write_text(json.dumps(man))
    (out / ATTRIBUTES).write_bytes(np.zeros((5, 40), np.int8).tobytes())
    with pytest.raises(FaceganError, match="39 names"):
        PackedDataset(out)
