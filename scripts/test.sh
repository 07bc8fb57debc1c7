#!/usr/bin/env bash
# Set up, then run the test suite (what .ci/run runs), in three runs:
#   1. the fast tier on what a fresh install gets (the newest releases setup.py allows);
#   2. the integration tier (`-m integration`: the demo, several processes, the lmms-eval venv, a browser, a server);
#   3. the fast tier again in .venv-lowest, with every requirement pinned to the lower bound setup.py states.
# With arguments, runs pytest once in .venv with them instead (e.g. `bash scripts/test.sh tests/test_modeling.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest -q "$@"
fi
echo "== fast tier, newest releases"
.venv/bin/pytest -q tests -m "not integration"
echo "== integration tier, newest releases"
.venv/bin/pytest -q tests -m integration
echo "== fast tier, lowest versions setup.py allows"
mkdir -p .cache
python3 scripts/lowest_versions.py > .cache/lowest-versions.txt
VENV=.venv-lowest CONSTRAINTS=.cache/lowest-versions.txt bash scripts/setup.sh
.venv-lowest/bin/python -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(torch|transformers|accelerate|datasets|trl|huggingface.hub|av|scenedetect|opencv-python|numpy)==' \
  | tr '\n' ' '
echo
exec .venv-lowest/bin/pytest -q tests -m "not integration"
