#!/usr/bin/env bash
# Run the whole test matrix (tox.ini) on a fresh machine with Python 3.11.
# Installs Debian's chromium and chromium-driver when missing (needs root) for the browser tests.
# Usage: bash scripts/test.sh [tox env list, default: all]   e.g. bash scripts/test.sh core,lint
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium/chromedriver missing: run as root or 'apt-get install chromium chromium-driver'" >&2
    fi
fi

python3 -m venv .venv-tox
.venv-tox/bin/pip install -q -c constraints.txt tox
exec .venv-tox/bin/tox run-parallel -p 2 -e "${1:-lint,core,nojit,full,browser,train,integrations}"
