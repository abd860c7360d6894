"""How much of the 3D stability verdict (total within +-5 % after 400 steps) is chance?

Issue 7's stability check compares one surrogate rollout's total density after 4x the training
horizon with one reference run's. In an open box that total is what flowed in minus what flowed
out, and the outflow depends on the trajectory, which amplifies small differences (stop 5 measured
that for the 2D error). This script asks the same of the totals, on 64³ shots (validation seeds
1000-1007 by default):

* **reference, inflow x (1 + eps)**: the reference solver with every source's rate scaled by
  1 + eps, its total at steps/4, steps/2 and steps over the unperturbed reference's. The inflow
  itself changes by eps, so anything well beyond eps is the trajectory.
* **surrogate, inflow x (1 + eps)** for eps = 0 and each ``--eps`` (both signs): the surrogate as
  ``mlvfx smoke bench`` runs it (clean open-wall inflow), its total after ``--steps`` over the
  unperturbed reference's, and how many shots are within +-5 %.

If a one-per-mille change of the inflow moves totals by several percent, the +-5 % count on eight
shots is partly a lottery, for any model and for the reference itself.

    .venv/bin/python bench/smoke_stability_noise.py --weights model_zoo/weights/smoke3d-0.2.0.safetensors \\
        --steps 400 --cache refs/
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES, reference_run

from mlvfx.fluids.reference import ReferenceSolver, Source
from mlvfx.fluids.scenarios import Scenario, make_scenario
from mlvfx.fluids.surrogate import SurrogateSolver, surrogate_from_state
from mlvfx.zoo import load_state_dict

RES = 64


def scaled(sc: Scenario, eps: float) -> list[Source]:
    """The scenario's sources with their rates scaled by ``1 + eps``."""
    return [replace(s, rate=s.rate * (1.0 + eps)) for s in sc.sources]


def perturbed_reference(seed: int, steps: int, eps: float, cache: Path | None) -> list[float]:
    """Totals per step of the reference with the inflow scaled by ``1 + eps`` (cached)."""
    path = cache / f"ref_3d_{RES}_{seed}_{steps}_eps{eps:g}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return [float(x) for x in z["totals"]]
    sc = make_scenario(FAMILIES[seed % 4], 3, RES, seed=seed)
    ref = ReferenceSolver(sc.config, sc.obstacles)
    src = ref.prepare_sources(scaled(sc, eps))
    state, totals = ref.zeros(), []
    with torch.no_grad():
        for _ in range(steps):
            state = ref.advance(*state, src)
            totals.append(float(state[0].sum()))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, totals=np.array(totals))
        tmp.replace(path)
    return totals


def surrogate_total(weights: Path, seed: int, steps: int, eps: float) -> float:
    """The surrogate's total (fine units) after ``steps``, inflow scaled by ``1 + eps``."""
    net, factor = surrogate_from_state(load_state_dict(weights), source=str(weights))
    sc = make_scenario(FAMILIES[seed % 4], 3, RES, seed=seed)
    sur = SurrogateSolver(sc.config, net.eval(), sc.obstacles, factor, dtype="float32", open_inflow="clean")
    src = sur.prepare_sources(scaled(sc, eps))
    state = sur.solver.zeros()
    with torch.no_grad():
        for _ in range(steps):
            state = sur.advance(*state, src)
    return float(state[0].sum()) * factor**3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1008)))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument(
        "--eps", type=float, nargs="+", default=[1e-3, 1e-2], help="surrogate inflow changes (+-)"
    )
    ap.add_argument("--ref-eps", type=float, nargs="*", default=[1e-3], help="reference inflow changes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, help="reference runs, shared with bench/smoke_mass.py")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    marks = [args.steps // 4, args.steps // 2, args.steps]
    sur_eps = [0.0] + [s * e for e in args.eps for s in (1.0, -1.0)]
    head = [f"ref x(1{e:+g}) at {'/'.join(map(str, marks))}" for e in args.ref_eps]
    head += [f"surrogate eps {e:+g}" for e in sur_eps]
    print(f"Totals over the unperturbed reference's (step {args.steps} unless marked); {args.weights.name}\n")
    print("| shot | " + " | ".join(head) + " | surrogate spread |")
    print("|---|" + "---|" * (len(head) + 1))
    inside = {e: 0 for e in sur_eps}
    ref_inside = {e: 0 for e in args.ref_eps}
    spreads: list[float] = []
    for seed in args.seeds:
        ref_totals, _ = reference_run(seed, args.steps, 3, RES, [50, 100, 200], args.cache)
        cells = []
        for e in args.ref_eps:
            pert = perturbed_reference(seed, args.steps, e, args.cache)
            r = [pert[m - 1] / ref_totals[m - 1] for m in marks]
            ref_inside[e] += abs(r[-1] - 1) <= 0.05
            cells.append(" / ".join(f"{x:.3f}" for x in r))
        ratios = []
        for e in sur_eps:
            r = surrogate_total(args.weights, seed, args.steps, e) / ref_totals[-1]
            ratios.append(r)
            inside[e] += abs(r - 1) <= 0.05
            cells.append(f"{r:.3f}")
        spread = max(ratios) / min(ratios) - 1 if min(ratios) > 0 else math.nan
        spreads.append(spread)
        row = f"| {seed} {FAMILIES[seed % 4]} | " + " | ".join(cells)
        print(row + f" | {100 * spread:.1f} % |", flush=True)
    n = len(args.seeds)
    counts = [f"{ref_inside[e]} of {n}" for e in args.ref_eps] + [f"{inside[e]} of {n}" for e in sur_eps]
    median = 100 * float(np.median(spreads))
    print("| **within +-5 %** | " + " | ".join(counts) + f" | median {median:.1f} % |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
