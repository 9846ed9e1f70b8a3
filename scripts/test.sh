#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k routing
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec .venv/bin/python -m pytest -q "$@"
