"""Figures of a run: loss and score curves, the progress animation, and real-vs-fake side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from facegan.sampling.gif import gif_bytes
from facegan.storage.files import atomic_write
from facegan.tracking.runs import read_stats


def _curve(
    stats: list[dict[str, Any]],
    out: Path,
    series: dict[str, str],
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    fig, ax = plt.subplots(figsize=(10, 5))
    for key, label in series.items():
        pts = [(r["step"], r[key]) for r in stats if key in r]
        if pts:
            ax.plot(*zip(*pts), label=label, linewidth=1)
    ax.set(title=title, xlabel="iterations", ylabel=ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_losses(stats: list[dict[str, Any]], out: Path) -> Path:
    """Loss_D and Loss_G against training step (the seeds' "Generator and Discriminator Loss")."""
    return _curve(
        stats, out, {"loss_d": "D", "loss_g": "G"}, "Generator and Discriminator Loss During Training", "loss"
    )


def plot_scores(stats: list[dict[str, Any]], out: Path) -> Path:
    """Mean D(x) and D(G(z)) (before and after the G step) against training step."""
    return _curve(
        stats,
        out,
        {
            "d_real": "D(x) real score",
            "d_fake_before": "D(G(z)) fake score, D step",
            "d_fake_after": "D(G(z)) fake score, G step",
        },
        "Discriminator scores",
        "mean probability of 'real'",
        ylim=(0.0, 1.0),
    )


def progress_gif(frames: list[Path], out: Path, ms_per_frame: int = 400) -> Path | None:
    """Animate the fixed-noise sample grids in training order, each frame labelled with its step."""
    if not frames:
        return None
    images = []
    for path in frames:
        with Image.open(path) as img:
            frame = img.convert("RGB")
        ImageDraw.Draw(frame).text((4, 2), path.stem.replace("-", " "), fill=(255, 255, 255))
        images.append(frame.quantize(colors=255))  # a palette per frame: early noise, late faces
    data = gif_bytes(images, ms_per_frame)
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    return out


def real_vs_fake(real: torch.Tensor, fake: torch.Tensor, out: Path, nrow: int = 8) -> Path:
    """Side-by-side grids of real and generated images (both in [-1, 1])."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 7.5))
    for ax, imgs, title in ((axes[0], real, "Real Images"), (axes[1], fake, "Fake Images")):
        grid = make_grid(imgs, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0))
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def sample_frames(run_dir: Path) -> list[Path]:
    """The run's fixed-noise grids, oldest first (file names carry the zero-padded step)."""
    return sorted((run_dir / "samples").glob("step-*.png"))


def rebuild(run_dir: Path) -> list[Path]:
    """Redraw loss.png, scores.png and progress.gif of a run from stats.jsonl and samples/."""
    stats = read_stats(run_dir)
    written = []
    if stats:
        written += [plot_losses(stats, run_dir / "loss.png"), plot_scores(stats, run_dir / "scores.png")]
    gif = progress_gif(sample_frames(run_dir), run_dir / "progress.gif")
    if gif:
        written.append(gif)
    return written
