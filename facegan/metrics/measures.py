"""The built-in metrics, each registered once with its named protocols (facegan.metrics.registry).

Each function takes the evaluation's shared passes (facegan.metrics.measurement) and one protocol and
returns its figures, keyed by the protocol's name (e.g. "fid10k", "kid2k_mean", "c2st_acc").
"""

from __future__ import annotations

import torch

from facegan.metrics.c2st import c2st
from facegan.metrics.close_pairs import close_pairs
from facegan.metrics.frechet import frechet_distance, gaussian_stats
from facegan.metrics.kid import kid
from facegan.metrics.measurement import Measurement, cancellable, check_cancel
from facegan.metrics.prdc import embed, prdc
from facegan.metrics.protocols import Protocol
from facegan.metrics.registry import register_metric
from facegan.metrics.swd import swd


@register_metric(
    "fid",
    "inception",
    Protocol("fid2k", "fid", 2_000, 2_000, "smoke test: 2k generated vs 2k real (biased high)"),
    Protocol("fid10k", "fid", 10_000, 50_000, "10k generated vs the real set (up to 50k)"),
    Protocol("fid50k", "fid", 50_000, 50_000, "50k generated vs the real set (up to 50k)"),
)
def measure_fid(m: Measurement, p: Protocol) -> dict[str, float]:
    """Fréchet distance of Inception features (Heusel et al. 2017)."""
    fake = m.fake_features(m.n_fake(p))
    real = m.real_stats(p.max_real)
    return {
        f"{p.name}_real_n": float(len(real.features)),
        p.name: frechet_distance(real.mu, real.sigma, *gaussian_stats(fake)),
    }


@register_metric(
    "kid",
    "inception",
    Protocol("kid2k", "kid", 2_000, 2_000, "smoke test: KID, 2k generated vs 2k real"),
    Protocol("kid10k", "kid", 10_000, 50_000, "KID, 10k generated vs the real set (up to 50k)"),
)
def measure_kid(m: Measurement, p: Protocol) -> dict[str, float]:
    """Kernel inception distance over random subsets (Bińkowski et al. 2018), mean and std."""
    fake = m.fake_features(m.n_fake(p))
    real = m.real_stats(p.max_real)
    size = min(p.kid_subset_size, len(real.features), len(fake))
    feats_real = torch.from_numpy(real.features).to(m.device)
    mean, std = kid(feats_real, fake, p.kid_subsets, size, seed=m.seed)
    return {f"{p.name}_real_n": float(len(real.features)), f"{p.name}_mean": mean, f"{p.name}_std": std}


@register_metric(
    "c2st",
    "pixels",
    Protocol(
        "c2st",
        "c2st",
        2_000,
        2_000,
        "classifier two-sample test, 2k real vs 2k generated, half held out; no download",
    ),
)
def measure_c2st(m: Measurement, p: Protocol) -> dict[str, float]:
    """A small CNN's held-out accuracy at telling the fakes from as many reals."""
    n = m.n_pixel(p)
    real = m.dataset.images[m.real_rows(n)]
    res = c2st(real, m.fake_pixels(n), seed=m.seed, device=m.device, check=lambda: check_cancel(m.cancel))
    return {
        f"{p.name}_real_n": float(n),
        f"{p.name}_acc": res.accuracy,
        f"{p.name}_se": res.stderr,
        f"{p.name}_n": float(res.n_test),
    }


@register_metric(
    "swd",
    "pixels",
    Protocol(
        "swd",
        "swd",
        2_000,
        2_000,
        "sliced Wasserstein distance of 7x7 Laplacian-pyramid patches, 2k vs 2k; no download",
    ),
)
def measure_swd(m: Measurement, p: Protocol) -> dict[str, float]:
    """Sliced Wasserstein distance of Laplacian-pyramid patches (Karras et al. 2018)."""
    n = m.n_pixel(p)
    real = torch.from_numpy(m.dataset.images[m.real_rows(n)])
    figures = swd(real, m.fake_pixels(n), seed=m.seed)
    return {f"{p.name}_real_n": float(n), **{k.replace("swd", p.name, 1): v for k, v in figures.items()}}


@register_metric(
    "prdc",
    "pixels",
    Protocol(
        "prdc",
        "prdc",
        2_000,
        2_000,
        "precision/recall/density/coverage (k=5) and close pairs, 2k vs 2k in a face embedding "
        "trained on the training split (facegan.metrics.embedding); no download",
    ),
)
def measure_prdc(m: Measurement, p: Protocol) -> dict[str, float]:
    """PRDC (Naeem et al. 2020) and the close-pair ratio, in the trained face embedding."""
    n = m.n_pixel(p)
    net = m.face_embedding().to(m.device)
    real_feats = embed(net, m.real_batches(m.real_rows(n)))
    fake_feats = embed(net, cancellable(m.fake_pixels(n).split(m.batch_size), m.cancel))
    return {
        f"{p.name}_real_n": float(n),
        **{f"{p.name}_{k}": v for k, v in prdc(real_feats, fake_feats).items()},
        **{f"{p.name}_{k}": v for k, v in close_pairs(real_feats, fake_feats).items()},
    }
