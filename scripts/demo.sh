#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the demo: the most complete flow that exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nni-capsnas demo "$@"
