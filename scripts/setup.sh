#!/usr/bin/env bash
# Creates a virtual environment (.venv, or $VENV) and installs the package with its test extras. Torch goes in
# first and pinned: a bare `torch` requirement on a machine without torch pulls GBs of CUDA wheels. With
# CONSTRAINTS=FILE the install follows that pip constraints file (scripts/test.sh uses it for the lowest versions
# setup.py allows). Re-running is a no-op until setup.py or those settings change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VENV=${VENV:-.venv}
CONSTRAINTS=${CONSTRAINTS:-}
# The web app's browser test drives Debian's chromium (never a browser download); as root, install it when absent.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
constraint_args=()
if [ -n "$CONSTRAINTS" ]; then
  constraint_args=(--constraint "$CONSTRAINTS")
fi
stamp=$VENV/.salova-installed
wanted="$(cat setup.py ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet "${constraint_args[@]}" -e ".[dev]"
echo "$wanted" > "$stamp"
