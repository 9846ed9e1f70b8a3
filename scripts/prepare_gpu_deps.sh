#!/usr/bin/env bash
# Prepare the folder of packages that scripts/gpu_check.sh puts on PYTHONPATH on a GPU machine
# whose image has torch, torchvision, lightning, onnx, onnxruntime, onnxscript, pandas,
# scikit-learn and pytest but not nni, pymoo or pytorch_lightning, and reaches no package
# registry. Run it here (with PyPI), copy the folder to the GPU machine beside the checkout.
#
#   scripts/prepare_gpu_deps.sh [FOLDER] [PYTHON_VERSION]
#
# FOLDER          default gpu-deps (ignored by git; scripts/gpu_check.sh looks there by default)
# PYTHON_VERSION  the GPU image's Python, e.g. 3.12 (default: this python's); the few compiled
#                 packages (psutil, cffi, moocore, pymoo's speed-ups) are fetched for it
#
# The packages are installed without their dependencies, at the versions this project is tested
# with. NNI's node.js manager and web UI (nni_node, 190 MB unpacked: why NNI's wheel is 61 MB)
# are left out, but for the package marker that `import nni_node` needs: the GPU checks run
# trials and one-shot searches in-process and never start NNI's manager. About 45 MB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FOLDER=${1:-gpu-deps}
VERSION=${2:-$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}

PACKAGES=(
    nni==3.0 pytorch-lightning==2.6.6 pymoo==0.6.2
    # what importing nni, pymoo and pytorch_lightning needs beyond the GPU image
    moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9 autograd==1.9.1 cma==4.5.0
    alive-progress==3.3.0 about-time==4.2.1 graphemeu==0.7.2 deprecated==1.3.1 wrapt==2.5.2
    colorama==0.4.6 json-tricks==3.17.3 typeguard==4.1.2 psutil==7.2.2 requests==2.34.2 urllib3==2.8.0
    idna==3.21 certifi==2026.10.19.post1 charset-normalizer==3.5.3 schema==0.7.8 websockets==17.4
    prettytable==3.19.0 wcwidth==0.9.5 astor==0.8.1 nvidia-ml-py==13.615.71 pyyaml==6.0.4
    pytest-timeout==2.4.0
)

rm -rf "$FOLDER"
"$PYTHON" -m pip install --quiet --no-deps --no-compile --target "$FOLDER" --python-version "$VERSION" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --only-binary=:all: "${PACKAGES[@]}"
# NNI's node.js runtime and web UI: not needed to train, attack or estimate in-process
find "$FOLDER/nni_node" -mindepth 1 -maxdepth 1 ! -name __init__.py -exec rm -rf {} +
rm -rf "$FOLDER/bin"
echo "$(du -sh "$FOLDER" | cut -f1) in $FOLDER for Python $VERSION; on the GPU machine: scripts/gpu_check.sh"
