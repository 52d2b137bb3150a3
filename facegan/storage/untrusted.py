"""Reading files a user is handed: checked by kind, size and shape before anything trusts them.

Every check here reads metadata only (a stat, a zip's central directory, a parser's event stream), so
a hostile file costs no more than its own bytes before it is refused in one line:

* `open_regular`: a FIFO, device or folder would block a reader or never end; only regular files open,
  and the checked descriptor is the one that is read (no second open by name).
* `check_zip_records`: a torch `.pt` is a zip; a deflated record can claim gigabytes in a few KB.
* `parse_yaml` / `parse_json`: size and nesting are bounded before a recursive parser runs, and YAML
  aliases (the "billion laughs" expansion) are refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from facegan.errors import FaceganError

# A config is two levels deep (section → setting); 32 leaves room for any honest file, and stays far
# below Python's recursion limit, which deep nesting would otherwise hit inside json/yaml/deepcopy.
MAX_DEPTH = 32
# A full config file (--print-config) is about 3 KB; a config in an export's metadata is under 1 KB.
MAX_CONFIG_BYTES = 256 * 1024

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def open_regular(path: str | Path, what: str) -> BinaryIO:
    """`path` opened for binary reading, or one FaceganError line if it is missing or not a regular
    file. O_NONBLOCK keeps the open itself from waiting on a FIFO's writer; fstat then judges the very
    file that was opened, so a swap between a check and an open cannot slip another file in."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise FaceganError(f"{what} {str(path)!r}: cannot read it ({err.strerror or err})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(mode)
                else "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device or socket"
            )
            raise FaceganError(f"{what} {str(path)!r} is {kind}, not a regular file; pass a file")
        os.set_blocking(fd, True)  # a regular file: reads behave as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of regular file `path`, refused in one line beyond `limit` bytes (before reading)."""
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise FaceganError(f"{what} {str(path)!r} is {size:,} bytes; at most {limit:,} are read")
        return fh.read(limit + 1)


def check_zip_records(fh: BinaryIO, where: str, limit: int) -> int:
    """The total uncompressed size of the zip archive `fh` (a torch `.pt`), from its central directory
    alone. Refused in one line: a compressed record (torch writes records stored, so one that inflates
    is crafted) and a total above `limit` bytes. A file that is not a zip is left to the caller."""
    start = fh.tell()
    try:
        with zipfile.ZipFile(fh) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0  # not a zip (or a damaged one): torch.load reports it, and reads no more than the file
    finally:
        fh.seek(start)
    packed = [info for info in records if info.compress_type != zipfile.ZIP_STORED]
    if packed:
        worst = max(packed, key=lambda info: info.file_size)
        raise FaceganError(
            f"{where} has a compressed record {worst.filename!r} that would inflate "
            f"{worst.compress_size:,} bytes to {worst.file_size:,}; facegan writes "
            f"checkpoints uncompressed, so this file was not written by it"
        )
    total = sum(info.file_size for info in records)
    if total > limit:
        raise FaceganError(
            f"{where} holds {total:,} bytes of records, more than any checkpoint facegan "
            f"writes ({limit:,}); it is not a facegan checkpoint"
        )
    return total


def parse_json(text: str, where: str, limit: int = MAX_CONFIG_BYTES, depth: int = MAX_DEPTH) -> Any:
    """`json.loads(text)` with its size and nesting bounded first, or one FaceganError line."""
    if len(text) > limit:
        raise FaceganError(f"{where} is {len(text):,} characters; a config is at most {limit:,}")
    check_json_depth(text, where, depth)
    try:
        return json.loads(text)
    except ValueError as err:
        raise FaceganError(f"{where} is not valid JSON ({err})") from None


def check_json_depth(text: str, where: str, depth: int = MAX_DEPTH) -> None:
    """Refuse JSON text nested deeper than `depth`, counted without recursion (strings skipped)."""
    level = deepest = 0
    for char in _JSON_STRING.sub("", text):
        if char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    if deepest > depth:
        raise FaceganError(f"{where} is nested {deepest} levels deep; a config is at most {depth}")


def check_depth(obj: Any, where: str, depth: int = MAX_DEPTH) -> None:
    """Refuse a loaded value (dicts, lists, tuples) nested deeper than `depth`; iterative, so a value
    too deep for Python's recursion limit is refused rather than crashing the checker."""
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if level >= depth:
            raise FaceganError(
                f"{where} is nested more than {depth} levels deep; the file is damaged or crafted"
            )
        todo.extend((child, level + 1) for child in children)


def parse_yaml(text: str, where: str, limit: int = MAX_CONFIG_BYTES, depth: int = MAX_DEPTH) -> Any:
    """`yaml.safe_load(text)` after a bounded first pass over the parser's events: no more than
    `limit` characters, no collection nested deeper than `depth`, and no aliases (`*name`), whose
    expansion is what lets a few hundred bytes build gigabytes. One FaceganError line otherwise."""
    import yaml

    if len(text) > limit:
        raise FaceganError(f"{where} is {len(text):,} characters; a config file is at most {limit:,}")
    level = 0
    try:
        # The event parser is iterative and expands nothing, so this pass is linear in the text.
        for event in yaml.parse(io.StringIO(text), Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise FaceganError(
                    f"{where} uses a YAML alias (*{event.anchor}); write each value out "
                    f"(aliases can expand a small file into gigabytes)"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                level += 1
                if level > depth:
                    raise FaceganError(
                        f"{where} is nested more than {depth} levels deep; a config "
                        f"file has two (section, setting)"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                level -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise FaceganError(f"{where} is not valid YAML ({problem}{at})") from None
