#!/usr/bin/env bash
# The whole GPU check in one go (at most 8 minutes on one GPU; each part has its own time limit,
# and every figure is printed as a markdown row as soon as it is measured):
#   1. FP32, W4/A4 and sandwich training steps/s of resnet18 and oqa_mbv3 at 224×224, batch 64
#      and 128, with and without --amp bf16 and --compile; host reads and synchronising CUDA
#      calls per sandwich step; the share of a sandwich loop's time the GPU is busy
#      (benchmarks/gpu_steps.py). Targets: W4/A4 ≤ 1.3× and sandwich ≤ 3.5× the FP32 step,
#      GPU busy ≥ 90 %.
#   2. Subnets/s of the supernet oracle on resnet18 at 224×224 from a synthetic ImageFolder the
#      suite writes to local disk (benchmarks/gpu_oracle.py; CALIB_IMAGES and VAL_IMAGES, 5,000
#      and 10,000 by default).
#   3. A train step of 2 processes on one GPU under torchrun (`eqsearch train --device cuda`,
#      one epoch of a small synthetic folder).
#
# Run from anywhere: `bash benchmarks/gpu_suite.sh` (PYTHON=... picks the interpreter; WORK=...
# where the folders go, /tmp/eqsearch-gpu-suite by default). `bash benchmarks/gpu_suite.sh
# --cpu-smoke` runs the same parts on the CPU at tiny sizes, with the device path forced
# (EQSEARCH_DEVICE_PATH=1: the code a GPU runs), in a few minutes: try it before a GPU run
# (STEPS_SECONDS, ORACLE_SECONDS and TORCHRUN_SECONDS raise the parts' limits on a busy CPU).
#
# Requirements: what the GPU machine has (Python 3.12, torch with CUDA, torchvision, numba,
# numpy, pandas, rich, scipy, Pillow). eqsearch's train, the oracle and these scripts import
# none of pymoo, deap, optuna, xgboost, moocore or mlxtend, so no wheel needs to be brought.
# Were one needed, it would be fetched on a machine with a registry with
# `pip download --python-version 3.12 --only-binary=:all: --no-deps -d wheels NAME`, copied
# along, and installed there with `pip install --no-index --find-links wheels NAME`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
WORK=${WORK:-/tmp/eqsearch-gpu-suite}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SMOKE=0
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    SMOKE=1
fi
if [[ $SMOKE == 1 ]]; then
    export EQSEARCH_DEVICE_PATH=1
    DEVICE=cpu
    STEPS=(--device cpu --image-size 32 --batches 2 --warmup 0 --rounds 1 --threads 1 --compile-backend aot_eager)
    ORACLE=(--device cpu --image-size 32 --calib-images "${CALIB_IMAGES:-40}" --val-images "${VAL_IMAGES:-60}" --subnets 1 --batch 20 --workers 2)
    TRAIN_SIZE=32
    WORK="$WORK-smoke"
    "$PYTHON" -c "import torch; print('# CPU smoke run, device path forced · torch', torch.__version__)"
else
    DEVICE=cuda
    STEPS=(--device cuda)
    ORACLE=(--device cuda --calib-images "${CALIB_IMAGES:-5000}" --val-images "${VAL_IMAGES:-10000}")
    TRAIN_SIZE=224
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('#', torch.cuda.get_device_name(0), '· torch', torch.__version__)"
fi
status=0
echo "| figure | value | detail |"
echo "|---|---|---|"
timeout "${STEPS_SECONDS:-300}" "$PYTHON" benchmarks/gpu_steps.py "${STEPS[@]}" || { echo "| gpu_steps.py | failed or timed out (exit $?) | |"; status=1; }
timeout "${ORACLE_SECONDS:-120}" "$PYTHON" benchmarks/gpu_oracle.py "${ORACLE[@]}" --root "$WORK/oracle" || { echo "| gpu_oracle.py | failed or timed out (exit $?) | |"; status=1; }
# the torchrun step: 2 ranks on one device, one epoch of 64 training images
"$PYTHON" benchmarks/gpu_oracle.py --folder-only --root "$WORK/train" --calib-images 80 --val-images 20 >/dev/null
rm -rf "$WORK/run"
started=$(date +%s)
if timeout "${TORCHRUN_SECONDS:-90}" "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 -m eqsearch train \
    --model resnet18 --dataset imagefolder --data-root "$WORK/train" --image-size "$TRAIN_SIZE" \
    --epochs 1 --batch-size 16 --holdout 16 --calib-images 16 --quant-init-images 16 \
    --device "$DEVICE" --no-progress --out "$WORK/run" >"$WORK/torchrun.log" 2>&1; then
    echo "| torchrun, 2 processes on one device | ok | one epoch in $(( $(date +%s) - started )) s |"
else
    echo "| torchrun, 2 processes on one device | failed (exit $?) | $(grep -m1 -iE 'error|nccl' "$WORK/torchrun.log" | cut -c1-160) |"
    status=1
fi
exit $status
