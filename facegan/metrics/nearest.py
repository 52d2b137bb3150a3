"""Memorisation and duplicate check: each fake's nearest training face beside its nearest held-out face.

A generator that copies its training set puts its fakes much nearer to training faces than to
held-out faces of the same distribution; one that generalises puts them equally near both. To make
"equally near" mean the same thing on both sides, the training faces searched are a seeded random
subset of the same size as the held-out split (a larger set would have nearer neighbours by chance).
Near-copies are looked for in the whole training split, against the same yardstick: how near the
held-out faces, never trained on, come to it.

Distances are cosine distances in the face embedding (facegan.metrics.embedding). Reported: each
distance distribution's median, their ratio (train / held-out: about 1 for a generator that does not
copy, towards 0 for one that does), the share of fakes nearer to training than to held-out faces
(about 0.5 without copying) and the share of near-copies (nearer to some training face than 99 % of
held-out faces are: real faces that were never trained on set what "new" looks like).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from facegan.data.dataset import PackedDataset
from facegan.errors import FaceganError
from facegan.metrics.embedding import FaceEmbedding
from facegan.metrics.prdc import embed

SUBSET_SEED = 7  # which training faces stand in for the training set (fixed: the check is reproducible)
FLAG_RATIO = 0.8  # median ratio below this, or
FLAG_COPIES = 0.05  # more near-copies than this share, flags memorisation


def _nearest(queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index into `keys` and cosine distance of each query's nearest key (features L2-normalised)."""
    sim = torch.from_numpy(queries) @ torch.from_numpy(keys).T
    best, idx = sim.max(dim=1)
    return idx.numpy(), (1.0 - best).clamp_min(0.0).numpy()


def nearest_check(
    fakes: np.ndarray,
    ds: PackedDataset,
    embedding: FaceEmbedding,
    out: str | Path,
    *,
    show: int = 16,
    batch_size: int = 256,
) -> dict[str, float]:
    """Compare uint8 fakes (N, 3, S, S) with `ds`'s training and held-out faces; write `out`/nearest.png
    (rows of fake | nearest training | nearest held-out, for the `show` fakes nearest to training) and
    `out`/nearest.json (every fake's neighbours and distances, and the summary returned)."""
    held = ds.heldout_rows
    if len(held) < 2:
        raise FaceganError(
            f"--nearest needs a held-out split; {str(ds.root)!r} has none (re-create it with "
            f"`facegan prepare --force`)"
        )
    train = np.sort(np.random.default_rng(SUBSET_SEED).choice(ds.train_rows, size=len(held), replace=False))

    def feats(images: np.ndarray) -> np.ndarray:
        return embed(embedding, torch.from_numpy(np.ascontiguousarray(images)).split(batch_size))

    all_train = ds.train_rows
    f_fake, f_all, f_held = feats(fakes), feats(ds.images[all_train]), feats(ds.images[held])
    f_train = f_all[np.searchsorted(all_train, train)]
    _, d_train = _nearest(f_fake, f_train)
    i_held, d_held = _nearest(f_fake, f_held)
    i_full, d_full = _nearest(f_fake, f_all)
    # What "new" looks like: how near held-out reals come to the training faces.
    _, d_real = _nearest(f_held, f_all)
    threshold = float(np.quantile(d_real, 0.01))
    med_train, med_held = float(np.median(d_train)), float(np.median(d_held))
    summary = {
        "nearest_n": float(len(fakes)),
        "nearest_reference_n": float(len(held)),
        "nearest_train_median": med_train,
        "nearest_heldout_median": med_held,
        "nearest_ratio": med_train / med_held if med_held > 0 else float("inf"),
        "nearest_closer_to_train": float(np.mean(d_train < d_held)),
        "nearest_copies": float(np.mean(d_full < threshold)),
        "nearest_copy_threshold": threshold,
    }
    summary["nearest_flagged"] = float(
        summary["nearest_ratio"] < FLAG_RATIO or summary["nearest_copies"] > FLAG_COPIES
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = np.argsort(d_full)[:show]
    rows = [
        torch.from_numpy(np.stack([fakes[i], ds.images[all_train[i_full[i]]], ds.images[held[i_held[i]]]]))
        for i in order
    ]
    save_image(torch.cat(rows).float().div(255), out / "nearest.png", nrow=3, padding=2)
    per_fake = [
        {
            "fake": int(i),
            "train_row": int(all_train[i_full[i]]),
            "train_distance": float(d_full[i]),
            "heldout_row": int(held[i_held[i]]),
            "heldout_distance": float(d_held[i]),
        }
        for i in range(len(fakes))
    ]
    (out / "nearest.json").write_text(json.dumps({"summary": summary, "fakes": per_fake}, indent=1))
    return summary
