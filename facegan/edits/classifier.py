"""The attribute classifier that finds, calibrates and measures edits: labelled faces → 40 CelebA attributes.

A small CNN trained here on one half of the labelled faces (`split_halves`): the half that finds and
calibrates directions ("A") never measures them, and the other half's classifier ("B") does, so the
numbers in a model card are not graded by the network that chose the edits. Its penultimate features
(256-d, L2-normalised) are also the identity embedding of `facegan.edits.evaluate`: there is no
pretrained face-recognition network offline, so "identity" here means "what this attribute network
sees", which is documented wherever the figure is reported.

Labels come from `read_attributes` (the official `list_attr_celeba.txt` layout), kept apart from the
dataset code so it can later be swapped for PackedDataset's own attributes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from facegan.errors import FaceganError

FEATURES = 256


def read_attributes(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(attribute names, {image file name: int8 array of ±1}) from a `list_attr_celeba.txt`: first line
    the count, second the names, then `000001.jpg -1  1 ...` (any whitespace)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FaceganError(f"could not read attributes {str(path)!r}: {err}") from None
    if len(lines) < 2:
        raise FaceganError(f"{str(path)!r} is not a list_attr_celeba.txt (fewer than two lines)")
    names = lines[1].split()
    rows: dict[str, np.ndarray] = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise FaceganError(
                f"{str(path)!r} line {number}: expected a file name and {len(names)} values of 1 or -1"
            )
        rows[parts[0]] = np.array([int(v) for v in parts[1:]], dtype=np.int8)
    return names, rows


def labels_for(files: list[str], attrs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, A) float32 labels in {0, 1} for a prepared dataset's `files` (matched by base name)."""
    missing = [f for f in files if Path(f).name not in attrs]
    if missing:
        raise FaceganError(
            f"{len(missing)} of {len(files)} images have no attribute row (first: "
            f"{missing[0]!r}); the attribute file must describe every image"
        )
    return np.stack([attrs[Path(f).name] for f in files]).astype(np.float32).__gt__(0).astype(np.float32)


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, sorted index halves of n faces, fixed by `seed` (half A finds, half B measures)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


class AttributeNet(nn.Module):
    """64 px (or any power of two ≥ 16) image in [-1, 1] → `features` (256-d) → one logit per attribute."""

    def __init__(self, names: list[str], size: int = 64) -> None:
        super().__init__()
        self.names = list(names)
        self.size = size
        widths, layers, c = [32, 64, 128, FEATURES], [], 3
        for w in widths:  # each halves H and W: 64 → 4
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, True)]
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURES, len(names))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 256) pooled features (the identity embedding, before normalisation)."""
        if x.shape[-1] != self.size:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )
        out: torch.Tensor = self.body(x)
        return out.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x))
        return logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities (N, A), L2-normalised features (N, 256)) in eval mode, on the CPU."""
        self.eval()
        probs, feats = [], []
        for chunk in x.split(batch):
            f = self.features(chunk.float())
            probs.append(torch.sigmoid(self.head(f)))
            feats.append(F.normalize(f, dim=1))
        return torch.cat(probs), torch.cat(feats)


@dataclass
class TrainReport:
    epochs: int
    seconds: float
    train_count: int
    held_out_accuracy: dict[str, float]  # per attribute, on the other half (honest)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    *,
    epochs: int = 12,
    batch: int = 64,
    seed: int = 0,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
    log: bool = False,
) -> tuple[AttributeNet, TrainReport]:
    """Train an AttributeNet on uint8 images (N, 3, S, S) with {0, 1} labels (N, A): Adam, BCE, random
    horizontal flips (every CelebA attribute is mirror-symmetric). Deterministic in `seed` on one
    thread. `held_out` (images, labels) of the other half gives the accuracies in the report."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = AttributeNet(names, images.shape[-1])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        y_all = torch.from_numpy(labels)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(images), generator=gen)
            total = 0.0
            for i in range(0, len(order) - batch + 1, batch):
                idx = order[i : i + batch].numpy()
                x = torch.from_numpy(np.asarray(images[np.sort(idx)])).float().div_(127.5).sub_(1.0)
                y = y_all[np.sort(idx)]
                flip = torch.rand(len(x), generator=gen) < 0.5
                x[flip] = x[flip].flip(-1)
                loss = F.binary_cross_entropy_with_logits(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
            sched.step()
            if log:
                mean = total / max(1, len(order) // batch)
                print(f"epoch {epoch + 1}/{epochs} loss {mean:.4f}", flush=True)
    net.eval()
    acc: dict[str, float] = {}
    if held_out is not None:
        probs, _ = net.predict(torch.from_numpy(np.asarray(held_out[0])).float().div_(127.5).sub_(1.0))
        hit = ((probs > 0.5).float() == torch.from_numpy(held_out[1])).float().mean(0)
        acc = {n: round(float(a), 4) for n, a in zip(names, hit)}
    return net, TrainReport(epochs, time.perf_counter() - start, len(images), acc)


def save_classifier(net: AttributeNet, path: str | Path, info: dict[str, object] | None = None) -> Path:
    """Weights + names (and `info`, e.g. which half trained it) in one .safetensors file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "facegan-attribute-classifier",
        "names": json.dumps(net.names),
        "size": str(net.size),
        "info": json.dumps(info or {}),
    }
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return path


def load_classifier(path: str | Path) -> tuple[AttributeNet, dict[str, object]]:
    """An AttributeNet (eval mode) and its info from `save_classifier`'s file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "facegan-attribute-classifier":
            raise ValueError("not a facegan attribute classifier")
        net = AttributeNet(json.loads(meta["names"]), int(meta["size"]))
        net.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
        raise FaceganError(f"could not load the attribute classifier {str(path)!r}: {err}") from None
    return net.eval(), json.loads(meta.get("info", "{}"))


def labelled_faces(
    data: str, attrs_path: str | Path, size: int = 64
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images (N, 3, S, S), {0, 1} labels (N, A), names) of a dataset (zip, folder or prepared
    folder, prepared as `facegan prepare` does) and its attribute file."""
    from facegan.data.dataset import resolve_dataset

    ds = resolve_dataset(data, size, quiet=True)
    names, rows = read_attributes(attrs_path)
    files = ds.manifest.get("files")
    if not isinstance(files, list) or len(files) != len(ds):
        raise FaceganError(f"{data!r}: its manifest lists no file names, so attributes cannot be matched")
    return np.asarray(ds.images), labels_for(files, rows), names


def classifier_for_half(
    data: str,
    attrs_path: str | Path,
    half: str,
    *,
    epochs: int = 12,
    seed: int = 0,
    cache: str | Path | None = None,
    log: bool = False,
) -> AttributeNet:
    """The classifier of `half` ("A" finds and calibrates, "B" measures), trained on that half of the
    split and checked on the other; read from `cache` when that file exists, else trained (and saved
    there when given). Training is deterministic on one torch thread."""
    if cache is not None and Path(cache).is_file():
        net, info = load_classifier(cache)
        if info.get("half") != half:
            raise FaceganError(f"{str(cache)!r} is classifier {info.get('half')}, not {half}")
        return net
    images, labels, names = labelled_faces(data, attrs_path)
    a, b = split_halves(len(images), seed)
    mine, other = (a, b) if half == "A" else (b, a)
    net, report = train_classifier(
        images[mine],
        labels[mine],
        names,
        epochs=epochs,
        seed=seed,
        held_out=(images[other], labels[other]),
        log=log,
    )
    if cache is not None:
        save_classifier(
            net,
            cache,
            {
                "half": half,
                "split_seed": seed,
                "epochs": epochs,
                "train_count": report.train_count,
                "seconds": round(report.seconds, 1),
                "held_out_accuracy": report.held_out_accuracy,
            },
        )
    return net
