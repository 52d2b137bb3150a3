"""Every ```python block of README.md and of the pages under docs/ runs, as a user would run it: in
order (README.md first, then docs/*.md by name, each file top to bottom), each in a fresh Python
process, all in one empty folder (a block may use what an earlier one wrote, e.g. docs/python.md's
ONNX snippet reads the celeba64.onnx its export snippet made). A block that imports neither facegan
nor torch (the ONNX serving snippet) must also run without importing torch, as docs/python.md
promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NO_TORCH = "\nimport sys\nassert 'torch' not in sys.modules, 'this snippet imported torch'\n"


def documents() -> list[Path]:
    """README.md, then every docs/ page by name: the order their blocks run in."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """(file, code) for every ```python block, in run order."""
    return [
        (str(doc.relative_to(REPO)), code)
        for doc in documents()
        for code in BLOCK.findall(doc.read_text(encoding="utf-8"))
    ]


def test_the_readme_has_python_blocks() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 5
    # The Python API, the Hub, torch.hub and ONNX: the page the list of made files below comes from.
    assert sum(doc == "docs/python.md" for doc, _ in blocks) >= 5


@pytest.mark.slow
def test_every_python_block_runs(tmp_path: Path) -> None:
    # The torch.hub snippet loads "." from a clone: this folder stands in for one (hubconf.py at its
    # root; facegan itself is the installed package).
    (tmp_path / "hubconf.py").symlink_to(REPO / "hubconf.py")
    env = {
        **os.environ,
        "FACEGAN_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    for i, (doc, code) in enumerate(python_blocks()):
        torch_free = not re.search(r"^\s*(import|from) (facegan|torch)\b", code, re.M)
        script = tmp_path / f"doc_block_{i}.py"
        script.write_text(code + (NO_TORCH if torch_free else ""))
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{doc}: python block {i} failed:\n{code}\n{done.stderr[-3000:]}"
    for made in (
        "face3.png",
        "grid.png",
        "walk.gif",
        "tiny.png",
        "celeba64.onnx",
        "celeba64-hub/README.md",
        "onnx-faces.png",
    ):
        assert (tmp_path / made).is_file(), f"a docs/python.md snippet promised {made}"
