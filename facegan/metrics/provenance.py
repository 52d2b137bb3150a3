"""Has a generator seen the held-out faces it is measured against?

The held-out split is unseen only for a generator trained on the same prepared data without
`--train-on-heldout`. A generator says what it trained on where it can: a training checkpoint holds the
dataset's content hash and its config; a run's exported `generator.safetensors` holds both in its
metadata; a shipped generator has `<name>.training.yaml` beside its weights (the shipped celeba64
predates the split, so it trained on the faces its held-out figures are measured on). Anything else
(a file exported before these fields, a Hub download) is "not known", and the report says so rather
than calling the faces unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.storage.untrusted import parse_yaml

TRAINING_SUFFIX = ".training.yaml"  # beside a shipped generator's weights
HASH_KEY, HELDOUT_KEY = "dataset_hash", "train_on_heldout"  # export metadata and the shipped file


@dataclass(frozen=True)
class Provenance:
    """The prepared data a generator trained on (its content hash) and whether its held-out rows were
    among the training images; None where the generator's files do not say."""

    dataset_hash: str | None = None
    heldout_included: bool | None = None


def _flag(value: object) -> bool | None:
    """A stored yes/no: a YAML bool, or the text "true"/"false" of safetensors metadata."""
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value).strip().lower()) if value is not None else None


def provenance(path: str | Path) -> Provenance:
    """What the generator file `path` (as `facegan evaluate` opens it) says about its training data."""
    from facegan.networks.checkpoint import checkpoint_config, load_checkpoint, read_export_metadata
    from facegan.sampling.display import display_file

    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"
    try:
        if (display := display_file(path)) is not None:  # a shipped generator: its sidecar, if any
            side = display.with_name(path.stem + TRAINING_SUFFIX)
            raw = parse_yaml(side.read_text(), repr(str(side))) if side.is_file() else {}
            raw = raw if isinstance(raw, dict) else {}
            return Provenance(str(raw.get(HASH_KEY) or "") or None, _flag(raw.get(HELDOUT_KEY)))
        if path.suffix == ".safetensors":
            meta = read_export_metadata(path)[2]
            return Provenance(meta.get(HASH_KEY) or None, _flag(meta.get(HELDOUT_KEY)))
        ckpt = load_checkpoint(path)
        held = checkpoint_config(ckpt, path).train.train_on_heldout
        return Provenance(str(ckpt.get(HASH_KEY) or "") or None, held)
    except (FaceganError, OSError):  # the generator itself was loaded already: this is only a note
        return Provenance()


def heldout_unseen(prov: Provenance, ds: PackedDataset) -> tuple[bool | None, str]:
    """(unseen, reason): unseen is True when the generator never trained on `ds`'s held-out faces,
    False when it did, None when not known; reason is one line for the report."""
    if prov.dataset_hash is None:
        return None, "not known whether the generator trained on them (its file does not name its data)"
    if prov.dataset_hash != ds.content_hash:
        return None, (
            "not known: this data's content hash is not the one the generator trained on (other "
            "images, or the same ones prepared differently)"
        )
    if prov.heldout_included is None:
        return None, "trained on this data, but its file does not say whether on the held-out faces"
    if prov.heldout_included:
        return False, "the generator trained on these faces too: they are not unseen"
    return True, "the generator trained on this data's training split only: they are unseen"
