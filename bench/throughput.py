"""Training throughput of facegan against the reference DCGAN recipe, in one run.

Work unit: one full training step of the seed DCGAN-64 at batch 128 — D on a real and a fake batch,
D's update, then G's update through the freshly updated D — i.e. what the PyTorch DCGAN example and the
seed write-ups do per batch. Rows:

  a            the reference recipe, re-implemented here: JPEGs decoded by PIL in a DataLoader with
               2 workers, Resize+CenterCrop+ToTensor+Normalize, Sigmoid + BCELoss, fp32 eager
  b            facegan with default settings (what `facegan train` does per step, from the packed set)
  f            facegan with default settings but exact fp32 (`--amp off`), where the default differs
  c            facegan with its fastest settings for the device (candidates screened, best kept)
  gen-default  generator-only inference, default settings
  gen-fastest  generator-only inference, fastest settings (screened separately: inference ≠ training)

All rows read the same images: the source is packed once with `facegan.data.prepare.prepare`, and exactly the
files it kept are staged (extracted from the zip, or linked) as an ImageFolder for the reference.
Warm-up (worker start, oneDNN primitive creation, torch.compile) is excluded; each row reports the
median and range of several timed windows, with a device sync at every window end. The windows of
rows a, b, c (and of the two gen rows) run in interleaved rounds, so a load change on a shared machine
hits every row alike.

    python bench/throughput.py                        # CelebA zip next to the repo, device auto
    python bench/throughput.py --data synthetic:6000  # no download needed
    python bench/throughput.py --help

The code is the package `bench/speed/` (reference recipe, runners, timing, screening, FLOPs, memory,
report); this file is its command.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as `python bench/throughput.py` without installing anything
    sys.path.insert(0, str(REPO_ROOT))

from bench.speed.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
