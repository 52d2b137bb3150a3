#!/usr/bin/env bash
# Installs what tests/serve/test_browser.py needs on a fresh Debian/Ubuntu machine: Chromium and its
# WebDriver from the distribution (test tools' own browser downloads need the open internet).
# Idempotent. When the install fails it exits 0 on a developer machine (the browser test then skips
# with its reason) but 1 under CI=true, where a silently skipped browser test would hide a broken page.
set -u

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser-deps: chromium and chromedriver already installed"
    exit 0
fi

warn() {
    if [ "${CI:-}" = "true" ]; then
        echo "browser-deps: ERROR: $*; CI=true needs tests/serve/test_browser.py to run, so this fails" >&2
        exit 1
    fi
    echo "browser-deps: WARNING: $*; tests/serve/test_browser.py will be skipped" >&2
    exit 0
}

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    warn "not root and no password-less sudo, cannot apt-get install chromium"
fi
command -v apt-get >/dev/null 2>&1 || warn "apt-get not found (not a Debian-like system)"

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q || warn "apt-get update failed"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver \
    || warn "apt-get install chromium chromium-driver failed"

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "browser-deps: installed $(chromium --version 2>/dev/null || echo chromium)"
else
    warn "chromium or chromedriver still missing after apt-get install"
fi
exit 0
