"""Why a 3D surrogate's total density runs away in long shots, and two inference-time tries at it.

Diagnostics for issue 7's stability target, on the validation shots (seeds from 1000; the
held-out benchmark shots stay unseen). For each model and each variant it rolls the surrogate out
from the empty domain for ``--steps`` steps and reports

* the density error against the 64³ reference at t = 50 / 100 / 200 (learned upres output);
* the total density over the reference's at a quarter, half and all of ``--steps``;
* with ``--trace``: the flow itself every ``--steps / 8`` steps: the mean ``|v_y|`` over the
  coarse grid, the fastest upward face velocity through the top wall and the total, for the
  model and for the coarse solver alone (no correction).

Variants (inference only; nothing is retrained):

* ``gain G`` (``--outflow-gain``, models with the mass budget only): the budget's upwind outflow
  through open walls scaled by G. ``bench/smoke_budget.py`` finds the formula 0.73-1.48x of the
  smoke that really leaves; does correcting that stop the runaway?
* ``cap C`` (``--energy-cap``): after each correction, if the velocity's energy (the sum of the
  squared face velocities) exceeds C times that of the coarse step it corrected, the velocity is
  scaled back to it (a scaled divergence-free field stays divergence-free): the correction may
  move energy but not add it.
* ``mass cap M`` (``--mass-cap``): after each correction, if the corrected total density exceeds
  M times the total of the coarse step it corrected, the density is scaled back to it: the
  correction may take smoke away or move it, but not add more than that.
* ``budget cap B`` (``--budget-cap``): as the mass cap, but the limit is B times the step's mass
  budget (the total before the step, minus the upwind outflow through open walls, plus the
  inflow: :meth:`SurrogateSolver.mass_budget`), so the coarse step's own non-conservative gain
  is capped too. Unlike a trained mass budget it never adds smoke, it only takes the excess away.
* ``open inflow clean`` (``--open-inflow clean``): the coarse solver brings smoke-free air in
  where the flow enters through an open wall, instead of the border cell's own density (what
  hosts, ``smoke run`` and ``mlvfx smoke bench`` use from stop 15 on; the rest of this script
  keeps the convention the models were trained with, ``border``). On the validation wind shot
  0.2.0's smoke drifts upwind and stays at the wall the wind blows in through.
* ``--base-inflow clean`` runs every rollout (the variants' too) with clean inflow, so a variant
  can be tried on top of it.
* ``velocity x S`` (``--velocity-scale``): the net's velocity correction scaled by S before it
  is added; S = 0 keeps the density correction (and the upres) on the coarse solver's own flow,
  which stop 11 found steady over 1600 steps.

The reference runs are shared with ``bench/smoke_mass.py --cache``.

    .venv/bin/python bench/smoke_runaway.py --weights runs/smoke3d_v8/smoke3d_v8.safetensors \\
        --outflow-gain 1.32 2 --energy-cap 1 --trace --cache refs/
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES, reference_run

from mlvfx.fluids.bench import rel_l2
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import CorrectionNet, SurrogateSolver, surrogate_from_state
from mlvfx.zoo import load_state_dict

RES = 64


def with_outflow_gain(sur: SurrogateSolver, gain: float) -> None:
    """``sur``'s mass budget with the outflow through open walls scaled by ``gain``."""
    real = sur.mass_budget

    def budget(density: torch.Tensor, vel: Any, sources: Any = ()) -> torch.Tensor:
        still = real(density, [torch.zeros_like(v) for v in vel], sources)  # no outflow at all
        return (still - gain * (still - real(density, vel, sources))).clamp(min=0.0)

    sur.mass_budget = budget  # type: ignore[method-assign]


def with_energy_cap(sur: SurrogateSolver, cap: float) -> None:
    """``sur``'s correction, its velocity scaled back to ``cap`` x the coarse step's energy."""
    real = sur.correct

    def correct(density: torch.Tensor, vel: Any, sources: Any = (), budget: Any = None) -> Any:
        d, v = real(density, vel, sources, budget)
        before = sum(float((x * x).sum()) for x in vel)
        after = sum(float((x * x).sum()) for x in v)
        if after > cap * before > 0:
            v = [x * math.sqrt(cap * before / after) for x in v]
        return d, v

    sur.correct = correct  # type: ignore[method-assign]


def capped(density: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """``density`` scaled down so that its total is at most ``limit`` (never scaled up)."""
    total = density.sum()
    return torch.where(total > limit, density * (limit / total.clamp(min=1e-12)), density)


def with_mass_cap(sur: SurrogateSolver, cap: float) -> None:
    """``sur``'s correction, its density scaled back to ``cap`` x the coarse step's total."""
    real = sur.correct

    def correct(density: torch.Tensor, vel: Any, sources: Any = (), budget: Any = None) -> Any:
        d, v = real(density, vel, sources, budget)
        return capped(d, cap * density.sum()), v

    sur.correct = correct  # type: ignore[method-assign]


def with_budget_cap(sur: SurrogateSolver, cap: float) -> None:
    """``sur``'s step, its density scaled back to ``cap`` x the step's mass budget."""
    real = sur.advance

    def advance(density: torch.Tensor, vel: Any, sources: Any = ()) -> Any:
        limit = cap * sur.mass_budget(density, vel, sources)
        d, v = real(density, vel, sources)
        return capped(d, limit), v

    sur.advance = advance  # type: ignore[method-assign]


def with_velocity_scale(sur: SurrogateSolver, scale: float) -> None:
    """``sur``'s correction with the net's velocity channels scaled by ``scale`` (0: density only)."""
    net = copy.deepcopy(sur.net)  # the caller's net is shared by the other variants
    real = net.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = real(x)
        return torch.cat([out[:, :1], scale * out[:, 1:]], dim=1)

    net.forward = forward  # type: ignore[method-assign]
    sur.net = net


def trace_row(state: tuple[torch.Tensor, Any]) -> str:
    density, vel = state
    top = vel[1].narrow(1, vel[1].shape[1] - 1, 1)  # (Z, Y + 1, X) faces: the top wall
    return f"{float(vel[1].abs().mean()):.3f} / {float(top.max()):.2f} / {float(density.sum()):.1f}"


def rollout(
    net: CorrectionNet,
    factor: int,
    seed: int,
    steps: int,
    variant: Callable[[SurrogateSolver], None] | None,
    inflow: str = "border",
) -> tuple[list[float], list[tuple[int, torch.Tensor]], list[tuple[int, str]]]:
    """Totals (fine units) at steps/4, steps/2 and steps; output densities at t = 50, 100, 200;
    the trace rows every steps/8 steps. ``inflow``: the coarse solver's open-wall inflow."""
    sc = make_scenario(FAMILIES[seed % 4], 3, RES, seed=seed)
    sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32", open_inflow=inflow)  # type: ignore[arg-type]
    if variant is not None:
        variant(sur)
    src = sur.prepare_sources(sc.sources)
    marks = {steps // 4, steps // 2, steps}
    every = max(1, steps // 8)
    totals: list[float] = []
    outs: list[tuple[int, torch.Tensor]] = []
    trace: list[tuple[int, str]] = []
    state = sur.solver.zeros()
    with torch.no_grad():
        for i in range(1, steps + 1):
            state = sur.advance(*state, src)
            if i in (50, 100, 200):
                outs.append((i, sur.output_density(*state, src).double()))
            if i in marks:
                totals.append(float(state[0].sum()) * factor**3)
            if i % every == 0:
                trace.append((i, trace_row(state)))
    return totals, outs, trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--outflow-gain", type=float, nargs="*", default=[], help="budget outflow gains to try")
    ap.add_argument("--energy-cap", type=float, nargs="*", default=[], help="energy caps to try")
    ap.add_argument("--mass-cap", type=float, nargs="*", default=[], help="density caps to try")
    ap.add_argument("--budget-cap", type=float, nargs="*", default=[], help="budget caps to try")
    ap.add_argument(
        "--velocity-scale", type=float, nargs="*", default=[], help="velocity-correction scales to try"
    )
    ap.add_argument(
        "--open-inflow", nargs="*", default=[], choices=("clean", "border"), help="open-wall inflows to try"
    )
    ap.add_argument(
        "--base-inflow",
        choices=("border", "clean"),
        default="border",
        help="open-wall inflow of every rollout, the variants' included (default: border, as trained)",
    )
    ap.add_argument("--trace", action="store_true", help="print the flow every steps/8 steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, help="reference runs, shared with bench/smoke_mass.py")
    args = ap.parse_args()
    if args.steps < 200:
        raise SystemExit("--steps must be >= 200 (errors are scored at t = 50, 100 and 200)")
    torch.set_num_threads(args.threads)
    marks = [args.steps // 4, args.steps // 2, args.steps]
    print(
        f"| model | variant | shot | rel. L2 t=50 / 100 / 200 | total / reference at step "
        f"{marks[0]} / {marks[1]} / {marks[2]} |"
    )
    print("|---|---|---|---|---|")
    traces: list[str] = []
    for path in args.weights:
        net, factor = surrogate_from_state(load_state_dict(path), source=str(path))
        variants: list[tuple[str, Callable[[SurrogateSolver], None] | None]] = [("as trained", None)]
        if net.mass_budget:
            variants += [
                (f"outflow gain {g:g}", lambda s, g=g: with_outflow_gain(s, g)) for g in args.outflow_gain
            ]
        variants += [(f"energy cap {c:g}", lambda s, c=c: with_energy_cap(s, c)) for c in args.energy_cap]
        variants += [(f"mass cap {c:g}", lambda s, c=c: with_mass_cap(s, c)) for c in args.mass_cap]
        variants += [(f"budget cap {c:g}", lambda s, c=c: with_budget_cap(s, c)) for c in args.budget_cap]
        variants += [
            (f"velocity x {k:g}", lambda s, k=k: with_velocity_scale(s, k)) for k in args.velocity_scale
        ]
        for seed in args.seeds:
            ref_totals, snaps = reference_run(seed, args.steps, 3, RES, [50, 100, 200], args.cache)
            # An open-inflow variant is the unchanged model on a coarse solver built with that inflow.
            base = "" if args.base_inflow == "border" else "clean inflow, "
            runs = [(base + name, variant, args.base_inflow) for name, variant in variants]
            runs += [(f"open inflow {k}", None, k) for k in args.open_inflow]
            for name, variant, inflow in runs:
                totals, outs, trace = rollout(net.eval(), factor, seed, args.steps, variant, inflow)
                errs = [rel_l2(out, snaps[t]) for t, out in outs]
                ratio = [tot / ref_totals[m - 1] for tot, m in zip(totals, marks, strict=True)]
                fam = FAMILIES[seed % 4]
                print(
                    f"| {path.stem} | {name} | {seed} {fam} | "
                    + " / ".join(f"{e:.3f}" for e in errs)
                    + " | "
                    + " / ".join(f"{r:.2f}" for r in ratio)
                    + " |",
                    flush=True,
                )
                if args.trace and variant is None and inflow == args.base_inflow:
                    traces.append(f"| {path.stem} | {seed} {fam} | " + " | ".join(t for _, t in trace) + " |")
    if args.trace:
        plain = CorrectionNet(3, width=2, depth=2, conditions=2).eval()  # zero correction: coarse only
        for seed in args.seeds:
            _, _, trace = rollout(plain, 4, seed, args.steps, None)
            traces.append(
                f"| coarse only | {seed} {FAMILIES[seed % 4]} | " + " | ".join(t for _, t in trace) + " |"
            )
        steps = [i for i, _ in trace]
        print("\n mean |v_y| / fastest upward flow through the top / total density (coarse cells)\n")
        print("| model | shot | " + " | ".join(f"step {i}" for i in steps) + " |")
        print("|---|---|" + "---|" * len(steps))
        print("\n".join(traces))


if __name__ == "__main__":
    main()
