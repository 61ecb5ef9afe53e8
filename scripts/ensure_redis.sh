#!/usr/bin/env bash
# Make sure Redis is installed for the team profile's Celery broker (scripts/services.sh) and
# its tests (tests/e2e/test_services.py): Debian's `redis-server` package, which also brings
# `redis-cli`. Idempotent and non-interactive; installs only when `redis-server` is missing.
# Needs root (or sudo) to install. The package's own system service is not used: services.sh
# runs its own server on 127.0.0.1 with its state under the services folder.
set -euo pipefail

exec bash "$(dirname "$0")/ensure_debian_package.sh" redis-server redis-server
