#!/usr/bin/env bash
# Make sure a headless Chromium is installed for the viewer's browser tests and benchmark
# (tests/viewer_browser, benchmarks/bench_viewer.py): Debian's `chromium` package, driven by
# Playwright (pip package `playwright`, a dev dependency) through its executable path.
# Idempotent and non-interactive; installs only when `chromium` is missing. Needs root (or
# sudo) to install. Never downloads Playwright's own browser builds.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "ensure_browser: chromium already installed: $(command -v chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "ensure_browser: chromium is missing and this user cannot install it (not root, no sudo)" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: chromium is missing and apt-get is not available: install chromium by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure_browser: installing Debian's chromium package (apt-get update; apt-get install chromium)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
echo "ensure_browser: installed $(command -v chromium)"
