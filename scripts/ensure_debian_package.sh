#!/usr/bin/env bash
# ensure_debian_package.sh COMMAND PACKAGE [TAG]: install Debian's PACKAGE when COMMAND is missing.
# Idempotent and non-interactive; needs root (or sudo) to install. The scripts that make sure
# the tests' programs exist (ensure_browser.sh, ensure_redis.sh) call it.
set -euo pipefail

command_name=$1
package=$2
tag=${3:-ensure_${command_name%%-*}}  # how its lines start

if command -v "$command_name" >/dev/null 2>&1; then
    echo "$tag: $command_name already installed: $(command -v "$command_name")"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "$tag: $command_name is missing and this user cannot install it (not root, no sudo)" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tag: $command_name is missing and apt-get is not available: install $package by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "$tag: installing Debian's $package package (apt-get update; apt-get install $package)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$package"
echo "$tag: installed $(command -v "$command_name")"
