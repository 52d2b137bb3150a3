"""Can blur or noise game the fidelity figures? Measure perturbed real faces as if they were a generator's.

Training-split reals, as they are and blurred or noised, are measured with `facegan evaluate --metrics
prdc` (the trained face embedding, against the held-out split), and the same images' PRDC in the seeded
random ResNet-18 the project used before (facegan.metrics.prdc.RandomEmbedding). A metric that rewards
blur or noise scores a perturbed set above the untouched one. Data: `facegan prepare ZIP --out DIR`.

It also counts close pairs in raw pixels (`pixel_close_pairs_ratio`: facegan.metrics.close_pairs on the
flattened faces in [-1, 1], the same held-out reals and the same sets): a blurred set of distinct real
faces scores far above 1 there, so a pixel-space close-pair ratio reads sharpness, not repetition.
`--generator` adds a generator's faces (seeds 0…, as many as --count) as one more row, measured the
same way: a shipped name or a generator file.

    python bench/perturbed_reals.py --data data/celeba64 --out bench/results/perturbed-reals-celeba64.json
    python bench/perturbed_reals.py --data data/anime64 --generator anime64

It prints a Markdown table (docs/metrics.md's) and, with --out, writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/perturbed_reals.py` from a clone
    sys.path.insert(0, str(REPO))

BATCH = 256
KEYS = ("precision", "recall", "density", "coverage")


def perturbations() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each perturbation of uint8 faces (N, 3, S, S), seeded."""
    import torch
    import torch.nn.functional as F

    def blur(factor: int) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:  # down by `factor`, back up bilinearly: detail is lost
            t = torch.from_numpy(x).float()
            small = F.avg_pool2d(t, factor)
            up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return up.round().clamp(0, 255).to(torch.uint8).numpy()

        return run

    def noise(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:  # Gaussian pixel noise of `sigma` levels out of 255
            gen = torch.Generator().manual_seed(0)
            t = torch.from_numpy(x).float() + torch.randn(x.shape, generator=gen) * sigma
            return t.round().clamp(0, 255).to(torch.uint8).numpy()

        return run

    return {
        "reals": lambda x: x,
        "blur 2x": blur(2),
        "blur 4x": blur(4),
        "noise 8/255": noise(8.0),
        "noise 32/255": noise(32.0),
    }


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 3, S, S) as flat float32 rows in [-1, 1] (the generator's range)."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 127.5 - 1


def generated(source: str, count: int) -> np.ndarray:
    """uint8 faces (count, 3, S, S) of seeds 0… from anything `facegan.load` opens (a shipped name, a
    generator file, a run folder), as `facegan evaluate` draws them."""
    import torch

    import facegan
    from facegan.metrics.measurement import fake_batches

    g = facegan.load(source, device="cpu").model
    return torch.cat(list(fake_batches(g, list(range(count)), BATCH))).numpy()


def measure(data: str, count: int, generators: tuple[str, ...] = ()) -> list[dict[str, object]]:
    import torch

    from facegan.data.dataset import PackedDataset
    from facegan.metrics import evaluate
    from facegan.metrics.close_pairs import close_pairs
    from facegan.metrics.measurement import real_batches
    from facegan.metrics.prdc import RandomEmbedding, embed, prdc
    from facegan.metrics.protocols import PROTOCOLS, real_indices
    from facegan.metrics.reference import embedding_for, reference

    ds = PackedDataset(data)
    ref = reference(ds, "heldout")  # refuses data prepared without a held-out split
    emb = embedding_for(ds, progress=True)
    rows_train = ds.train_rows[:count]
    reals = np.ascontiguousarray(ds.images[np.sort(rows_train)])  # training-split faces: never the reference
    real_rows = ref.rows[real_indices(len(ref.rows), PROTOCOLS["prdc"].max_real)]
    rand = RandomEmbedding()
    real_rand = embed(rand, real_batches(ds, real_rows, BATCH))
    real_pixels = pixels(ds.images[real_rows])
    out: list[dict[str, object]] = []
    sets: dict[str, Callable[[], np.ndarray]] = {
        name: partial(perturb, reals) for name, perturb in perturbations().items()
    }
    sets.update({source: partial(generated, source, count) for source in generators})
    for name, make in sets.items():
        fakes = make()
        res = evaluate(fakes, ds, ["prdc"], num_fake=len(fakes), embedding=emb)
        rnd = prdc(real_rand, embed(rand, torch.from_numpy(np.ascontiguousarray(fakes)).split(BATCH)))
        row: dict[str, object] = {
            "set": name,
            **{k: res[f"prdc_{k}"] for k in KEYS},
            "close_pairs_ratio": res["prdc_close_pairs_ratio"],
            # The same count in raw pixels: close_pairs uses as many of the set as there are reals.
            "pixel_close_pairs_ratio": close_pairs(real_pixels, pixels(fakes))["close_pairs_ratio"],
            **{f"random_{k}": rnd[k] for k in KEYS},
            "num_images": len(fakes),
            "num_real": len(real_rows),
        }
        out.append(row)
        print(
            f"{name}: " + ", ".join(f"{k} {float(str(v)):.3f}" for k, v in row.items() if k not in ("set",)),
            flush=True,
        )
    return out


def table(rows: list[dict[str, object]]) -> str:
    head = "| set | " + " | ".join(KEYS) + " | close pairs | pixel close pairs"
    head += " | R18 " + " | R18 ".join(KEYS) + " |"
    lines = [head, "|---" * (3 + 2 * len(KEYS)) + "|"]
    for r in rows:
        cells = (
            [f"{float(str(r[k])):.3f}" for k in KEYS]
            + [f"{float(str(r[k])):.2f}" for k in ("close_pairs_ratio", "pixel_close_pairs_ratio")]
            + [f"{float(str(r['random_' + k])):.3f}" for k in KEYS]
        )
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="data prepared by `facegan prepare` (with a held-out split)")
    p.add_argument("--count", type=int, default=2000, help="training-split reals to perturb (default 2,000)")
    p.add_argument(
        "--generator",
        action="append",
        default=[],
        metavar="SOURCE",
        help="also measure this generator's faces (anything facegan.load opens); repeat for several",
    )
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    rows = measure(args.data, args.count, tuple(args.generator))
    print()
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"data": args.data, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
