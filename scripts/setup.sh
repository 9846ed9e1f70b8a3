#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install
# nni-capsnas with its extras. Idempotent: re-running with an unchanged
# pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${NNI_CAPSNAS_VENV:-.venv}"
EXTRAS="${NNI_CAPSNAS_EXTRAS:-dev,vision}"
STAMP="$VENV/.nni-capsnas-installed"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRAS"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24" 
echo "setup: installing nni-capsnas[$EXTRAS] (first run downloads PyTorch; a few minutes)"
"$VENV/bin/python" -m pip install --quiet --progress-bar off -e ".[$EXTRAS]"
# Test-only: torchattacks 3.5.1 pins requests~=2.25.1, which would downgrade what NNI needs;
# without its dependencies it imports fine beside a current requests (torch, numpy, scipy are there).
case ",$EXTRAS," in
    *,dev,*)
        "$VENV/bin/python" -m pip install --quiet --no-deps "torchattacks==3.5.1"
        "$VENV/bin/python" -c "import torchattacks" \
            || { echo "setup: torchattacks does not import" >&2; exit 1; } ;;
esac
# NNI 3.0 ships no wheel metadata for this; nnictl imports pkg_resources.
"$VENV/bin/python" -c "import pkg_resources, nni, torch, onnxruntime, pymoo" 2>/dev/null \
    || { echo "setup: installed packages do not import; see the pip output above" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import torch, nni; print("torch", torch.__version__, "nni", nni.__version__)'))"
