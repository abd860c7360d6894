"""How well the coarse grid accounts for the smoke leaving the domain (issue 7's stability target).

In a steady state the smoke flowing in (the sources) equals the smoke flowing out (open walls).
A surrogate whose density correction is rescaled to a mass budget (recipe ``model.mass_budget``:
:meth:`mlvfx.fluids.surrogate.SurrogateSolver.mass_budget`, the upwind flux of the border cells
through the open walls) settles where *that formula's* outflow equals the inflow. This bench
checks the formula on the reference itself: for every shot of a recipe's data folder it takes
the restricted (coarse) reference states from step ``--from`` on, and per step compares

* the reference's outflow: inflow minus the change of its restricted total;
* the budget formula's outflow, evaluated on the same restricted state;
* the coarse solver's outflow: one uncorrected coarse step from that state (what coarse-only
  and every correction start from).

Ratios are outflow estimate over the reference's outflow, averaged over the window (1 = exact).
The last column is the restricted reference's mean ``|v_y|`` at the first and the last step of
the window: how much the flow itself still changes (``bench/smoke_runaway.py --trace`` prints the
same for a surrogate's rollouts).
No model is trained or run; it reads the shots only (about a minute for 12 shots of 400 steps).

    .venv/bin/python bench/smoke_budget.py --recipe model_zoo/recipes/smoke3d_v10.json \\
        --data /work/data/smoke64_400 --from 150
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from mlvfx.fluids.surrogate import CorrectionNet, SurrogateSolver
from mlvfx.train.smoke import load_shots, load_smoke_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, required=True, help="the recipe the data folder belongs to")
    ap.add_argument("--data", type=Path, required=True, help="its data folder")
    ap.add_argument("--kind", choices=("train", "val"), default="train")
    ap.add_argument("--from", dest="start", type=int, default=150, help="first step of the window")
    ap.add_argument("--every", type=int, default=5, help="sample every Nth step of the window")
    ap.add_argument(
        "--advection",
        choices=("maccormack", "semi_lagrangian", "conservative"),
        help="density scheme of the coarse step (default: the shot's, as the surrogate runs it)",
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_smoke_recipe(args.recipe)
    if args.start < 0 or args.start >= recipe.data.steps:
        raise SystemExit(f"--from must lie in [0, {recipe.data.steps}) for this recipe's shots")
    # The formula needs only the coarse solver; an untrained net (zero correction) stands in.
    net = CorrectionNet(dims=recipe.dims, conditions=recipe.model.conditions, mass_budget=True)
    scheme = args.advection or "the shots' own"
    print(
        f"{recipe.name}: {args.kind} shots in {args.data}, steps {args.start}-{recipe.data.steps - 1}, "
        f"coarse density advection: {scheme}"
    )
    print(
        "\n| shot | inflow / total per step | formula / reference outflow | coarse step / reference outflow "
        "| mean abs(v_y), first / last step |"
    )
    print("|---|---:|---:|---:|---:|")
    rows = []
    for shot in load_shots(args.data, recipe, args.kind):
        sc = shot.scenario
        config = (
            sc.config if args.advection is None else dataclasses.replace(sc.config, advection=args.advection)
        )
        sur = SurrogateSolver(config, net, sc.obstacles, recipe.model.factor, dtype="float32")
        src = sur.prepare_sources(sc.sources)
        inflow = sum(float((s.rate * sc.config.dt) * s.mask.sum()) for s in src)
        ref_out, formula_out, coarse_out, share = [], [], [], []
        with torch.no_grad():
            for t in range(args.start, recipe.data.steps, args.every):
                d = shot.density[t].to(sur.solver.device)
                v = [x[t].to(sur.solver.device) for x in shot.vel]
                total = float(d.sum())
                ref_out.append(inflow - (float(shot.density[t + 1].sum()) - total))
                formula_out.append(inflow - (float(sur.mass_budget(d, v, src)) - total))
                coarse_out.append(inflow - (float(sur.solver.advance(d, v, src)[0].sum()) - total))
                share.append(inflow / total)
        ref = np.asarray(ref_out)
        f = float(np.mean(formula_out) / ref.mean())
        c = float(np.mean(coarse_out) / ref.mean())
        rows.append((f, c))
        vy = [float(shot.vel[1][t].abs().mean()) for t in (args.start, recipe.data.steps)]
        print(
            f"| {shot.seed} {sc.name} | {np.mean(share):.4f} | {f:.3f} | {c:.3f} "
            f"| {vy[0]:.3f} / {vy[1]:.3f} |"
        )
    fs, cs = zip(*rows, strict=True)
    print(f"| range | | {min(fs):.3f}-{max(fs):.3f} | {min(cs):.3f}-{max(cs):.3f} | |")


if __name__ == "__main__":
    main()
