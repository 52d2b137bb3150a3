"""Supervised directions (InterFaceGAN's idea, Shen et al. 2020): label generated faces with the attribute
classifier, fit a linear boundary per attribute in z, and use its unit normal as the edit direction;
"conditional" manipulation then removes from that normal its components along the normals of the other
attributes it is correlated with, so e.g. Blond_Hair does not also change Male.

The boundary is a logistic regression in torch (sklearn is not a dependency, and a linear model with
LBFGS is a few lines), fitted on the faces the classifier is surest about (the top and bottom 30% of
each attribute's logit), as InterFaceGAN fits its SVM on the extremes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facegan.edits.classifier import AttributeNet
from facegan.runtime.perf import model_config
from facegan.sampling.generate import forward_fixed, latents

EXTREMES = 0.3
# |cos| between two attributes' normals above which conditional manipulation removes the other one.
CORRELATED = 0.2


@torch.no_grad()
def sample_scores(
    g: nn.Module, net: AttributeNet, seeds: list[int], chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (N, latent_dim), classifier logits (N, A)) of the faces of `seeds`."""
    zs, logits = [], []
    for i in range(0, len(seeds), chunk):
        z = latents(seeds[i : i + chunk], model_config(g).latent_dim)
        images = forward_fixed(g, z)
        net.eval()
        logits.append(torch.cat([net(x) for x in images.split(256)]))
        zs.append(z.flatten(1))
    return torch.cat(zs), torch.cat(logits)


def fit_normal(
    z: torch.Tensor, score: torch.Tensor, extremes: float = EXTREMES, l2: float = 1e-3
) -> tuple[torch.Tensor, float]:
    """Unit normal (latent_dim,) of a logistic boundary separating the top from the bottom `extremes`
    of `score`, and its accuracy on those faces."""
    order = score.argsort()
    k = max(2, int(len(score) * extremes))
    idx = torch.cat([order[:k], order[-k:]])
    x, y = z[idx].double(), torch.cat([torch.zeros(k), torch.ones(k)]).double()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = float(((x @ w + b > 0).double() == y).double().mean())
        return (w / w.norm()).float(), acc


def normals(z: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """One unit normal per attribute (A, latent_dim) and each boundary's accuracy."""
    found = [fit_normal(z, logits[:, a]) for a in range(logits.shape[1])]
    return torch.stack([n for n, _ in found]), [acc for _, acc in found]


def conditioned(all_normals: torch.Tensor, target: int, others: list[int]) -> torch.Tensor:
    """The target's normal with its projection onto span(others' normals) removed, renormalised
    (InterFaceGAN's conditional manipulation, for any number of conditions)."""
    n = all_normals[target].double()
    if not others:
        return n.float()
    basis = all_normals[others].double().T  # (latent, C)
    coef = torch.linalg.lstsq(basis, n[:, None]).solution
    out = n - (basis @ coef)[:, 0]
    unit: torch.Tensor = out / out.norm()  # Tensor.norm is unannotated in torch
    return unit.float()


def correlated_with(
    all_normals: torch.Tensor, target: int, among: list[int], threshold: float = CORRELATED
) -> list[int]:
    """The attributes of `among` whose normals have |cos| > threshold with the target's."""
    cos = all_normals[among] @ all_normals[target]
    return [a for a, c in zip(among, cos.tolist()) if a != target and abs(c) > threshold]


def edit_vectors(
    all_normals: torch.Tensor,
    names: list[str],
    edits: list[str],
    conditional: bool,
    conditions: list[str] | None = None,
) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """(K, latent_dim) unit directions for `edits`; with `conditional`, each one orthogonalised against
    the correlated attributes among `conditions` (default: the other edits). Returns also which
    attributes each direction was conditioned on."""
    among = [names.index(c) for c in (conditions if conditions is not None else edits)]
    rows, used = [], {}
    for edit in edits:
        t = names.index(edit)
        others = correlated_with(all_normals, t, among) if conditional else []
        rows.append(conditioned(all_normals, t, others))
        used[edit] = [names[o] for o in others]
    return torch.stack(rows), used
