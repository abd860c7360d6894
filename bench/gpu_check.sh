#!/usr/bin/env bash
# One device call on a CUDA machine: the test suite with CUDA picked as on a user's GPU machine, then
# texture synthesis on CUDA against the same machine's CPU (bench/gpu_texture.py). Run from the
# repository root with .gpu_site carried (platformdirs, which that image lacks); results in $OUT.
#   OUT=/tmp/out bash bench/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD/core:$PWD/bench:$PWD/.gpu_site" MLVFX_CACHE_DIR=/tmp/mc PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT}
nvidia-smi -L
python3 -c "import torch, numpy, cv2; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cv2', cv2.__version__)"
start=$(date +%s)
timeout "${TEST_S:-270}" python3 -m pytest -q -n 12 -p no:cacheprovider -rf tests 2>&1 | tee "$OUT/pytest.log" | tail -60
echo "== tests: $(( $(date +%s) - start )) s"
timeout "${TEXTURE_S:-170}" python3 bench/gpu_texture.py --sizes 1024 2048 --cuda-only 4096 --json "$OUT/gpu_texture.json"
echo "== all: $(( $(date +%s) - start )) s"
