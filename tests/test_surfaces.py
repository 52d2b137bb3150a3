"""One seed, one face: the CLI, the Python API, torch.hub and the page give the same pixels by default."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facegan
from tests.serve.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
SEEDS = (7, 1234)


def as_array(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"))


def page_faces(model: str, seeds: tuple[int, ...]) -> list[np.ndarray]:
    """Faces from a real `facegan serve --pretrained MODEL` with its default settings (untruncated)."""
    port = free_port()
    cmd = [sys.executable, "-m", "facegan", "serve", "--pretrained", model, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        out = []
        for seed in seeds:
            body = urllib.request.urlopen(f"{base}/api/face.png?seed={seed}&truncation=0", timeout=30).read()
            out.append(as_array(Image.open(io.BytesIO(body))))
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def python_surface(out: Path, loader: str) -> list[np.ndarray]:
    """Faces for SEEDS from `loader` (a Python expression giving a facegan.Generator), in a new process."""
    faces = f"[np.asarray(im.convert('RGB')) for im in g.generate({list(SEEDS)!r})]"
    code = f"import numpy as np, torch, facegan; g = {loader}; np.save({str(out)!r}, np.stack({faces}))"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
    return list(np.load(out))


@pytest.mark.parametrize("model", ["celeba64", "anime64"])
def test_a_seed_gives_the_same_pixels_through_every_surface(model: str, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "facegan",
            "generate",
            "--pretrained",
            model,
            "--seed",
            ",".join(map(str, SEEDS)),
            "--out",
            f"{out}/",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    cli = [as_array(Image.open(out / f"seed{seed:06d}.png")) for seed in SEEDS]
    # The Python API and torch.hub in a fresh interpreter each, as a user meets them: this test process
    # has run hundreds of tests before (thread pools, oneDNN caches), which is no user's situation.
    api = python_surface(tmp_path / "api.npy", f"facegan.load({model!r})")
    via_hub = python_surface(
        tmp_path / "hub.npy", f"torch.hub.load({str(REPO)!r}, {model!r}, source='local', trust_repo=True)"
    )
    page = page_faces(model, SEEDS)
    assert len(cli) == len(api) == len(via_hub) == len(page) == len(SEEDS)
    for i in range(len(SEEDS)):
        assert np.array_equal(api[i], cli[i]), "CLI"
        assert np.array_equal(api[i], via_hub[i]), "torch.hub"
        assert np.array_equal(api[i], page[i]), "page"


def test_every_surface_defaults_to_exact_fp32_on_the_same_device() -> None:
    """On a CPU without native bf16 (or where "auto" happens to pick fp32) the pixel test above cannot
    tell "auto" from "off", so the defaults themselves are checked: one precision, "off", and one
    device rule, "auto" (facegan.runtime.device.pick_device), everywhere."""
    import importlib.util
    import inspect

    from facegan.cli.main import build_parser
    from facegan.config.schema import INFERENCE_AMP_DEFAULT
    from facegan.runtime.device import DEFAULT_DEVICE
    from facegan.serve.config import ServeConfig
    from facegan.sharing import hub

    assert (INFERENCE_AMP_DEFAULT, DEFAULT_DEVICE) == ("off", "auto")
    parser = build_parser()
    for verb in ("generate", "evaluate"):
        extra = ["--data", "x"] if verb == "evaluate" else []
        args = parser.parse_args([verb, "--pretrained", "celeba64", *extra])
        assert (args.amp, args.device) == ("off", "auto"), verb
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    assert spec and spec.loader
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = (
        facegan.load,
        facegan.Generator.from_pretrained,
        hub.from_pretrained,
        hubconf.celeba64,
        hubconf.anime64,
        hubconf.generator,
    )
    for entry in entries:
        params = inspect.signature(entry).parameters
        assert (params["amp"].default, params["device"].default) == ("off", "auto"), entry.__qualname__
    assert (ServeConfig().amp, ServeConfig().device) == ("off", "auto")


def test_hubconf_lists_what_loading_a_generator_imports() -> None:
    """torch.hub checks `dependencies` before it runs an entry: the list names every third-party
    package a load + generate imports (torch's own dependencies aside), and nothing more."""
    code = (
        "import sys, torch, hubconf; before = set(sys.modules); "
        "hubconf.celeba64().generate([1]); "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(','.join(sorted(new - set(sys.stdlib_module_names))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    torch_own = {"torch", "torchgen", "triton", "sympy", "mpmath", "cuda"}  # torch imports these lazily
    imported = (
        {m for m in out.stdout.strip().split(",") if m and not m.startswith("_")}
        - torch_own
        - {"facegan", "hubconf"}
    )
    spec_deps = set(
        __import__("ast").literal_eval(
            next(
                line
                for line in (REPO / "hubconf.py").read_text().splitlines()
                if line.startswith("dependencies =")
            )
            .split("=", 1)[1]
            .strip()
        )
    )
    assert imported <= spec_deps, imported - spec_deps
    assert spec_deps - {"torch"} <= imported, spec_deps - imported  # torch itself is imported first
