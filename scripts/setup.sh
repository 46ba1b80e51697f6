#!/usr/bin/env bash
# Create .venv and install LANTERN with the tested versions from constraints.txt.
# Usage: scripts/setup.sh [--dev]   (--dev adds the test and lint tools, and Debian's chromium
# for the playground's browser test where it can)
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

# The browser test drives Debian's chromium through Playwright (Playwright's own browser download
# cannot work offline). Install it where we can; never fail the setup because of it.
if [ "$target" = ".[dev]" ]; then
    if [ -x /usr/bin/chromium ]; then
        echo "setup: chromium already at /usr/bin/chromium"
    elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian's chromium for the browser test"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; then
            echo "setup: skipped chromium (apt-get failed); the browser test will be skipped"
        fi
    else
        echo "setup: skipped chromium (needs root and apt-get); the browser test will be skipped"
    fi
fi
