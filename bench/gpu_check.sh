#!/usr/bin/env bash
# The device check of issue 14, in one run (about 9 minutes on an H100/H200): install the carried wheels, run the
# gpu-marked tests that need no Ray, then the real score path on the GPU. From the repo root, carrying .whl:
#   bash bench/gpu_check.sh        (results: $OUT/, else bench/results/)
# The wheels (Python 3.12, manylinux x86_64) are what the device image lacks: pydantic (+ core, annotated_types,
# typing_inspection, typing_extensions), open_clip_torch, ftfy, wcwidth. See the README of the device tool.
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT" bench/results
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, torchvision, open_clip, pydantic; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'open_clip', open_clip.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/device.txt"
nproc | sed 's/^/cpus /' | tee -a "$OUT/device.txt"
if [ "${1:-}" = "captions" ]; then  # issue 27's rows alone, in one short device call: bash bench/gpu_check.sh captions
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/captioning 2>&1 | tee "$OUT/caption_tests.log"
  timeout 400 python3 bench/captioning.py --device cuda --batch-sizes 1 16 64 --images 64 --max-new-tokens 64 \
    --out "$OUT/captioning.json" 2>&1 | tee "$OUT/captioning.log"
  exit 0
fi
timeout 180 python3 -m pytest -q -p no:cacheprovider -m gpu tests/filters/test_gpu_decode.py \
  tests/filters/test_clip_scorer.py tests/filters/test_fastpath.py 2>&1 | tee "$OUT/gpu_tests.log"
timeout 20 python3 support/shm_feed.py 2>&1 | tee "$OUT/transport.log"
# the end-to-end rows (bf16 eager; pipe and shared-memory hand-over, resize on the GPU, nvJPEG), the model
# alone under bf16/fp8 x eager/compiled with score changes, the kernels of a ViT-L/14 batch; every row is
# saved as it lands, so a run cut short keeps what it measured
rm -f bench/results/score_path_gpu.json
timeout 370 python3 bench/score_path.py --gpu --seconds 4 --sweep --profile 2>&1 | tee "$OUT/score_path_gpu.log"
cp bench/results/score_path_gpu.json "$OUT/" 2>/dev/null || echo "no score_path_gpu.json: see score_path_gpu.log"
