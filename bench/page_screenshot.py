"""Screenshot the face page as a new user sees it: `facegan serve` with the shipped models, one seed with
a smile edit, in headless Chromium (the browser the page's test drives). Writes docs/serve.png.

    python bench/page_screenshot.py --seed 13 --edit Smiling:0.6 --out docs/serve.png

Needs the `[serve]` extra, selenium, and Debian's chromium + chromedriver (.ci/browser-deps.sh).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"facegan serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"facegan serve answered no /healthz within {STARTUP_S:.0f} s")


def screenshot(url: str, out: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        drv.get(url)
        ready = "const i = document.getElementById('face'); return i.complete && i.naturalWidth > 0;"
        WebDriverWait(drv, 60).until(lambda d: d.execute_script(ready))
        drv.save_screenshot(str(out))
    finally:
        drv.quit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--model", default="celeba64")
    p.add_argument("--edit", default="Smiling:0.6", help="the permalink's edit= value ('' for none)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "serve.png")
    p.add_argument("--size", default="900x1250", help="browser window, WIDTHxHEIGHT")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegan", "serve", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(base, proc)
        query = {"seed": args.seed, "model": args.model, **({"edit": args.edit} if args.edit else {})}
        screenshot(f"{base}/?{urlencode(query)}", args.out, width, height)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"wrote {args.out} ({base}/?{urlencode(query)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
