#!/usr/bin/env bash
# The GPU suite on a bare GPU machine with no registry: install the carried wheels, then run every section.
#
#   bash benchmarks/gpu_suite.sh            # results (json, md, log) under $OUT, else under runs/gpu_suite/
#   bash benchmarks/gpu_suite.sh --sections unet,train,sample --train-batch 1,4,8 --train-uncheckpointed --sdpa \
#       --channels-last --sample-bf16-unet --compile regional --budget-s 300   # issue 19's optimisation run, ~6 min
# Arguments go to benchmarks/gpu_suite.py (its docstring lists the sections and variant flags).
#
# The machine's image has torch, torchvision, lightning, torchmetrics, timm, transformers, onnxruntime, opencv,
# huggingface_hub and safetensors; the rest comes from .whl/ (Python 3.12, manylinux x86_64, one version each):
#   omegaconf diffusers importlib_metadata lazy-importer open_clip_torch ftfy wcwidth rapidocr_onnxruntime
#   pyclipper shapely
# fetched here with `pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
# --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl NAME`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_suite}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
python3 benchmarks/gpu_suite.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_suite.log"
