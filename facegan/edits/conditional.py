"""The other edit method measured against latent directions: a generator trained with the attributes as
conditions (an edit sets the condition and keeps z).

G_c(z, c): the DCGAN generator whose first transposed conv takes [z, c] with c ∈ [-1, 1]^K, one entry
per edit attribute. It starts from a shipped DCGAN generator (the z rows of the first layer copied, the c
rows zero, so training starts at the unconditional faces) and trains against a fresh projection
discriminator (Miyato & Koyama 2018: logit = ψ(φ(x)) + ⟨embed(c), φ(x)⟩). Fake conditions are real label
rows drawn at random, so their joint distribution (blond ∧ female …) is the data's.

A seed names (z, c₀): z as `facegan.sampling.generate.latents`, c₀ a label row drawn from the same
seed. Amount a of edit k moves c_k from c₀_k toward +1 (a > 0) or −1 (a < 0); a = 0 keeps c₀, i.e.
the seed's face.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from facegan.config.schema import ModelConfig
from facegan.data.augment import diff_augment
from facegan.errors import FaceganError
from facegan.networks.dcgan import DCGANGenerator, Discriminator, init_weights
from facegan.sampling.generate import forward_fixed, latents


class CondGenerator(nn.Module):
    """G(z, c) = DCGAN G on the latent [z, c]; `names` are the conditioned attributes, `prior` (M, K)
    label rows in {-1, 1} from which a seed's own condition is drawn."""

    def __init__(self, cfg: ModelConfig, names: list[str], prior: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.names = list(names)
        inner = ModelConfig(**{**cfg.__dict__, "latent_dim": cfg.latent_dim + len(names)})
        self.g = DCGANGenerator(inner)
        self.prior: torch.Tensor  # (N, K) attribute rows of the labelled faces, drawn as conditions
        self.register_buffer("prior", prior.float())

    def forward(self, zc: torch.Tensor) -> torch.Tensor:  # (B, nz + K[, 1, 1])
        images: torch.Tensor = self.g(zc)
        return images

    def base_conditions(self, seeds: list[int]) -> torch.Tensor:
        """c₀ (N, K) of each seed: a prior row drawn from a generator of its own, so it does not depend
        on the batch (offset so it is not z's own stream)."""
        rows = [
            int(
                torch.randint(
                    len(self.prior), (1,), generator=torch.Generator().manual_seed(s ^ 0x5EED)
                ).item()
            )
            for s in seeds
        ]
        return self.prior[rows].clone()

    @torch.no_grad()
    def render(
        self, seeds: list[int], edits: dict[str, float], truncation: float | None = None
    ) -> torch.Tensor:
        """Faces of `seeds` with each named condition moved by its amount in [-1, 1]."""
        z = latents(seeds, self.cfg.latent_dim, truncation).flatten(1)
        c = self.base_conditions(seeds)
        for name, amount in edits.items():
            k = self.names.index(name)
            target = 1.0 if amount > 0 else -1.0
            c[:, k] = c[:, k] + abs(amount) * (target - c[:, k])
        return forward_fixed(self.eval(), torch.cat([z, c], 1)[:, :, None, None])


class ProjectionD(nn.Module):
    """DCGAN discriminator body φ, its last conv ψ, plus the projection ⟨embed(c), mean φ(x)⟩."""

    def __init__(self, cfg: ModelConfig, k: int) -> None:
        super().__init__()
        d = Discriminator(cfg, "batch")
        last = d.main[-1]
        assert isinstance(last, nn.Conv2d)  # the DCGAN D ends in its 4×4 logit conv
        self.body, self.last = d.main[:-1], last
        self.embed = nn.Linear(k, last.in_channels, bias=False)
        nn.init.zeros_(self.embed.weight)  # starts unconditional; a random projection swamped the logit

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        logits: torch.Tensor = self.last(h).flatten() + (h.mean((2, 3)) * self.embed(c)).sum(1)
        return logits


def from_unconditional(g: DCGANGenerator, names: list[str], prior: torch.Tensor) -> CondGenerator:
    """A CondGenerator with `g`'s weights, the condition rows of its first layer zero."""
    cg = CondGenerator(g.cfg, names, prior)
    state = {k: v.clone() for k, v in g.state_dict().items()}
    first = state["main.0.weight"]  # (nz, C, 4, 4)
    state["main.0.weight"] = torch.cat([first, first.new_zeros(len(names), *first.shape[1:])])
    cg.g.load_state_dict(state)
    return cg


def train_conditional(
    g: DCGANGenerator,
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    *,
    minutes: float,
    out: str | Path,
    batch: int = 64,
    seed: int = 0,
    log_every: int = 50,
    device: str = "cpu",
) -> dict[str, float]:
    """Fine-tune `g` into a CondGenerator on uint8 `images` with {0, 1} `labels` (N, K) for `minutes` of
    wall time (non-saturating BCE, Adam 2e-4 β 0.5/0.999, DiffAugment color,translation, EMA of G);
    writes the EMA generator to `out` and returns the run's figures. On a GPU `device`, the images stay
    resident there and the batches are drawn there (the indices still from the CPU generator)."""
    dev = torch.device(device)
    cond = torch.from_numpy(labels).float() * 2 - 1
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(dev).manual_seed(seed)
    cg = from_unconditional(g, names, cond).to(dev)
    ema = from_unconditional(g, names, cond).to(dev)
    cg.train()
    d = ProjectionD(g.cfg, len(names))
    d.apply(init_weights)
    d.to(dev)
    pool = torch.from_numpy(np.asarray(images)).to(dev)
    cond_dev = cond.to(dev)
    opt_g = torch.optim.Adam(cg.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    start, step, nz = time.perf_counter(), 0, g.cfg.latent_dim
    while time.perf_counter() - start < minutes * 60:
        idx = torch.randint(len(images), (batch,), generator=gen).sort().values.to(dev)
        real = pool[idx].float().div_(127.5).sub_(1.0)
        c_real = cond_dev[idx]
        c_fake = cond_dev[torch.randint(len(cond), (batch,), generator=gen).to(dev)]
        zc = torch.cat([torch.randn(batch, nz, generator=gen).to(dev), c_fake], 1)[:, :, None, None]
        fake = cg(zc)
        aug = ["color", "translation"]
        d_loss = (
            F.softplus(-d(diff_augment(real, aug, aug_gen), c_real)).mean()
            + F.softplus(d(diff_augment(fake.detach(), aug, aug_gen), c_fake)).mean()
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-d(diff_augment(fake, aug, aug_gen), c_fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        with torch.no_grad():  # EMA of the weights; BatchNorm statistics copied
            for pe, p in zip(ema.parameters(), cg.parameters()):
                pe.lerp_(p, 1 - 0.999)
            for be, b in zip(ema.buffers(), cg.buffers()):
                be.copy_(b)
        step += 1
        if step % log_every == 0:
            print(
                f"step {step} d {d_loss.item():.3f} g {g_loss.item():.3f} {time.perf_counter() - start:.0f}s",
                flush=True,
            )
    seconds = time.perf_counter() - start
    save_conditional(ema.cpu(), out, {"steps": step, "seconds": round(seconds, 1), "batch": batch})
    return {"steps": step, "seconds": seconds}


def save_conditional(cg: CondGenerator, path: str | Path, info: dict[str, object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "facegan-conditional-generator",
        "names": json.dumps(cg.names),
        "config": json.dumps(cg.cfg.__dict__),
        "info": json.dumps(info),
    }
    save_file({k: v.contiguous() for k, v in cg.state_dict().items()}, str(path), metadata=meta)
    return path


def load_conditional(path: str | Path) -> CondGenerator:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "facegan-conditional-generator":
            raise ValueError("not a facegan conditional generator")
        state = load_file(str(path))
        cg = CondGenerator(
            ModelConfig(**json.loads(meta["config"])), json.loads(meta["names"]), state["prior"]
        )
        cg.load_state_dict(state)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
        raise FaceganError(f"could not load the conditional generator {str(path)!r}: {err}") from None
    return cg.eval()
