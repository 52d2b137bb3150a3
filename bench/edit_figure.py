"""Draw a shipped model's edits as one figure (docs/edits-celeba64.png, docs/edits-anime64.png): per
edit a labelled block, rows = seeds, columns = amounts -1 … +1 (facegan.sampling.render.sweep, the
faces `facegan generate --edit-sweep` draws), two blocks side by side.

    python bench/edit_figure.py --pretrained celeba64 --seeds 0,1,5 --out docs/edits-celeba64.png
    python bench/edit_figure.py --pretrained anime64 --seeds 0,1,2 --out docs/edits-anime64.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/edit_figure.py` from a clone
    sys.path.insert(0, str(REPO))

COLUMNS, PAD, LABEL, BLOCKS_PER_ROW = 7, 2, 14, 2


def main() -> None:
    from PIL import Image, ImageDraw

    from facegan.sampling.generate import load_generator, to_pil
    from facegan.sampling.render import sweep
    from facegan.sharing import pretrained

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", default="celeba64")
    ap.add_argument("--seeds", default="0,1,2", help="comma list: the rows of each block")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    g = load_generator(pretrained.path(args.pretrained), amp="off")
    directions = g.edits
    seeds = [int(s) for s in args.seeds.split(",")]
    size = g.cfg.size
    tile = size + PAD
    width = COLUMNS * tile
    blocks = []
    for name in directions.names:
        faces = sweep(g, directions, seeds, name, COLUMNS)  # (seeds × columns, 3, S, S), row-major
        block = Image.new("RGB", (width, LABEL + len(seeds) * tile), "white")
        ImageDraw.Draw(block).text((2, 1), f"{name}  (-1 ... 0 ... +1)", fill="black")
        for i, face in enumerate(faces):
            block.paste(to_pil(face), ((i % COLUMNS) * tile, LABEL + (i // COLUMNS) * tile))
        blocks.append(block)
    rows = -(-len(blocks) // BLOCKS_PER_ROW)
    height = blocks[0].height + 6
    figure = Image.new("RGB", (BLOCKS_PER_ROW * (width + 10), rows * height), "white")
    for i, block in enumerate(blocks):
        figure.paste(block, ((i % BLOCKS_PER_ROW) * (width + 10), (i // BLOCKS_PER_ROW) * height))
    figure.save(args.out)
    print(f"wrote {args.out} ({figure.width}×{figure.height}, {len(blocks)} edits)")


if __name__ == "__main__":
    main()
