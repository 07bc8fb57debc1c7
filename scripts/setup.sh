#!/usr/bin/env bash
# Creates .venv and installs the package with its test extras. Torch goes in first and pinned: a bare
# `torch` requirement on a machine without torch pulls GBs of CUDA wheels. Re-running is a no-op until
# setup.py changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# The web app's browser test drives Debian's chromium (never a browser download); as root, install it when absent.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
stamp=.venv/.salova-installed
wanted="$(sha256sum setup.py | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$wanted" > "$stamp"
