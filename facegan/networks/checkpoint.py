"""Checkpoints that never lose work, and the standalone generator export.

* Written atomically: temp file in the same folder, fsync, rename; a failed write (disk full, Ctrl-C)
  leaves the previous checkpoint untouched.
* Loaded with `torch.load(weights_only=True)`: a checkpoint can hold tensors and plain data only,
  never code.
* The exported generator is a safetensors file whose metadata carries the model config.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import nn

from facegan.config.files import migrate_config
from facegan.config.schema import CONFIG_SCHEMA, ModelConfig, RunConfig
from facegan.errors import FaceganError
from facegan.storage.files import atomic_write, remove_stale_temps, temp_path, write_error
from facegan.storage.untrusted import check_depth, check_zip_records, open_regular, parse_json
from facegan.version import __version__

FORMAT = "facegan-checkpoint"
CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")
LATEST = "latest.pt"
# The second half of a failed checkpoint write's error line.
CKPT_KEPT = "the previous checkpoint is intact — {hint} and resume with --resume auto"


# ----------------------------------------------------------------------------- RNG state


def capture_rng(step_rng: torch.Generator) -> dict[str, Any]:
    """Every RNG the run touches: python, numpy (legacy global), torch CPU, CUDA, and the step rng."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert not isinstance(keys, str)  # legacy=True: the (kind, keys, ...) tuple, never a dict
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": step_rng.get_state(),
    }


def restore_rng(state: dict[str, Any], step_rng: torch.Generator) -> bool:
    """Inverse of `capture_rng`. Returns whether the step generator continues its exact stream: False
    when the checkpoint was written on another kind of device (a CPU generator's state cannot drive a
    CUDA one, and the reverse), in which case it is reseeded from the saved state, deterministically,
    so the resumed run is reproducible but draws other noise than the uninterrupted one would."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        for index, gpu_state in enumerate(state["cuda"][: torch.cuda.device_count()]):  # fewer GPUs now: skip
            torch.cuda.set_rng_state(gpu_state, index)
    try:
        step_rng.set_state(state["step"])
        return True
    except RuntimeError:  # the state of a generator on another device type (its size/layout differ)
        digest = hashlib.sha256(state["step"].numpy().tobytes()).digest()
        step_rng.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        return False


def rng_for_rank(ckpt: dict[str, Any], rank: int = 0, world: int = 1) -> dict[str, Any]:
    """The RNG state rank `rank` of `world` resumes from: its own when the checkpoint was written by as
    many ranks (`rng_ranks`, one per rank, in rank order), else rank 0's `rng`. The step generator is
    the same on every rank by construction (facegan.training.distributed), so a resume on another number of
    ranks continues the same stream."""
    ranks = ckpt.get("rng_ranks")
    if isinstance(ranks, list) and len(ranks) == world and world > 1:
        own: dict[str, Any] = ranks[rank]
        return own
    shared: dict[str, Any] = ckpt["rng"]
    return shared


def _tuples(obj: Any) -> Any:
    # random.setstate insists on tuples; serialisers may hand back lists.
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


# ----------------------------------------------------------------------------- atomic IO


def atomic_save(obj: Any, path: Path, writer: Callable[[Any, BinaryIO], Any] | None = None) -> None:
    """Write `obj` to `path` via a temp file + fsync + rename; on failure the old file stays intact."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            # Looked up at call time (not as a default argument) so a patched torch.save is used.
            (writer or torch.save)(obj, fh)

    atomic_write(path, write, CKPT_KEPT)


# ----------------------------------------------------------------------------- training checkpoints


def save_checkpoint(ckpt_dir: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    """Save `state` as ckpt-<step>.pt, point latest.pt at it, keep only the `keep` latest writes.

    Pruning goes by write order, not step: a run resumed from an older checkpoint keeps what it
    writes now and drops the abandoned, higher-numbered ones first."""
    path = ckpt_dir / f"ckpt-{step:08d}.pt"
    remove_stale_temps(ckpt_dir)
    # Which facegan wrote it and the layout of its config, so later versions can migrate the config.
    header = {"format": FORMAT, "version": 1, "facegan_version": __version__, "config_schema": CONFIG_SCHEMA}
    atomic_save({**header, **state}, path)
    older = [p for p in list_checkpoints(ckpt_dir) if p != path]
    _stamp_newest(path, older)
    link_as(path, ckpt_dir / LATEST)
    for old in older[: max(0, len(older) - (keep - 1))]:  # never the file just written
        old.unlink(missing_ok=True)
    return path


def _stamp_newest(path: Path, others: list[Path]) -> None:
    """Give `path` an mtime later than every other checkpoint's: file systems that stamp writes
    with a coarse clock (ext4: one kernel tick) would otherwise tie two quick saves."""
    newest = 0
    for other in others:
        with contextlib.suppress(OSError):
            newest = max(newest, other.stat().st_mtime_ns)
    if path.stat().st_mtime_ns <= newest:
        os.utime(path, ns=(newest + 1, newest + 1))


def link_as(path: Path, alias: Path) -> None:
    """Point `alias` (latest.pt, best.pt) at `path` atomically: a hard link (no extra disk) swapped in
    with a rename, or a copy where hard links are not supported. Pruning `path` later keeps `alias`."""
    tmp = temp_path(alias)
    try:
        tmp.unlink(missing_ok=True)
        os.link(path, tmp)
    except OSError:
        # No hard links on this file system: an atomically written copy instead.
        atomic_write(alias, lambda copy: shutil.copyfile(path, copy), CKPT_KEPT)
        return
    try:
        os.replace(tmp, alias)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(alias, err, CKPT_KEPT) from None


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Numbered checkpoints in a folder, oldest write first (by mtime; the step breaks ties)."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        if m := CKPT_RE.match(p.name):
            with contextlib.suppress(OSError):  # pruned by a concurrent writer: not listed
                found.append((p.stat().st_mtime_ns, int(m.group(1)), p))
    return [p for *_, p in sorted(found)]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a facegan training checkpoint safely or fail with one clear line.

    Only a regular file is opened, and that one descriptor is read. The zip's central directory is
    checked before torch reads a record (no compressed records, no more bytes than the largest model
    needs); then `torch.load(weights_only=True)` (tensors and plain data, never code); then every field,
    and the records' size against what the file's own config implies (facegan.networks.ckpt_fields)."""
    from facegan.networks.ckpt_fields import MAX_CHECKPOINT_BYTES, check_fields, check_records

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / LATEST if (path / "checkpoints").is_dir() else path / LATEST
    if not os.path.lexists(path):
        raise FaceganError(f"checkpoint {str(path)!r} does not exist")
    where = repr(str(path))
    with open_regular(path, "checkpoint") as fh:
        total = check_zip_records(fh, where, MAX_CHECKPOINT_BYTES)
        try:
            ckpt = torch.load(fh, map_location=map_location, weights_only=True)
        except Exception as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise FaceganError(
                f"{where} is not a readable facegan checkpoint ({reason}); it may be truncated or "
                f"not a checkpoint at all — use another file from the run's checkpoints/ folder"
            ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FaceganError(f"{where} is not a facegan checkpoint (no facegan format marker)")
    check_depth(ckpt, where)  # before anything recursive (the config's migration deep-copies it)
    if "config" in ckpt:  # a file without one is refused where its config is needed
        check_records(total, checkpoint_config(ckpt, path).model, ckpt, where)
    check_fields(ckpt, where)
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], source: str | Path | None = None) -> RunConfig:
    """The checkpoint's RunConfig, migrated from the config schema it was written with (1 when the
    checkpoint predates the recorded schema). With `source`, a bad config is reported naming it."""
    raw = ckpt.get("config")
    try:
        if not isinstance(raw, dict):
            raise FaceganError(f"no config mapping (got {type(raw).__name__})")
        return RunConfig.from_dict(migrate_config(raw, ckpt.get("config_schema", 1)))
    except FaceganError as err:
        if source is None:
            raise
        raise FaceganError(f"{str(source)!r} has an invalid config ({err})") from None


def check_state(expected: nn.Module, state: Any, what: str, source: str | Path) -> None:
    """Refuse `state` unless it has exactly `expected`'s keys, each a tensor of the expected shape.

    `expected` is usually built on the meta device, so a crafted file is refused before any real
    memory is allocated for the model it claims to be; the error names the first offending key."""
    where = f"{what} weights in {str(source)!r}"
    if not isinstance(state, dict):
        raise FaceganError(
            f"{where} are not a mapping of tensors (got {type(state).__name__}); "
            f"the file is damaged or not a facegan file"
        )
    want = expected.state_dict()
    problem = None
    for key, ref in want.items():
        got = state.get(key)
        if key not in state:
            problem = f"{key!r} is missing"
        elif not isinstance(got, torch.Tensor):
            problem = f"{key!r} is not a tensor (got {type(got).__name__})"
        elif tuple(got.shape) != tuple(ref.shape):
            problem = f"{key!r} has shape {tuple(got.shape)} but the config needs {tuple(ref.shape)}"
        if problem:
            break
    extra = [k for k in state if k not in want]
    if problem is None and extra:
        problem = f"unexpected key {str(extra[0])!r}"
    if problem is not None:
        raise FaceganError(
            f"{where} do not fit this architecture: {problem}; the file was made for a "
            f"different model config or is damaged"
        )


def load_state(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """load_state_dict with an architecture mismatch reported as one line instead of a wall of keys."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise FaceganError(
            f"{what} weights in {source!r} do not fit this architecture ({first[:160]}); "
            f"the file was made for a different model config"
        ) from None


# ----------------------------------------------------------------------------- generator export

CONFIG_KEY = "facegan_model_config"
# Optional: the variety (truncation) the page and the HTTP API draw this model's faces at when a request
# names none, measured for the model (facegan.sampling.generate.display_value reads it). Absent: the full
# distribution. Nothing else reads it: `facegan generate`, facegan.load and torch.hub sample the full
# distribution unless given a truncation.
DISPLAY_KEY = "display_truncation"
MAX_HEADER = 2**20  # a generator's safetensors header (tensor names, shapes, config) is a few KB


def export_generator(
    g: nn.Module, cfg: ModelConfig, path: str | Path, extra: dict[str, str] | None = None, half: bool = False
) -> Path:
    """Write G's weights + its ModelConfig (in the safetensors metadata) to one shareable file, with
    G's display truncation and what it trained on (its `display_truncation` and `training_data`
    attributes, which load_generator sets) when it has them; `extra` entries come last and win.

    `half` stores the floating-point tensors as float16 (half the file; loading copies them back into
    the float32 model). Integer buffers (BatchNorm's batch counter) keep their type."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise FaceganError(f"export path must end in .safetensors, got {str(path)!r}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    trained_on = getattr(g, "training_data", None) or {}  # dataset_hash / train_on_heldout as text
    meta = {
        CONFIG_KEY: json.dumps(cfg.__dict__),
        "format": "facegan-generator",
        **trained_on,
        **(extra or {}),
    }
    if (display := getattr(g, "display_truncation", None)) is not None:
        meta[DISPLAY_KEY] = repr(float(display))
    # save_file is looked up at call time so tests can make it fail mid-write.
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def read_exported(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state_dict) of an exported generator (read_export_metadata: and its metadata)."""
    cfg, tensors, _ = read_export_metadata(path)
    return cfg, tensors


def read_export_metadata(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, state_dict, the safetensors metadata's text entries) of an exported generator.

    The file is opened once, as a regular file, and parsed from those bytes: the header and the config
    in its metadata are bounded in size and nesting and the config checked (its model size included)
    before the tensors are read, and the file may be no larger than that config's weights."""
    from facegan.storage.sizes import estimate_params

    where = repr(str(path))
    with open_regular(path, "export") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= MAX_HEADER or length > size - 8:
            raise FaceganError(
                f"{where} is not a readable safetensors file (a header of {length:,} bytes "
                f"in a file of {size:,})"
            )
        try:
            header = parse_json(fh.read(length).decode("utf-8"), f"{where}'s header", MAX_HEADER)
        except UnicodeDecodeError:
            raise FaceganError(
                f"{where} is not a readable safetensors file (its header is not text)"
            ) from None
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get(CONFIG_KEY), str):
            raise FaceganError(f"{where} has no facegan generator config in its metadata")
        # The config is checked before the tensors are read, so a bad one costs no memory.
        try:
            raw = parse_json(meta[CONFIG_KEY], f"{where}'s generator config")
            cfg = ModelConfig(**raw)
        except (TypeError, ValueError, FaceganError) as err:
            raise FaceganError(f"{where} has an invalid generator config ({err})") from None
        n_g, _ = estimate_params(cfg.size, cfg.latent_dim, cfg.ngf, cfg.ndf, cfg.channels)
        if size > 8 + length + 4 * n_g + 2**20:  # float32 weights at most, plus a little alignment
            raise FaceganError(
                f"{where} is {size:,} bytes, more than its config's generator needs; it "
                f"carries data facegan never writes"
            )
        fh.seek(0)
        data = fh.read()
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as err:
        raise FaceganError(f"{where} is not a readable safetensors file ({err})") from None
    return cfg, tensors, {k: v for k, v in meta.items() if isinstance(v, str)}
