#!/usr/bin/env bash
# Creates the project-local Python venv `.venv` with torch==2.13.0 (the libtorch that tch 0.26
# builds against), diffusers==0.35.2 (the reference implementation of the multistep solvers,
# for tools/golden_solvers), and onnxruntime==1.32.0 with onnx==1.23.2 (`bench-cpu --ort`:
# the ONNX export and ONNX Runtime beside the core). Idempotent: does nothing when the venv
# already has those versions.
# Afterwards `source tools/env.sh` sets LIBTORCH_USE_PYTORCH=1 and puts the venv on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

want="2.13.0"
venv=".venv"

have_version() {
    "$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null | cut -d+ -f1
}

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    if ! python3 -m venv "$venv"; then
        echo "setup: 'python3 -m venv' failed; on Debian/Ubuntu install python3-venv" >&2
        exit 1
    fi
fi

current="$(have_version || true)"
if [ "$current" = "$want" ]; then
    echo "setup: torch $want already in $venv"
else
    echo "setup: installing torch==$want into $venv (found: ${current:-none})"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "torch==$want"
    current="$(have_version || true)"
    if [ "$current" != "$want" ]; then
        echo "setup: torch $want did not install (found: ${current:-none})" >&2
        exit 1
    fi
fi

diffusers_want="0.35.2"
if "$venv/bin/python" -c "import sys, diffusers; sys.exit(diffusers.__version__ != '$diffusers_want')" 2>/dev/null; then
    echo "setup: diffusers $diffusers_want already in $venv"
else
    echo "setup: installing diffusers==$diffusers_want into $venv"
    "$venv/bin/python" -m pip install --quiet "diffusers==$diffusers_want"
fi

ort_want="1.32.0"
onnx_want="1.23.2"
if "$venv/bin/python" -c "import sys, onnxruntime, onnx; sys.exit(onnxruntime.__version__ != '$ort_want' or onnx.__version__ != '$onnx_want')" 2>/dev/null; then
    echo "setup: onnxruntime $ort_want and onnx $onnx_want already in $venv"
else
    echo "setup: installing onnxruntime==$ort_want and onnx==$onnx_want into $venv"
    "$venv/bin/python" -m pip install --quiet "onnxruntime==$ort_want" "onnx==$onnx_want"
fi

cat <<MSG
setup: done. To build by hand:
  source tools/env.sh    # or:
  export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$venv/bin:\$PATH"
MSG
