#!/usr/bin/env bash
# Make sure Redis is installed for the team profile's Celery broker (scripts/services.sh) and
# its tests (tests/e2e/test_services.py): Debian's `redis-server` package, which also brings
# `redis-cli`. Idempotent and non-interactive; installs only when `redis-server` is missing.
# Needs root (or sudo) to install. The package's own system service is not used: services.sh
# runs its own server on 127.0.0.1 with its state under the services folder.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "ensure_redis: redis-server already installed: $(command -v redis-server)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "ensure_redis: redis-server is missing and this user cannot install it (not root, no sudo)" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_redis: redis-server is missing and apt-get is not available: install redis-server by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure_redis: installing Debian's redis-server package (apt-get update; apt-get install redis-server)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server
echo "ensure_redis: installed $(command -v redis-server)"
