#!/usr/bin/env bash
# One-time setup of the Python side of genlab: the reference-fixture scripts
# (scripts/reference), the PyTorch/SciPy/POT benchmarks (scripts/bench) and the figure
# helper (scripts/figures). The Rust crates and their tests need none of it.
#
#   bash scripts/setup-python.sh           # creates <repo>/.venv, installs scripts/requirements.txt
#   .venv/bin/python scripts/reference/metrics_fixtures.py
#
# Environment: PYTHON (the interpreter that makes the venv; default python3, tested with 3.11).
# Re-running it is safe: an existing .venv is reused and brought to the pinned versions.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REPO/scripts/requirements.txt"
"$VENV/bin/python" -m pip check --disable-pip-version-check

# Every module the scripts import, so a broken install fails here and not half-way through
# writing a fixture.
"$VENV/bin/python" - <<'PY'
import importlib
mods = ["numpy", "scipy", "scipy.linalg", "scipy.stats", "scipy.spatial.distance", "sklearn",
        "sklearn.neighbors", "threadpoolctl", "ot", "torch", "torchvision", "pytorch_fid.inception",
        "torchmetrics", "torchmetrics.image.kid", "diffusers", "PIL.Image", "open_clip", "ftfy",
        "regex", "tokenizers", "transformers", "sentence_transformers"]
for m in mods:
    mod = importlib.import_module(m)
    print(f"  {m:24s} {getattr(mod, '__version__', '')}")
PY
echo "ready: run the scripts as .venv/bin/python scripts/..."
