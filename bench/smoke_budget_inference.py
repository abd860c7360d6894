"""Does the mass budget, switched on at inference only, fix a published 3D surrogate's long-run drift?

A diagnostic, not a model. ``CorrectionNet(mass_budget=True)`` rescales the corrected density
after every step to the step's physical budget (the previous total, minus the flux through open
walls, plus the inflow; :meth:`mlvfx.fluids.surrogate.SurrogateSolver.mass_budget`). The
published 3D models were trained without it. This script loads one, switches the budget on, and
runs the held-out benchmark (`mlvfx smoke bench`'s :func:`mlvfx.fluids.bench.run_bench`, seeds
from 5000): errors and total density after the stability rollouts. Compare with the benchmark of
the same weights as published (the solver is deterministic, so the reference and coarse rows
repeat exactly).

    .venv/bin/python bench/smoke_budget_inference.py --model smoke3d --res 64 --shots 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smoke3d", help="zoo model id (default smoke3d)")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--shots", type=int, default=3, help="error and stability shots (seeds from 5000)")
    ap.add_argument("--stability-steps", type=int, default=400)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from mlvfx.fluids.bench import BenchSpec, format_table, run_bench
    from mlvfx.fluids.surrogate import load_surrogate

    net, factor, version = load_surrogate(args.model)
    net.conserve_mass = net.mass_budget = True
    net.mass = torch.tensor([2.0])  # what a net built with mass_budget=True stores
    spec = BenchSpec(
        dims=3,
        res=args.res,
        shots=args.shots,
        eval_steps=(25, 50, 100),
        stability_steps=args.stability_steps,
        stability_shots=args.shots,
        timing_steps=1,
    )
    result = run_bench(net, factor, spec)
    print(f"{args.model} {version} with the mass budget switched on at inference, {args.res}^3")
    print(format_table(result))
    for s in result["stability"]:
        print(
            f"stability seed {s['seed']} {s['scenario']}: total {s['total_density_ratio'] - 1:+.1%}, "
            f"last quarter {s['last_quarter_ratio'] - 1:+.1%}, coarse-only "
            f"{s['coarse_total_density_ratio'] - 1:+.1%}, finite {s['finite']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
