#!/usr/bin/env bash
# Train recipe smoke3d_v4 (128^3 output) on a CUDA machine and benchmark it, all in one call.
#
# Run from the repository root on the GPU machine. Nothing is installed there: the checkout's
# model_zoo/ is the zoo mirror, and .gpu_site (carried) holds platformdirs, which that image
# lacks. Results go to $OUT: the run's log (copied while it trains), summary and weights, and
# the benchmark of the new model at its resolution and, if time is left, at 64^3.
#   OUT=/tmp/out bash bench/gpu_smoke128.sh
# RECIPE, RES and RES2 override the recipe and the two benchmark resolutions (a tiny test run).
set -uo pipefail
. "$(dirname "$0")/gpu_env.sh"
RECIPE=${RECIPE:-model_zoo/recipes/smoke3d_v4.json}
RES=${RES:-128}
RES2=${RES2:-64}
name=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' "$RECIPE")
work=${WORK:-/tmp/gpu_smoke}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
start=$(date +%s)
mlvfx -q train smoke3d --recipe "$RECIPE" --data "$work/data" --out "$work/run" 2>"$work.train.err" &
pid=$!
while kill -0 $pid 2>/dev/null; do
    sleep 10
    cp "$work/run/log.jsonl" "$OUT"/ 2>/dev/null
done
wait $pid
echo "train exit $? after $(( $(date +%s) - start )) s"
tail -n 20 "$work.train.err"
cp "$work/run/log.jsonl" "$work/run/summary.json" "$OUT"/ 2>/dev/null
w="$work/run/$name.safetensors"
cp "$w" "$OUT"/ || { echo "no weights"; exit 1; }
mlvfx -q smoke bench --dims 3 --res "$RES" --weights "$w" --shots 4 --steps 25 50 100 \
    --stability-steps 400 --stability-shots 1 --timing-steps 10 --out-json "$OUT/bench${RES}.json"
echo "bench $RES exit $? after $(( $(date +%s) - start )) s"
bench_summary "$OUT/bench${RES}.json"
if (( $(date +%s) - start < ${BENCH2_BEFORE_S:-420} )); then
    mlvfx -q smoke bench --dims 3 --res "$RES2" --weights "$w" --shots 3 --steps 25 50 100 \
        --stability-steps 400 --stability-shots 1 --timing-steps 10 --out-json "$OUT/bench${RES2}.json"
    echo "bench $RES2 exit $? after $(( $(date +%s) - start )) s"
    bench_summary "$OUT/bench${RES2}.json"
fi
