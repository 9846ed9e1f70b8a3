#!/usr/bin/env bash
# The GPU checks of nni-capsnas, in at most 5 minutes: the CUDA tests (pytest -m cuda), then the
# GPU benchmark (benchmarks/capsnet_speed.py --device cuda). Paste its output where GPU results
# are asked for. On a machine without CUDA it runs too: the CUDA tests skip and the benchmark
# says there is no GPU.
#
#   scripts/gpu_check.sh
#
# Needs a Python with torch, torchvision, onnx, onnxruntime, onnxscript, pandas, scikit-learn and
# pytest (PYTHON, default python3). nni, pymoo and pytorch_lightning come from the environment
# or, on GPU images without them and without a package registry, from a folder prepared
# elsewhere with scripts/prepare_gpu_deps.sh (GPU_DEPS, default gpu-deps; copy it beside the
# checkout):
#
#   scripts/prepare_gpu_deps.sh gpu-deps 3.12    # on a machine with PyPI, for the image's Python
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEPS=${GPU_DEPS:-gpu-deps}
TEST_SECONDS=${TEST_SECONDS:-150}
BENCHMARK_SECONDS=${BENCHMARK_SECONDS:-130}

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$DEPS" ]; then
    export PYTHONPATH="$PYTHONPATH:$(cd "$DEPS" && pwd)"  # after the environment's own packages
fi
export PYTHONDONTWRITEBYTECODE=1

echo "== environment"
if ! $PYTHON - <<'EOF'
import importlib, platform, sys
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        print(f"cuda:{index}: {props.name}, {props.total_memory / 2 ** 30:.0f} GiB")
else:
    print("no CUDA GPU: the CUDA tests skip and the benchmark has nothing to measure")
missing = []
for name in ("nni", "pymoo", "pytorch_lightning", "onnx", "onnxruntime", "onnxscript", "pandas", "sklearn", "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '')} from {module.__file__.rsplit('/', 2)[0]}")
    except ImportError as error:
        missing.append(f"{name} ({error})")
if missing:
    sys.exit("missing: " + ", ".join(missing) + "; prepare the folder with scripts/prepare_gpu_deps.sh")
EOF
then
    echo "gpu_check: the environment lacks packages (see above)" >&2
    exit 2
fi

echo "== CUDA tests (pytest -m cuda)"
mapfile -t FILES < <(grep -rlE "pytest\.mark\.cuda|\bDEVICES\b" tests --include='test_*.py' | sort)
timeout "$TEST_SECONDS" $PYTHON -m pytest -q -ra -p no:cacheprovider -m cuda "${FILES[@]}"
tests=$?

echo "== GPU benchmark (benchmarks/capsnet_speed.py --device cuda)"
timeout "$BENCHMARK_SECONDS" $PYTHON benchmarks/capsnet_speed.py --device cuda
benchmark=$?

echo "== summary: CUDA tests exit status $tests, benchmark exit status $benchmark (124: ran out of time)"
[ "$tests" -eq 0 ] && [ "$benchmark" -eq 0 ]
