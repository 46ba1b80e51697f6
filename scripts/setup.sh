#!/usr/bin/env bash
# Create .venv and install LANTERN with the tested versions from constraints.txt.
# Usage: scripts/setup.sh [--dev]   (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
target="."
if [ "${1:-}" = "--dev" ]; then
    target=".[dev]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$target"
