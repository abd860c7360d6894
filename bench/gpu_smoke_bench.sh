#!/usr/bin/env bash
# Held-out benchmark of several 3D smoke surrogates on a CUDA machine, in one call (no training).
#
# For each NAME=WEIGHTS argument: `mlvfx smoke bench` at $RES with $SHOTS error shots and
# $STAB stability shots of 400 steps (seeds from 5000). Results go to $OUT/bench_<NAME>.json and
# the tables to stdout. Same environment notes as bench/gpu_smoke128.sh.
#   OUT=/tmp/out RES=128 bash bench/gpu_smoke_bench.sh v5=runs/smoke3d_v5/smoke3d_v5.safetensors ...
set -uo pipefail
export PYTHONPATH="$PWD/core:$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}" MLVFX_CACHE_DIR=/tmp/mc
export PYTHONUNBUFFERED=1 MLVFX_OFFLINE=1
OUT=${OUT:?set OUT}
RES=${RES:-128}
SHOTS=${SHOTS:-4}
STAB=${STAB:-3}
mlvfx() { python3 -c 'import sys; from mlvfx.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
start=$(date +%s)
for arg in "$@"; do
    name=${arg%%=*}
    weights=${arg#*=}
    mlvfx -q smoke bench --dims 3 --res "$RES" --weights "$weights" --shots "$SHOTS" --steps 25 50 100 \
        --stability-steps 400 --stability-shots "$STAB" --timing-steps 5 --out-json "$OUT/bench_$name.json"
    echo "== $name ($weights): exit $? after $(( $(date +%s) - start )) s"
    python3 - "$OUT/bench_$name.json" <<'PY'
import json, sys
from mlvfx.fluids.bench import format_table
r = json.load(open(sys.argv[1]))
if r["spec"]["shots"]:
    print(format_table(r))
for s in r["stability"]:
    print(f"stability seed {s['seed']} {s['scenario']}: total {s['total_density_ratio']:.3f} "
          f"(coarse {s['coarse_total_density_ratio']:.3f}), last quarter {s['last_quarter_ratio']:.3f} "
          f"(coarse {s['coarse_last_quarter_ratio']:.3f}), finite {s['finite']}")
PY
done
