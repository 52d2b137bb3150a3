"""Attributes as data: a CelebA attribute file read by `facegan prepare` and kept with the images.

The file is CelebA's `list_attr_celeba.txt` layout: line 1 the number of rows, line 2 the attribute
names separated by spaces, then one row per image, `FILENAME v1 v2 ...` with each value 1 or -1 (any
run of spaces between fields). `facegan prepare` uses `--attributes PATH`, or else a
`list_attr_celeba.txt` inside a source folder or beside the source folder or zip.

A row is matched to an image by the image's path inside the source, else by its file name alone
(CelebA's rows say `000001.jpg` for `img_align_celeba/000001.jpg`). The labels are stored as
`attributes.i8`, int8 of shape (N, A), row i for the i-th packed image, so an image that was skipped
never shifts the labels of the next. An image with no usable row is kept, with every label 0 ("no
label"): unconditional training still uses it, and conditional code can leave it out. Problems never
stop a prepare and are never silent: each bad row is listed in the manifest, and each kind of problem
is printed as one line. A header that cannot be right (no row count, no names, a name twice, or rows
holding another number of values) is refused before any image is decoded: every label would be wrong.
"""

from __future__ import annotations

import os
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegan.data.sources import SYNTHETIC, printable
from facegan.errors import FaceganError

ATTRIBUTES = "attributes.i8"
DEFAULT_NAME = "list_attr_celeba.txt"
MAX_BYTES = 512 * 1024 * 1024  # the full CelebA file is 26 MB; anything far larger is not one
SHOWN = 3  # examples per printed line; the manifest lists every one


@dataclass
class AttributeTable:
    """The rows of an attribute file by file name, and every row that could not be used."""

    path: Path
    names: list[str]
    rows: dict[str, list[tuple[int, np.ndarray]]]  # name → (line, values) of each well-formed row
    problems: list[dict[str, Any]] = field(default_factory=list)  # malformed rows: line, file, reason
    notes: list[str] = field(default_factory=list)  # one-line reports about the file as a whole


def find_attributes(source: str, given: str | Path | None, search: bool = True) -> Path | None:
    """The attribute file to use: `given`, else a list_attr_celeba.txt in or beside `source`."""
    if source == SYNTHETIC:
        if given is not None:
            raise FaceganError("--attributes needs an image folder or zip; synthetic faces have no labels")
        return None
    if given is not None:
        return Path(given)
    if not search:
        return None
    src = Path(source)
    places = ([src / DEFAULT_NAME] if src.is_dir() else []) + [src.parent / DEFAULT_NAME]
    return next((p for p in places if p.is_file()), None)


def read_attributes(path: Path) -> AttributeTable:
    """Parse `path`; a FaceganError (one line) for a file or header that cannot give right labels."""
    where = printable(str(path))
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise FaceganError(f"attribute file {where!r} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise FaceganError(
                f"attribute file {where!r} is {st.st_size} bytes, over the "
                f"{MAX_BYTES >> 20} MB any CelebA attribute file needs"
            )
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    except FileNotFoundError:
        raise FaceganError(
            f"attribute file {where!r} does not exist; pass the path of {DEFAULT_NAME}, or --no-attributes"
        ) from None
    except OSError as err:
        raise FaceganError(f"cannot read attribute file {where!r}: {err.strerror}") from None
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not first.isdigit():
        raise FaceganError(
            f"attribute file {where!r}: line 1 should be the number of rows, found "
            f"{printable(first[:40])!r}; is it in the {DEFAULT_NAME} format?"
        )
    names = lines[1].split() if len(lines) > 1 else []
    if not names:
        raise FaceganError(f"attribute file {where!r}: line 2 should name the attributes, found nothing")
    twice = [n for n, k in Counter(names).items() if k > 1]
    if twice:
        raise FaceganError(f"attribute file {where!r}: line 2 names {printable(twice[0])} twice")
    table = AttributeTable(path, names, defaultdict(list))
    counts: Counter[int] = Counter()
    body = [(number, line.split()) for number, line in enumerate(lines[2:], start=3) if line.strip()]
    for number, fields in body:
        counts[len(fields) - 1] += 1
        reason = _row_problem(fields, len(names))
        if reason:
            table.problems.append({"line": number, "file": printable(fields[0]), "reason": reason})
        else:
            table.rows[fields[0]].append((number, np.array([int(v) for v in fields[1:]], np.int8)))
    common = counts.most_common(1)
    if common and common[0][0] != len(names) and common[0][1] > len(body) // 2:
        raise FaceganError(
            f"attribute file {where!r}: the header names {len(names)} attributes but the rows "
            f"hold {common[0][0]} values; the labels would not line up with their names"
        )
    if int(first) != len(body):
        table.notes.append(f"attributes: line 1 says {int(first)} rows but {len(body)} follow")
    return table


def unrelated(table: AttributeTable, images: list[str], given: bool) -> str | None:
    """When no row of `table` names any of `images` (by path or file name), the file belongs to other
    data: a FaceganError for a file the user `given`, else the one line saying a found file is not
    used (an anime zip beside CelebA's list_attr_celeba.txt must not get 40 columns of "no label")."""
    names = set(table.rows)
    if not names or any(n in names or os.path.basename(n) in names for n in images):
        return None
    where = printable(str(table.path))
    if given:
        raise FaceganError(
            f"attribute file {where!r}: none of its {len(names)} rows names one of the {len(images)} "
            f"images (first: {printable(images[0])!r}); give this dataset's file, or --no-attributes"
        )
    return (
        f"attributes: {where} was found beside the source but none of its {len(names)} rows names one "
        f"of these images, so it is not used (--attributes PATH gives the right file)"
    )


def _row_problem(fields: list[str], want: int) -> str | None:
    """Why a row cannot be used, or None."""
    have = len(fields) - 1
    if have == 0:
        return "no values"
    if have != want:
        return f"{have} values, the header names {want}"
    bad = next((v for v in fields[1:] if v not in ("1", "-1", "+1")), None)
    return None if bad is None else f"value {printable(bad[:20])!r} is not 1 or -1"


def align(
    table: AttributeTable, kept: list[str], listed: list[str]
) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """Labels for the packed images `kept` (in order): the (N, A) int8 array, the manifest's
    "attributes" entry and the lines to print. `listed` (every image found) tells which file names
    are shared by images in different folders, so cannot be matched by name alone."""
    labels = np.zeros((len(kept), len(table.names)), np.int8)
    shared = {base for base, k in Counter(os.path.basename(n) for n in listed).items() if k > 1}
    used: set[str] = set()
    no_row: list[str] = []
    ambiguous: list[str] = []
    dupes: list[tuple[str, str]] = []  # (file, "lines 4 and 9, identical: used")
    for i, name in enumerate(kept):
        key = name if name in table.rows else os.path.basename(name)
        if key not in table.rows:
            no_row.append(name)
            continue
        if key != name and key in shared:
            ambiguous.append(name)
            continue
        used.add(key)
        copies = table.rows[key]
        same = all(np.array_equal(copies[0][1], c[1]) for c in copies[1:])
        if len(copies) > 1:
            where = " and ".join(str(line) for line, _ in copies)
            verdict = "identical: used" if same else "they differ: not used"
            dupes.append((printable(key), f"lines {where}, {verdict}"))
        if same:
            labels[i] = copies[0][1]
    unused = sorted(printable(k) for k in table.rows if k not in used)
    unlabelled = int((labels == 0).all(axis=1).sum())  # a usable row is all ±1, never all 0
    problems = [
        *table.problems,
        *({"file": printable(n), "reason": "no row for this image"} for n in no_row),
        *(
            {
                "file": printable(n),
                "reason": "file name shared by images in other folders and no row names its path",
            }
            for n in ambiguous
        ),
        *({"file": f, "reason": f"duplicated ({how})"} for f, how in dupes),
    ]
    lines = [
        f"attributes: labels for {len(kept) - unlabelled} of {len(kept)} images ({len(table.names)} "
        f"attributes from {printable(str(table.path))})"
    ]
    lines += table.notes
    if table.problems:
        shown = "; ".join(f"line {p['line']}, {p['file']}: {p['reason']}" for p in table.problems[:SHOWN])
        lines.append(
            f"attributes: {_count(len(table.problems), 'malformed row')} ({shown}"
            f"{_more(table.problems)}); their images have no labels (0)"
        )
    if dupes:
        shown = "; ".join(f"{f} ({how})" for f, how in dupes[:SHOWN])
        lines.append(
            f"attributes: {_count(len(dupes), 'file')} {_has(dupes)} duplicated rows: {shown}{_more(dupes)}"
        )
    if no_row:
        lines.append(
            f"attributes: {_count(len(no_row), 'image')} {_has(no_row)} no "
            f"row ({', '.join(map(printable, no_row[:SHOWN]))}{_more(no_row)}); their labels are 0"
        )
    if ambiguous:
        lines.append(
            f"attributes: {_count(len(ambiguous), 'image')} share a file name with images in other "
            f"folders and no row names the path ({', '.join(map(printable, ambiguous[:SHOWN]))}"
            f"{_more(ambiguous)}); their labels are 0"
        )
    if unused:
        lines.append(
            f"attributes: {_count(len(unused), 'row')} name no prepared image "
            f"({', '.join(map(printable, unused[:SHOWN]))}{_more(unused)})"
        )
    if problems:
        lines.append(
            'attributes: every bad row and unlabelled image is listed in the manifest\'s "attributes" entry'
        )
    entry = {
        "file": ATTRIBUTES,
        "source": str(table.path.resolve()),
        "names": table.names,
        "shape": [len(kept), len(table.names)],
        "dtype": "int8",
        "values": "1 yes, -1 no, 0 no label (the image had no usable row)",
        "unlabelled": unlabelled,
        "unused_rows": len(unused),
        "problems": problems,
    }
    return labels, entry, lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _has(items: list[Any]) -> str:
    return "has" if len(items) == 1 else "have"


def _more(items: list[Any]) -> str:
    return f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
