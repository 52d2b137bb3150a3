"""Has a generator seen the held-out faces it is measured against?

The held-out split is unseen only for a generator trained on the same prepared data without
`--train-on-heldout`. A generator says what it trained on where it can (facegan.sampling.provenance):
a training checkpoint, a run's or a loaded model's export, a shipped generator's `<name>.training.yaml`
(the shipped celeba64 predates the split, so it trained on the faces its held-out figures are measured
on). Anything else (a file exported before these fields, a Hub download of one) is "not known", and the
report says so rather than calling the faces unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from facegan.data.dataset import PackedDataset
from facegan.sampling.provenance import HASH_KEY, HELDOUT_KEY


@dataclass(frozen=True)
class Provenance:
    """The prepared data a generator trained on (its content hash) and whether its held-out rows were
    among the training images; None where the generator's files do not say."""

    dataset_hash: str | None = None
    heldout_included: bool | None = None


def provenance(g: nn.Module) -> Provenance:
    """What the loaded generator `g` says about its training data (`load_generator` reads it from the
    generator's files)."""
    record: dict[str, str] = getattr(g, "training_data", None) or {}
    held = {"true": True, "false": False}.get(record.get(HELDOUT_KEY, ""))
    return Provenance(record.get(HASH_KEY), held)


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
