#!/usr/bin/env bash
# The package's main job on its embedded default (see README): set up, then `salova demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/salova demo "$@"
