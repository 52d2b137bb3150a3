"""Diversity as near-duplicate pairs: how often two generated faces are almost the same face, against
how often two real faces are.

A generator that draws a few faces again and again can still score well on distances between
distributions (its faces are typical ones), and recall/coverage move slowly. Counting close pairs
reads repetition directly: "close" is below the `quantile` of the real–real pairwise distances in the
same face embedding, so real faces score `quantile` by construction and the ratio reads "close pairs
are N× as frequent among the fakes as among real faces" (1 is as varied as the data; higher repeats).
Both sides use the same number of faces, so the threshold and the pair counts are comparable.
"""

from __future__ import annotations

import numpy as np
import torch

QUANTILE = 0.01  # 1 % of real pairs count as close: rare enough to mean "nearly the same face"


def _pair_distances(feats: np.ndarray) -> torch.Tensor:
    """Euclidean distances of every unordered pair of rows of `feats` (N, D), as one flat tensor."""
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    d = torch.cdist(x, x)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return d[i, j]


def close_pairs(real: np.ndarray, fake: np.ndarray, quantile: float = QUANTILE) -> dict[str, float]:
    """Share of close pairs among `real` and among `fake` features (both (N, D), same N used: the
    shorter length) and their ratio fake / real; "close" = under `quantile` of the real pairs."""
    n = min(len(real), len(fake))
    if n < 2:
        raise ValueError("close pairs need at least 2 real and 2 generated faces")
    real_d, fake_d = _pair_distances(real[:n]), _pair_distances(fake[:n])
    threshold = torch.quantile(real_d.double(), quantile).item()
    real_rate = (real_d.double() < threshold).double().mean().item()
    fake_rate = (fake_d.double() < threshold).double().mean().item()
    # With the quantile strictly inside real's distances real_rate > 0; guard ties on tiny inputs.
    ratio = fake_rate / real_rate if real_rate > 0 else float("inf")
    return {"close_pairs_real": real_rate, "close_pairs_fake": fake_rate, "close_pairs_ratio": ratio}
