"""Where a 3D surrogate's total density goes, step by step: the coarse step or the correction.

For each validation shot it rolls the surrogate out from the empty domain (clean inflow, as hosts
run it) and splits every step's change of the total density into
* the inflow (what the sources add),
* the rest of the coarse step (what advection gains or loses, including smoke leaving through
  open walls), and
* the learned correction (the corrected total minus the coarse step's),
summed over the first and the second half of ``--steps``, in fine units, next to the
reference's total at the end (from the ``bench/smoke_mass.py`` cache).

    .venv/bin/python bench/smoke_drain.py --weights model_zoo/weights/smoke3d-0.2.0.safetensors \\
        --seeds 1002 1006 1010 --steps 400 --cache refs/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES, reference_run

from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import INFERENCE_OPEN_INFLOW, SurrogateSolver, surrogate_from_state
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1002, 1006, 1010])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--cache", type=Path, help="reference runs, shared with bench/smoke_mass.py")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    net.eval()
    cell = factor**3
    half = args.steps // 2
    print("| shot | steps | inflow | rest of the coarse step | correction | total at the end | reference's |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        fam = FAMILIES[seed % 4]
        sc = make_scenario(fam, 3, 64, seed=seed)
        ref_totals, _ = reference_run(seed, args.steps, 3, 64, [50, 100, 200], args.cache)
        sur = SurrogateSolver(
            sc.config, net, sc.obstacles, factor, "float32", open_inflow=INFERENCE_OPEN_INFLOW
        )
        src = sur.prepare_sources(sc.sources)
        cfg = sur.solver.config
        inflow_per_step = sum(float((s.rate * cfg.dt) * s.mask.sum()) for s in src)
        density, vel = sur.solver.zeros()
        sums = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
        with torch.no_grad():
            for i in range(1, args.steps + 1):
                before = float(density.sum())
                coarse_d, coarse_v = sur.solver.advance(density, vel, src)
                mid = float(coarse_d.sum())
                density, vel = sur.correct(coarse_d, coarse_v, src)
                after = float(density.sum())
                part = sums[0 if i <= half else 1]
                part[0] += inflow_per_step
                part[1] += mid - before - inflow_per_step
                part[2] += after - mid
        end = float(density.sum()) * cell
        for k, label in enumerate((f"1-{half}", f"{half + 1}-{args.steps}")):
            a, b, c = (x * cell for x in sums[k])
            tail = f"{end:.0f} | {ref_totals[args.steps - 1]:.0f}" if k else " | "
            print(f"| {seed} {fam} | {label} | {a:.0f} | {b:+.0f} | {c:+.0f} | {tail} |", flush=True)


if __name__ == "__main__":
    main()
