#!/usr/bin/env bash
# Installs tensorflow-model-optimization (tfmot) for `tla-edge convert --qat`.
#
# tfmot 0.8.1 pins absl-py~=1.2 while MediaPipe needs absl-py~=2.3; pip cannot
# satisfy both, and tfmot works with absl-py 2. So its own dependencies are
# installed first, then tfmot itself with --no-deps, after everything else.
#
# Usage: bash scripts/install_qat.sh            (uses ./.venv/bin/python if present)
#        PYTHON=/path/to/python bash scripts/install_qat.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

echo "install_qat: using $PYTHON ($("$PYTHON" --version 2>&1))"
# tfmot's dependencies except absl-py (tf-keras comes with the train extra).
"$PYTHON" -m pip install -q "dm-tree" "attrs" "six" "scipy" "mock" "tf-keras"
"$PYTHON" -m pip install -q --no-deps "tensorflow-model-optimization==0.8.1"

"$PYTHON" - <<'PY'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow_model_optimization as tfmot
print(f"install_qat: tensorflow-model-optimization {tfmot.__version__} imports; tla-edge convert --qat is ready")
PY
