#!/bin/bash
# Whole-command wall times of an earlier commit's core against this checkout's, interleaved in one
# run (same venv, same inputs): material (learned) on the sample photo, a 64^3 24-frame smoke shot
# with OpenVDB, and texture tile to EXR. Usage: bash bench/commit_overhead.sh OLD_COMMIT [ROUNDS]
set -euo pipefail
old_commit=${1:?usage: bench/commit_overhead.sh OLD_COMMIT [ROUNDS]}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/old" && git -C "$work/old" checkout -q "$old_commit"
export MLVFX_ZOO_MIRRORS="$root/model_zoo" MLVFX_OFFLINE=1 MLVFX_CACHE_DIR="$work/cache" XDG_CACHE_HOME="$work/xdg"
photo="$root/core/mlvfx/samples/sample_photo.png"
py="$root/.venv/bin/python"
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
for round in $(seq "$rounds"); do
  for which in old new; do
    core="$root/core"; [ "$which" = old ] && core="$work/old/core"
    out="$work/out_$which"; rm -rf "$out"; mkdir -p "$out"
    m=$(PYTHONPATH=$core seconds "$py" -m mlvfx material "$photo" -o "$out/m" -q)
    s=$(PYTHONPATH=$core seconds "$py" -m mlvfx smoke run --res 64 --frames 24 -o "$out/s" -q)
    t=$(PYTHONPATH=$core seconds "$py" -m mlvfx texture tile "$photo" -o "$out/t.exr" -q)
    echo "round $round $which: material $m s, smoke 64^3 x24 $s s, tile to EXR $t s"
  done
done
