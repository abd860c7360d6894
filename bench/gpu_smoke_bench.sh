#!/usr/bin/env bash
# Held-out benchmark of several 3D smoke surrogates on a CUDA machine, in one call (no training).
#
# For each NAME=WEIGHTS argument: `mlvfx smoke bench` at $RES with $SHOTS error shots and
# $STAB stability shots of 400 steps (seeds from 5000). Results go to $OUT/bench_<NAME>.json and
# the tables to stdout. The environment is bench/gpu_env.sh's (carry .gpu_site).
#   OUT=/tmp/out RES=128 bash bench/gpu_smoke_bench.sh v5=runs/smoke3d_v5/smoke3d_v5.safetensors ...
set -uo pipefail
. "$(dirname "$0")/gpu_env.sh"
RES=${RES:-128}
SHOTS=${SHOTS:-4}
STAB=${STAB:-3}
start=$(date +%s)
for arg in "$@"; do
    name=${arg%%=*}
    weights=${arg#*=}
    mlvfx -q smoke bench --dims 3 --res "$RES" --weights "$weights" --shots "$SHOTS" --steps 25 50 100 \
        --stability-steps 400 --stability-shots "$STAB" --timing-steps 5 --out-json "$OUT/bench_$name.json"
    echo "== $name ($weights): exit $? after $(( $(date +%s) - start )) s"
    bench_summary "$OUT/bench_$name.json"
done
