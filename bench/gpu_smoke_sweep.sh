#!/usr/bin/env bash
# Train several 3D smoke recipes side by side on one CUDA machine, choose one on the validation
# shots, and benchmark only that one on the held-out shots, all in one call.
#
#   OUT=/tmp/out bash bench/gpu_smoke_sweep.sh BASE_WEIGHTS RECIPE [RECIPE ...]
#
# 1. The reference shots of the first recipe, once (every recipe must use the same data spec).
# 2. All recipes train at once, each in its own process (`--budget-minutes $BUDGET_MIN` so each
#    stops with weights in time). Logs, summaries and weights go to $OUT/runs.tar.
# 3. bench/smoke_mass.py rolls BASE_WEIGHTS and every new model out to $STAB_STEPS steps on the 3
#    validation shots (seeds 1000-1002): error at t = 50/100/200 and the total density against
#    the reference ($OUT/val.json).
# 4. The choice, by a rule fixed before any result was seen: among the new models whose mean
#    validation error at t = 100 is at most 1.05x BASE_WEIGHTS' (no worse than the model they
#    would replace), the one with the smallest worst |total / reference - 1| over the three
#    shots at the last step; if none qualifies, none is chosen. Written to $OUT/choice.json.
# 5. If one was chosen and the elapsed time is under $HELDOUT_BEFORE_S, `mlvfx smoke bench` of it
#    on the held-out shots (seeds 5000+) with 3 stability shots.
#
# The environment is bench/gpu_env.sh's (carry .gpu_site). RES (default 128) is only for a tiny
# local test with tiny recipes.
set -uo pipefail
. "$(dirname "$0")/gpu_env.sh"
RES=${RES:-128}
BUDGET_MIN=${BUDGET_MIN:-5}
STAB_STEPS=${STAB_STEPS:-400}
HELDOUT_BEFORE_S=${HELDOUT_BEFORE_S:-470}
work=${WORK:-/tmp/gpu_sweep}
base=${1:?base weights}
shift
recipes=("$@")
(( ${#recipes[@]} )) || { echo "no recipes"; exit 2; }
mkdir -p "$work" "$OUT"
start=$(date +%s)
el() { echo $(( $(date +%s) - start )); }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

python3 - "${recipes[0]}" "$work/data" <<'PY'
import sys, time
from mlvfx.train.smoke import generate_data, load_smoke_recipe
t = time.monotonic()
generate_data(sys.argv[2], load_smoke_recipe(sys.argv[1]))
print(f"data ready in {time.monotonic() - t:.0f} s")
PY
echo "data exit $? at $(el) s"

names=()
pids=()
for r in "${recipes[@]}"; do
    name=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' "$r")
    names+=("$name")
    mlvfx -q train smoke3d --recipe "$r" --data "$work/data" --out "$work/runs/$name" --skip-data \
        --budget-minutes "$BUDGET_MIN" 2>"$work/$name.err" &
    pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    echo "train ${names[$i]} exit $? at $(el) s"
done
weights=()
keep=()
for name in "${names[@]}"; do
    d="$work/runs/$name"
    tail -n 3 "$work/$name.err"
    for f in log.jsonl summary.json "$name.safetensors"; do [ -f "$d/$f" ] && keep+=("$name/$f"); done
    [ -f "$d/$name.safetensors" ] && weights+=("$d/$name.safetensors")
    grep '"val"' "$d/log.jsonl" | tail -n 1
done
# One archive: the device tool brings back only a few files per call.
(( ${#keep[@]} )) && tar -cf "$OUT/runs.tar" -C "$work/runs" "${keep[@]}"
(( ${#weights[@]} )) || { echo "no weights"; exit 1; }

python3 bench/smoke_mass.py --dims 3 --res "$RES" --shots 3 --steps "$STAB_STEPS" --no-closed --as-trained \
    --threads 4 --cache "$work/refs" --json "$OUT/val.json" --weights "$base" "${weights[@]}"
echo "validation exit $? at $(el) s"

python3 - "$OUT/val.json" "$OUT/choice.json" "$base" "${weights[@]}" <<'PY'
import json, sys
from pathlib import Path
rows = json.load(open(sys.argv[1]))
base = Path(sys.argv[3]).stem
new = {Path(w).stem: w for w in sys.argv[4:]}
limit = 1.05 * next(r for r in rows if r["model"] == base)["error"]["100"]
best = None
for r in rows:
    worst = max(abs(x - 1.0) for x in r["total_end"])
    ok = r["model"] in new and r["error"]["100"] <= limit
    print(f"{r['model']}: t100 {r['error']['100']:.3f} (limit {limit:.3f}), worst |total-1| {worst:.3f}"
          f"{'' if r['model'] in new else ' (baseline)'}{'' if ok or r['model'] not in new else ' (error too high)'}")
    if ok and (best is None or worst < best[1]):
        best = (r["model"], worst)
choice = {"model": best[0] if best else None, "weights": new[best[0]] if best else None,
          "worst_drift": best[1] if best else None, "t100_limit": limit, "baseline": base}
Path(sys.argv[2]).write_text(json.dumps(choice, indent=1) + "\n")
print("chosen:", choice["model"])
PY
chosen=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["weights"] or "")' "$OUT/choice.json")
if [ -n "$chosen" ] && (( $(el) < HELDOUT_BEFORE_S )); then
    mlvfx -q smoke bench --dims 3 --res "$RES" --weights "$chosen" --shots 3 --steps 25 50 100 \
        --stability-steps "$STAB_STEPS" --stability-shots 3 --timing-steps 5 --out-json "$OUT/heldout.json"
    echo "held-out bench exit $? at $(el) s"
    bench_summary "$OUT/heldout.json"
else
    echo "no held-out bench (chosen: '${chosen}', elapsed $(el) s)"
fi
