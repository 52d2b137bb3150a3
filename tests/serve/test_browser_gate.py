"""CI must not silently lose the browser test: the skip/fail decision and .ci/browser-deps.sh's exit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.serve.browser_gate import missing_browser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def browser(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "chromium").touch()
    (tmp_path / "chromedriver").touch()
    return str(tmp_path / "chromium"), str(tmp_path / "chromedriver")


def test_installed_browser_runs_everywhere(browser: tuple[str, str]) -> None:
    assert missing_browser({}, *browser, selenium=True) is None
    assert missing_browser({"CI": "true"}, *browser, selenium=True) is None


@pytest.mark.parametrize("what", ["chromium", "chromedriver", "selenium"])
def test_missing_browser_skips_locally_and_fails_in_ci(browser: tuple[str, str], what: str) -> None:
    chromium, driver = browser
    args = (
        chromium + "-gone" if what == "chromium" else chromium,
        driver + "-gone" if what == "chromedriver" else driver,
    )
    selenium = what != "selenium"
    local = missing_browser({"CI": "false"}, *args, selenium=selenium)
    ci = missing_browser({"CI": "true"}, *args, selenium=selenium)
    assert local is not None and local[0] == "skip" and what in local[1]
    assert ci is not None and ci[0] == "fail" and "CI=true" in ci[1] and what in ci[1]


@pytest.mark.parametrize("ci,code", [("true", 1), ("", 0)])
def test_browser_deps_fails_in_ci_when_the_install_fails(tmp_path: Path, ci: str, code: int) -> None:
    """A machine without chromium whose apt-get fails: exit 1 under CI=true, 0 (a warning) otherwise."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("id", "echo 0"), ("apt-get", "exit 100")):  # root, and an apt that cannot fetch
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir), "CI": ci, "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "browser-deps.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == code, proc.stderr
    assert ("ERROR" if code else "WARNING") in proc.stderr and "apt-get update failed" in proc.stderr
