#!/usr/bin/env bash
# Creates .cache/lmms-eval/venv: lmms-eval 0.7.x beside this package, for `python -m lmms_eval --model salova`.
# lmms-eval's full requirement list cannot coexist with this package (it pins av<16 against our PyAV, needs
# torchvision, which has no working CPU build here, and pulls wandb, timm, pycocoevalcap, ...), so it goes in
# with --no-deps and only what its core imports for local video tasks follows. Torch goes in first and pinned,
# as in setup.sh. Re-running is a no-op until this script, setup.py or the versions change. Prints the venv's
# python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
LMMS_EVAL_SPEC=${LMMS_EVAL_SPEC:-lmms-eval>=0.7.3,<0.8}
# What lmms-eval's CLI, evaluator, task loader and generate_until metrics import at start-up.
LMMS_EVAL_CORE=(
  "accelerate" "datasets" "evaluate" "httpx" "jsonlines" "loguru" "numpy" "pandas" "pillow" "pytablewriter"
  "pyyaml" "sacrebleu" "scikit-learn" "sqlitedict" "tenacity" "tqdm" "transformers" "zstandard" "Jinja2"
  "openpyxl" "pydantic" "packaging" "python-dotenv" "sympy" "mpmath" "dill" "tqdm-multiprocess" "numexpr"
  # Its evaluator imports filelock._api, a module filelock 4 no longer has (the run then logs the error and exits 0).
  "filelock<4"
)
venv=.cache/lmms-eval/venv
stamp=$venv/.salova-lmms-eval-installed
wanted="$(cat scripts/setup_lmms_eval.sh setup.py | sha256sum | cut -d' ' -f1) $TORCH_SPEC $LMMS_EVAL_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "$venv/bin/python"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet "$TORCH_SPEC" >&2
"$venv/bin/python" -m pip install --quiet --no-deps "$LMMS_EVAL_SPEC" >&2
"$venv/bin/python" -m pip install --quiet "${LMMS_EVAL_CORE[@]}" >&2
"$venv/bin/python" -m pip install --quiet -e . >&2
echo "$wanted" > "$stamp"
echo "$venv/bin/python"
