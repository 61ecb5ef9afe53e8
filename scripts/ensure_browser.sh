#!/usr/bin/env bash
# Make sure a headless Chromium is installed for the viewer's browser tests and benchmark
# (tests/viewer_browser, benchmarks/bench_viewer.py): Debian's `chromium` package, driven by
# Playwright (pip package `playwright`, a dev dependency) through its executable path.
# Idempotent and non-interactive; installs only when `chromium` is missing. Needs root (or
# sudo) to install. Never downloads Playwright's own browser builds.
set -euo pipefail

exec bash "$(dirname "$0")/ensure_debian_package.sh" chromium chromium ensure_browser
