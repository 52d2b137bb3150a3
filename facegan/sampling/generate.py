"""Generating faces: load a generator from a checkpoint or an export, and map seeds to images.

Face number `seed` is always G(z) with z drawn from `torch.Generator().manual_seed(seed)` on the CPU,
and G runs in eval mode (BatchNorm uses its running statistics), so a seed names one face no matter
the batch it is generated in or the device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid, save_image

from facegan.config.schema import INFERENCE_AMP_DEFAULT
from facegan.errors import FaceganError
from facegan.networks.checkpoint import (
    DISPLAY_KEY,
    check_state,
    checkpoint_config,
    load_checkpoint,
    load_state,
    read_export_metadata,
)
from facegan.networks.factory import build_generator
from facegan.runtime.device import pick_device
from facegan.runtime.perf import for_inference, model_config
from facegan.sampling.display import (  # noqa: F401  (MAX_TRUNCATION: re-exported for the API's bounds)
    MAX_TRUNCATION,
    MIN_TRUNCATION,
    display_file,
    display_value,
    read_display,
)
from facegan.sampling.gif import gif_bytes, shared_palette
from facegan.sampling.provenance import (
    HASH_KEY,
    HELDOUT_KEY,
    shipped_training_record,
    training_record,
)

MAX_SEED = 2**63 - 1
# Images one command may make (faces, or frames of a walk): they are all held in memory at once.
MAX_FACES = 10_000
MAX_DISPLAY_SIZE = 2048  # largest --display-size of a walk's frames, in pixels
# Suffixes of animations: with --interpolate they pick the walk's format; without, they are a mistake.
ANIMATION_SUFFIXES = (".gif", ".mp4", ".webm", ".mov", ".avi", ".mkv")


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", amp: str = INFERENCE_AMP_DEFAULT
) -> nn.Module:
    """A ready-to-use generator (eval mode) from a training checkpoint (.pt / run folder), an exported
    `.safetensors` file or a Hub-layout folder. A checkpoint's EMA generator (G_ema) is preferred.

    `amp` "off" (default) is the plain fp32 module; "auto" (what the CLI and the server use) wraps it
    with the device's fast inference settings (`facegan.runtime.perf.for_inference`), e.g. bf16 on a CPU with
    native bf16: the same faces to within bf16 rounding, about twice as fast. `device` may be "auto"
    (CUDA, then MPS, then CPU); an unknown or absent device is one clear error."""
    if not str(path).strip():  # Path("") is the current folder: the error would be a missing latest.pt
        raise FaceganError("no checkpoint given (an empty path)")
    device = pick_device(device)
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():
        # A Hub-layout folder (facegan export --format hub): its model.safetensors is a facegan export.
        path = path / "model.safetensors"
    display = None  # a training checkpoint has none: the full distribution
    if path.suffix == ".safetensors":
        cfg, state, meta = read_export_metadata(path)
        display = display_value(meta.get(DISPLAY_KEY), f"{str(path)!r}'s {DISPLAY_KEY}")
        trained_on = shipped_training_record(path)
        trained_on = training_record(meta) if trained_on is None else trained_on
    else:
        ckpt = load_checkpoint(path)
        run_cfg = checkpoint_config(ckpt, path)
        cfg = run_cfg.model
        trained_on = training_record(
            {HASH_KEY: ckpt.get(HASH_KEY), HELDOUT_KEY: run_cfg.train.train_on_heldout}
        )
        key = "G_ema" if "G_ema" in ckpt else "G"
        if key not in ckpt:
            raise FaceganError(
                f"{str(path)!r} holds no generator weights (no 'G' entry); the checkpoint is incomplete"
            )
        state = ckpt[key]
    # Shapes are compared on the meta device first: a file whose config and weights disagree (or that
    # claims a huge model) is refused before the full-size generator is allocated.
    with torch.device("meta"):
        check_state(build_generator(cfg), state, "generator", path)
    g = build_generator(cfg)
    load_state(g, state, "generator", str(path))
    g = g.to(device).eval()
    out = for_inference(g, device, amp).eval()
    # Edit directions shipped beside the weights (facegan.edits); None when there are none. Set on the
    # plain generator too, so an export of it (which unwraps the inference wrapper) carries them.
    from facegan.sampling.directions import find_directions

    directions = find_directions(path)
    # nn.Module types its attributes as Tensor | Module, so these plain attributes go through setattr.
    for module in (out, g):
        setattr(module, "edits", directions)  # noqa: B010
    # A shipped model's display default is measured for it and kept beside it (<name>.display.yaml).
    if (shipped := display_file(path)) is not None:
        display = display_value(read_display(shipped), repr(str(shipped)))
    for module in (out, g):
        setattr(module, "display_truncation", display)  # noqa: B010
        # What it trained on (facegan.sampling.provenance): an export of it says so too.
        setattr(module, "training_data", trained_on)  # noqa: B010
    return out


def check_truncation(truncation: float | None) -> None:
    """FaceganError unless `truncation` is None (off) or a finite number >= MIN_TRUNCATION (NaN would
    otherwise compare false everywhere and silently mean "off")."""
    if truncation is not None and not (math.isfinite(truncation) and truncation >= MIN_TRUNCATION):
        raise FaceganError(
            f"--truncation must be a number >= {MIN_TRUNCATION} (or left out for the full "
            f"distribution), got {truncation}"
        )


def latents(seeds: list[int], latent_dim: int, truncation: float | None = None) -> torch.Tensor:
    """One z per seed, (N, latent_dim, 1, 1), on the CPU.

    With `truncation` t, components with |z_i| > t are redrawn from the seed's own generator until
    they fall inside: a truncated normal, as in BigGAN's "truncation trick". It is not StyleGAN's
    truncation, which pulls w toward the mean latent (a DCGAN has no mapping network to average in).
    Redrawing shrinks the latent's norm (a 100-d z: on average 9.98 untruncated, 7.41 at t = 1.5) and moves
    faces toward the typical ones; smaller t trades variety for fidelity.
    """
    check_truncation(truncation)
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(latent_dim, 1, 1, generator=gen)
        while truncation is not None and (outside := z.abs() > truncation).any():
            z[outside] = torch.randn(int(outside.sum()), generator=gen)
        out.append(z)
    return torch.stack(out)


# Every forward pass of G for generation runs exactly this many latents, padded with zeros: kernels may
# round differently for different batch sizes (the r3gan G's linear basis does, by ~1e-6 in fp32), and
# a fixed shape keeps a seed's pixels identical whether it is drawn alone, in a grid, in a walk, by the
# CLI, the Python API or the server (whose worker uses the same constant).
PASS_BATCH = 8


@torch.inference_mode()
def forward_fixed(g: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) for latents (N, nz, 1, 1) in passes of exactly PASS_BATCH: (N, 3, S, S) in [-1, 1], CPU.

    The latents go to G's device in one copy and the images come back in one, so on a GPU the passes
    queue up without a host synchronisation between them."""
    n = len(z)
    if pad := -n % PASS_BATCH:
        z = torch.cat([z, z.new_zeros(pad, *z.shape[1:])])
    z = z.to(next(g.parameters()).device)
    return torch.cat([g(chunk) for chunk in z.split(PASS_BATCH)])[:n].float().cpu()


def decode(g: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """G(z) in [-1, 1], (N, 3, S, S) on the CPU; at most `batch_size` latents on G's device at a time
    (bounds its memory), each group run in passes of PASS_BATCH."""
    return torch.cat([forward_fixed(g, chunk) for chunk in z.split(batch_size)])


def faces(
    g: nn.Module, seeds: list[int], batch_size: int = 256, truncation: float | None = None
) -> torch.Tensor:
    """Images in [-1, 1], (N, 3, S, S) on the CPU, one per seed."""
    return decode(g, latents(seeds, model_config(g).latent_dim, truncation), batch_size)


def interpolation(
    g: nn.Module, seeds: list[int], frames: int, truncation: float | None = None
) -> torch.Tensor:
    """A latent walk through `seeds` in order (slerp), `frames` images per leg, as one tensor."""
    if len(seeds) < 2:
        raise FaceganError("--interpolate needs at least two seeds, e.g. --seed 3,17,42")
    if not 2 <= frames <= 600:
        raise FaceganError(f"--frames must be between 2 and 600, got {frames}")
    total = (len(seeds) - 1) * (frames - 1) + 1
    if total > MAX_FACES:
        raise FaceganError(
            f"a walk through {len(seeds)} seeds at --frames {frames} has {total:,} frames; "
            f"at most {MAX_FACES:,} (use fewer seeds or frames)"
        )
    z = latents(seeds, model_config(g).latent_dim, truncation)
    legs = [
        walk_latents(z[i], z[i + 1], frames, "slerp")[: -1 if i < len(z) - 2 else None]
        for i in range(len(z) - 1)
    ]
    return decode(g, torch.cat(legs))


def write_walk(images: torch.Tensor, out: str | Path, size: int | None = None, fps: int = 24) -> Path:
    """Save a walk as an animated GIF, or an MP4 when `out` ends in .mp4 (needs PyAV)."""
    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    side = str(size) if size else "native"
    if out.suffix.lower() == ".gif":
        data = walk_gif(images, side, "lanczos", duration=max(1, round(1000 / fps)))
        with writing(out):
            out.write_bytes(data)
        return out
    if out.suffix.lower() != ".mp4":
        raise FaceganError(f"--out for --interpolate must end in .gif or .mp4, got {str(out)!r}")
    try:
        import av
    except ImportError:
        raise FaceganError("MP4 output needs PyAV: pip install av (or write a .gif)") from None
    frames = [resize(to_pil(img), side, "lanczos") for img in images]
    with writing(out), av.open(str(out), mode="w") as container:  # PyAV's file errors are OSErrors
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = frames[0].width
        stream.pix_fmt = "yuv420p"
        for im in frames:
            for packet in stream.encode(av.VideoFrame.from_image(im)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def parse_seeds(spec: str, limit: int = MAX_FACES) -> list[int]:
    """'7' → [7]; '0-3' → [0, 1, 2, 3]; '1,5,9-10' → [1, 5, 9, 10]; at most `limit` seeds."""
    ranges: list[range] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                ranges.append(range(a, b + 1))
            else:
                ranges.append(range(int(part), int(part) + 1))
    except ValueError:
        raise FaceganError(
            f"bad --seed {spec!r}; use a number, a range like 0-63, or a list like 1,5,9-12"
        ) from None
    if any(r.start < 0 or r.stop - 1 > MAX_SEED for r in ranges):
        raise FaceganError(f"seeds must be between 0 and {MAX_SEED}")
    # Counted before the list is built: a range like 0-999999999 would exhaust memory first.
    count = sum(len(r) for r in ranges)
    if count > limit:
        raise FaceganError(
            f"--seed {spec!r} names {count:,} faces; at most {limit:,} per command "
            f"(split the range over several commands)"
        )
    return [s for r in ranges for s in r]


def write_faces(
    images: torch.Tensor, seeds: list[int], out: str | Path, nrow: int | None = None
) -> list[Path]:
    """A grid PNG when `out` ends in an image suffix, else one PNG per seed inside folder `out`."""
    out = Path(out)
    norm = dict(normalize=True, value_range=(-1.0, 1.0))
    if out.suffix.lower() in ANIMATION_SUFFIXES:
        raise FaceganError(
            f"--out {str(out)!r} is an animation; add --interpolate for a latent walk, or "
            f"give a .png for a grid or a folder for one PNG per face"
        )
    if nrow is not None and nrow < 1:
        raise FaceganError(f"--nrow must be >= 1, got {nrow}")
    if out.suffix.lower() in (".png", ".jpg", ".jpeg"):
        nrow = nrow or max(1, round(len(seeds) ** 0.5))
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(images, out, nrow=nrow, padding=2, **norm)
        return [out]
    if out.exists() and not out.is_dir():
        raise FaceganError(f"--out {str(out)!r} is a file; give a .png for a grid or a folder")
    paths = []
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        for img, seed in zip(images, seeds):
            path = out / f"seed{seed:06d}.png"
            save_image(img, path, **norm)
            paths.append(path)
    return paths


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """Turn a failed write of `out` (unwritable folder, disk full, a file in the way) into one line."""
    try:
        yield
    except OSError as err:
        raise FaceganError(
            f"could not write {str(out)!r}: {err.strerror or err}; choose a writable --out"
        ) from None


def grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(3, H, W) grid in [0, 1] of images in [-1, 1]."""
    out: torch.Tensor = make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1.0, 1.0))
    return out


# ----------------------------------------------------------------------------- images and walks


def to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] → RGB image, rounded exactly like torchvision's save_image, so a served
    face has the pixels `facegan generate` writes for that seed (up to batch-size rounding)."""
    return pil_from_unit(img.clamp(-1.0, 1.0).add(1.0).div(2.0))


def pil_from_unit(x: torch.Tensor) -> Image.Image:
    arr = x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")


def resize(im: Image.Image, size: str, resample: str) -> Image.Image:
    """Scale a square image to `size` px; NEAREST keeps the pixels crisp when enlarging, and
    shrinking always uses LANCZOS because NEAREST would alias."""
    if size == "native" or int(size) == im.width:
        return im
    target = int(size)
    smooth = resample == "lanczos" or target < im.width
    filt = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    return im.resize((target, target), filt)


def slerp(a: torch.Tensor, b: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latents, one row per t; it keeps the norm typical of a
    Gaussian sample, where a straight line dips through low-norm (washed-out) latents."""
    a64, b64 = a.flatten().double(), b.flatten().double()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    t = ts.double()[:, None]
    if omega.abs() < 1e-6:  # (nearly) parallel: slerp degenerates to lerp
        out = (1 - t) * a64 + t * b64
    else:
        out = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    out = out.float().reshape(len(ts), *a.shape)
    out[0], out[-1] = a, b  # exact ends, so the walk starts and stops on the seeds' own faces
    return out


def walk_latents(za: torch.Tensor, zb: torch.Tensor, frames: int, method: str) -> torch.Tensor:
    ts = torch.linspace(0.0, 1.0, frames)
    if method == "slerp":
        return slerp(za, zb, ts)
    return torch.lerp(za[None], zb[None], ts[:, None, None, None])


def walk_gif(images: torch.Tensor, size: str, resample: str, duration: int) -> bytes:
    """An animated, looping GIF of the frames, resized to `size` (facegan.sampling.gif writes it). Pillow
    merges consecutive identical frames, so a walk from a seed to itself is a one-frame GIF."""
    native = [to_pil(img) for img in images]
    # One palette for the whole walk (a palette per frame makes colours flicker), built from the
    # native frames, which hold every colour a NEAREST upscale can show.
    palette = shared_palette(native)
    out = [resize(im, size, resample).quantize(palette=palette, dither=Image.Dither.NONE) for im in native]
    return gif_bytes(out, duration)
