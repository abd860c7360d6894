# Sourced by the bench/gpu_*.sh scripts: what they need on a GPU machine where nothing is installed.
# core/ and bench/ on the path, .gpu_site (carried; holds platformdirs, which that image lacks),
# the checkout's model_zoo/ as the zoo mirror (offline) and a scratch cache. Run from the repository root.
export PYTHONPATH="$PWD/core:$PWD/bench:$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}" MLVFX_CACHE_DIR=/tmp/mc
export PYTHONUNBUFFERED=1 MLVFX_OFFLINE=1
OUT=${OUT:?set OUT}
mlvfx() { python3 -c 'import sys; from mlvfx.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
# The table of a `mlvfx smoke bench --out-json` file, and one line per stability shot.
bench_summary() {
    python3 - "$1" <<'PY'
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
}
