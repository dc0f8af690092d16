#!/usr/bin/env bash
# Every GPU figure of issues 15 and 16 in one table (well under 6 minutes on one GPU):
# subnets per second of SupernetOracle on resnet18 at 224×224, and sandwich training steps per
# second; FP32, W4/A4 and sandwich training steps per second of the joint oqa_mbv3 at 224×224.
# Run from anywhere: `bash benchmarks/gpu_suite.sh` (PYTHON=... to pick the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('#', torch.cuda.get_device_name(0), '· torch', torch.__version__)"
echo "| figure | value | detail |"
echo "|---|---|---|"
timeout 150 "$PYTHON" benchmarks/oracle_speed.py --device cuda --cases resnet18 --rounds 3 --row
timeout 75 "$PYTHON" benchmarks/train_step.py --device cuda --model resnet18 --image-size 224 --batch 64 --rounds 10 --row
timeout 150 "$PYTHON" benchmarks/joint_supernet.py --device cuda --image-size 224 --batch 64 --rounds 5 --row
