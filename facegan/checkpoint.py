"""Checkpoints that never lose work, and the standalone generator export.

* Written atomically: temp file in the same folder, fsync, rename; a failed write (disk full, Ctrl-C)
  leaves the previous checkpoint untouched.
* Loaded with `torch.load(weights_only=True)`: a checkpoint can hold tensors and plain data only,
  never code.
* The exported generator is a safetensors file whose metadata carries the model config.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from facegan.config import ModelConfig, RunConfig
from facegan.errors import FaceganError

FORMAT = "facegan-checkpoint"
CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")
LATEST = "latest.pt"


# ----------------------------------------------------------------------------- RNG state


def capture_rng(step_rng: torch.Generator) -> dict[str, Any]:
    """Every RNG the run touches: python, numpy (legacy global), torch CPU, CUDA, and the step rng."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": step_rng.get_state(),
    }


def restore_rng(state: dict[str, Any], step_rng: torch.Generator) -> None:
    """Inverse of `capture_rng`."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    step_rng.set_state(state["step"])


def _tuples(obj: Any) -> Any:
    # random.setstate insists on tuples; serialisers may hand back lists.
    return tuple(_tuples(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


# ----------------------------------------------------------------------------- atomic IO


def atomic_save(obj: Any, path: Path, writer: Any = torch.save) -> None:
    """Write `obj` to `path` via a temp file + fsync + rename; on failure the old file stays intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            writer(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        hint = "free some disk space" if err.errno == errno.ENOSPC else "check the folder"
        raise FaceganError(
            f"could not write {path}: {err.strerror or err}; the previous checkpoint is intact — {hint} "
            f"and resume with --resume auto"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- training checkpoints


def save_checkpoint(ckpt_dir: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    """Save `state` as ckpt-<step>.pt, point latest.pt at it, keep only the newest `keep` files."""
    path = ckpt_dir / f"ckpt-{step:08d}.pt"
    atomic_save({"format": FORMAT, "version": 1, **state}, path)
    link_as(path, ckpt_dir / LATEST)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def link_as(path: Path, alias: Path) -> None:
    """Point `alias` (latest.pt, best.pt) at `path` atomically: a hard link (no extra disk) swapped in
    with a rename, or a copy where hard links are not supported. Pruning `path` later keeps `alias`."""
    tmp = alias.with_name(f".{alias.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        atomic_save(path.read_bytes(), tmp, writer=lambda data, fh: fh.write(data))
    os.replace(tmp, alias)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Numbered checkpoints in a folder, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a facegan training checkpoint safely (weights_only) or fail with one clear line."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / LATEST if (path / "checkpoints").is_dir() else path / LATEST
    if not path.is_file():
        raise FaceganError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:

        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise FaceganError(
            f"{str(path)!r} is not a readable facegan checkpoint ({reason}); it may be truncated or "
            f"not a checkpoint at all — use another file from the run's checkpoints/ folder"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FaceganError(f"{str(path)!r} is not a facegan checkpoint (no facegan format marker)")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> RunConfig:
    return RunConfig.from_dict(ckpt["config"])


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


def export_generator(g: nn.Module, cfg: ModelConfig, path: str | Path,
                     extra: dict[str, str] | None = None) -> Path:
    """Write G's weights + its ModelConfig (in the safetensors metadata) to one shareable file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise FaceganError(f"export path must end in .safetensors, got {str(path)!r}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
    meta = {CONFIG_KEY: json.dumps(cfg.__dict__), "format": "facegan-generator", **(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise FaceganError(f"could not write {path}: {err.strerror or err}") from None
    return path


def read_exported(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(config, state_dict) of an exported generator."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise FaceganError(f"{str(path)!r} is not a readable safetensors file ({err})") from None
    if CONFIG_KEY not in meta:
        raise FaceganError(f"{str(path)!r} has no facegan generator config in its metadata")
    try:
        cfg = ModelConfig(**json.loads(meta[CONFIG_KEY]))
    except (TypeError, ValueError) as err:
        raise FaceganError(f"{str(path)!r} has an invalid generator config ({err})") from None
    return cfg, tensors
