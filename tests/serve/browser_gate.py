"""Whether tests/serve/test_browser.py can run here, and if not, whether that skips it or fails the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def missing_browser(
    env: Mapping[str, str], chromium: str, chromedriver: str, selenium: bool
) -> tuple[str, str] | None:
    """None when selenium, `chromium` and `chromedriver` are all there; otherwise ("skip" | "fail",
    reason). A developer machine without a browser skips; CI (CI=true, as GitHub Actions, GitLab and
    most CI systems set it) fails, so the browser test can never silently stop running there."""
    if not selenium:
        reason = "selenium is not installed (pip install -e '.[test]')"
    elif not (Path(chromium).is_file() and Path(chromedriver).is_file()):
        reason = (
            f"chromium ({chromium}) or chromedriver ({chromedriver}) not installed; run .ci/browser-deps.sh"
        )
    else:
        return None
    if env.get("CI", "").lower() == "true":
        return "fail", f"CI=true but {reason}: the browser test must run in CI"
    return "skip", reason
