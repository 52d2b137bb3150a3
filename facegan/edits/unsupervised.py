"""Directions without labels, for generators of unlabelled data (anime64): two methods compared.

* SeFa (Shen & Zhou 2021, closed form): the first layer maps z linearly (a Linear or a 1×1-input
  transposed conv, weight A: z → R^m), so the unit directions that change its output most are the top
  eigenvectors of AᵀA. No sampling at all.
* GANSpace (Härkönen et al. 2020, for generators without a mapping network): PCA of the first layer's
  activations over sampled z, each principal component carried back to z by least-squares regression
  of the component's coordinate on z.

Both give unit vectors in z, stored as `Directions` with a fixed step per side (no classifier to
calibrate against); `names.yaml` files map a person's names to direction indices and signs.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from facegan.errors import FaceganError
from facegan.runtime.perf import model_config
from facegan.sampling.directions import NAME, Directions


def plain(g: nn.Module) -> nn.Module:
    """The generator inside an inference wrapper."""
    return getattr(g, "g", g)


# nn.Module.__getattr__ is typed Tensor | Module; these are the generators' own submodules.
def _basis(g: nn.Module) -> nn.Linear:
    """facegan.networks.r3gan.ResGenerator's first layer: Linear(latent, w0·4·4)."""
    return cast(nn.Linear, g.basis)


def _main(g: nn.Module) -> nn.Sequential:
    """facegan.networks.dcgan.DCGANGenerator's layers, first the transposed conv of z."""
    return cast(nn.Sequential, g.main)


def first_layer_weight(g: nn.Module) -> torch.Tensor:
    """The first layer's weight as a matrix (m, latent_dim): z ↦ A z."""
    g = plain(g)
    if hasattr(g, "basis"):  # facegan.networks.r3gan.ResGenerator: Linear(latent, w0·4·4)
        return _basis(g).weight.detach().float()
    first = _main(g)[0]  # DCGAN: ConvTranspose2d(latent, w0, 4) on a 1×1 input is linear in z
    if not isinstance(first, nn.ConvTranspose2d):
        raise FaceganError(f"no linear first layer found in {type(g).__name__}")
    return first.weight.detach().float().flatten(1).T


def sefa(g: nn.Module, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k SeFa directions (k, latent) and their eigenvalues. Each eigenvector's sign is fixed so its
    largest component is positive (eigen-solvers may return either)."""
    a = first_layer_weight(g).double()
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
    order = values.argsort(descending=True)[:k]
    dirs = vectors[:, order].T
    signs = torch.sign(dirs.gather(1, dirs.abs().argmax(1, keepdim=True)))
    return (dirs * signs).float(), values[order].float()


@torch.no_grad()
def first_activation(g: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The first block's output (N, m) for latents (N, latent)."""
    g = plain(g)
    if hasattr(g, "basis"):
        return F.leaky_relu(_basis(g)(z), 0.2)
    out: torch.Tensor = _main(g)[:3](z[:, :, None, None])  # ConvT, BatchNorm (eval), ReLU
    return out.flatten(1)


@torch.no_grad()
def ganspace(g: nn.Module, k: int, samples: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k GANSpace directions (k, latent) and the variance each principal component explains."""
    z = torch.randn(samples, model_config(plain(g)).latent_dim, generator=torch.Generator().manual_seed(seed))
    act = first_activation(g, z).double()
    act = act - act.mean(0)
    _, s, vh = torch.linalg.svd(act, full_matrices=False)
    coords = act @ vh[:k].T  # (N, k) coordinates on the principal components
    u = torch.linalg.lstsq(z.double(), coords).solution.T  # (k, latent): z-direction of each component
    u = u / u.norm(dim=1, keepdim=True)
    signs = torch.sign(u.gather(1, u.abs().argmax(1, keepdim=True)))
    return (u * signs).float(), (s[:k] ** 2 / (s**2).sum()).float()


def unnamed(vectors: torch.Tensor, step: float, method: str) -> Directions:
    """Directions called d0, d1, … with the same step on both sides."""
    k = len(vectors)
    return Directions(
        [f"d{i}" for i in range(k)],
        vectors,
        torch.full((k, 2), float(step)),
        {"method": method, "step": step},
    )


def read_names(path: str | Path) -> dict[str, tuple[int, int, float | None, str]]:
    """A names file, one YAML entry per edit: `Name: {direction: 3, sign: -1, step: 3.0, note: "..."}`
    (sign and step optional: +1 and the directions' own step) → {name: (index, sign, step, note)}."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FaceganError(f"could not read edit names {str(path)!r}: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise FaceganError(f"{str(path)!r}: expected a mapping of edit names to directions")
    out: dict[str, tuple[int, int, float | None, str]] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.match(name) or not isinstance(spec, dict):
            raise FaceganError(f"{str(path)!r}: bad entry {name!r} (want Name: {{direction: N, sign: 1}})")
        index, sign, step = spec.get("direction"), spec.get("sign", 1), spec.get("step")
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or sign not in (1, -1)
            or not (step is None or (isinstance(step, (int, float)) and 0 < step <= 20))
        ):
            raise FaceganError(
                f"{str(path)!r}: {name}: direction must be an integer, sign 1 or -1, step a number in (0, 20]"
            )
        out[name] = (index, int(sign), None if step is None else float(step), str(spec.get("note", "")))
    return out


def named(found: Directions, names: dict[str, tuple[int, int, float | None, str]]) -> Directions:
    """The named subset of `found` (directions d0, d1, …): each name's vector, flipped by its sign, with
    its own step when the names file gives one."""
    vectors, steps, notes = [], [], {}
    for name, (index, sign, step, note) in names.items():
        if not 0 <= index < len(found.names):
            raise FaceganError(f"edit {name}: direction {index} does not exist (found {len(found.names)})")
        vectors.append(found.vectors[index] * float(sign))
        size = float(found.steps[index, 1]) if step is None else step
        steps.append([size, size])
        notes[name] = {"direction": index, "sign": sign, "step": size, "note": note}
    return Directions(list(names), torch.stack(vectors), torch.tensor(steps), {**found.info, "names": notes})
