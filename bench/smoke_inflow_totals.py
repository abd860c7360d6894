"""Total density of a surrogate's long rollout with each open-wall inflow, without a reference.

Where a reference run is too slow (128³ on a CPU), this shows whether the total levels off or
keeps growing: it rolls the surrogate out from the empty domain for ``--steps`` steps on the
given shots, once with the coarse solver's ``border`` inflow (the convention the models were
trained with) and once with ``clean`` inflow (what hosts use), and prints the total density
(fine units) every ``--steps / 8`` steps.

    .venv/bin/python bench/smoke_inflow_totals.py --weights model_zoo/weights/smoke3d_128-0.1.0.safetensors \\
        --res 128 --seeds 1002 --steps 400
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES  # the shot seed picks the family, as in the other smoke benches

from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import SurrogateSolver, surrogate_from_state
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1002])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    net.eval()
    every = max(1, args.steps // 8)
    marks = list(range(every, args.steps + 1, every))
    print("| shot | inflow | " + " | ".join(f"step {m}" for m in marks) + " | s |")
    print("|---|---|" + "---:|" * (len(marks) + 1))
    for seed in args.seeds:
        fam = FAMILIES[seed % 4]
        sc = make_scenario(fam, 3, args.res, seed=seed)
        for inflow in ("border", "clean"):
            sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32", open_inflow=inflow)
            src = sur.prepare_sources(sc.sources)
            state = sur.solver.zeros()
            totals = []
            start = time.perf_counter()
            with torch.no_grad():
                for i in range(1, args.steps + 1):
                    state = sur.advance(*state, src)
                    if i in marks:
                        totals.append(float(state[0].sum()) * factor**3)
            took = time.perf_counter() - start
            row = " | ".join(f"{t:.0f}" for t in totals)
            print(f"| {seed} {fam} | {inflow} | {row} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
