#!/usr/bin/env bash
# The GPU checks of the throughput work, as one script for a GPU machine (run from the repository root):
# the CUDA tests, then bench/throughput.py on pggan-iagan-1024 (16 images, 2 for the naive loop), each under a
# time limit. Results land in $OUT (default gpu-check/): gpu.txt, tests.txt, bench.json, bench.txt. CONFIGS picks the
# engine configs (default fp32,bf16,bf16+compile; see bench/throughput.py).
# Uses the machine's own python3 with torch; the packages iagan needs beyond torch are numpy, scipy, safetensors,
# tqdm and pytest. Sizes keep the whole script under about 6 minutes on an H200 (torch.compile included).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 IAGAN_QUIET=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import iagan.engine.runner, iagan.reconstruct.ia, iagan.operators, tests.test_pggan" || { echo "iagan does not import"; exit 1; }

timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "not compiled" 2>&1 | tail -25 | tee "$OUT/tests.txt"
timeout 300 $PY bench/throughput.py --generator pggan-iagan-1024 --images 16 --naive-images 2 --csgm-steps 20 \
  --ia-steps 10 --rounds 3 --configs "${CONFIGS:-fp32,bf16,bf16+compile}" --profile --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
timeout 80 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "compiled" 2>&1 | tail -25 | tee -a "$OUT/tests.txt"
