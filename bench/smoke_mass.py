"""Where the 2D surrogate's total density goes: coarse-solver conservation and the mass budget.

Part 1 (closed box, no outflow): the total density over the inflowed total for the 256²
reference and the same shot on the 64² coarse grid (the surrogate's solver, float32). MacCormack
advection is not conservative; this measures by how much at each resolution.

Part 2 (``--weights``): for each surrogate, with the mass constraint it was trained with ("none",
"coarse": the coarse step's total, or "budget": previous total - open-wall flux + inflow) and with
each of the other two constraints switched on at inference, the density error at t = 50/100/200
and the total density at step N against the reference, instantaneous and averaged over the last
quarter. Validation shots only (seeds from 1000; the held-out benchmark shots stay unseen).

    .venv/bin/python bench/smoke_mass.py --weights runs/smoke2d_v2/smoke2d_v2.safetensors ...
    .venv/bin/python bench/smoke_mass.py --dims 3 --res 64 --shots 3 --steps 100 --closed-steps 100 \
        --weights model_zoo/weights/smoke3d-0.2.0.safetensors
    .venv/bin/python bench/smoke_mass.py --dims 3 --res 64 --shots 3 --steps 400 --no-closed --as-trained \
        --cache /tmp/smoke_refs --weights model_zoo/weights/smoke3d-0.2.0.safetensors runs/x/x.safetensors
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mlvfx.fluids.bench import _upsample, rel_l2
from mlvfx.fluids.reference import ReferenceSolver, Source
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import (
    CorrectionNet,
    SurrogateSolver,
    coarse_config,
    restrict_mask,
    surrogate_from_state,
)
from mlvfx.io.atomic import write_bytes_atomic
from mlvfx.zoo import load_state_dict

FAMILIES = ("plume", "two_sources", "wind", "obstacle")


def closed_box(seeds: list[int], steps: int, dims: int, res: int) -> None:
    print(
        f"## closed box: total density / inflow (steps {steps // 4}, {steps // 2}, {3 * steps // 4}, {steps})"
    )
    print(f"| shot | {res}^{dims} reference | {res // 4}^{dims} coarse |")
    print("|---|---|---|")
    for seed in seeds:
        fam = FAMILIES[seed % 4]  # seeds 1000-1002: plume, two_sources, wind (no obstacle)
        sc = make_scenario(fam, dims, res, seed=seed, boundary="closed")
        cells = []
        for factor in (1, 4):
            cfg = sc.config if factor == 1 else replace(coarse_config(sc.config, 4), dtype="float32")
            solver = ReferenceSolver(cfg)
            srcs = [
                Source(restrict_mask(s.mask, factor) if factor > 1 else s.mask, s.rate, s.velocity)
                for s in sc.sources
            ]
            prepared = solver.prepare_sources(srcs)
            state, inflow, marks = solver.zeros(), 0.0, []
            with torch.no_grad():
                for i in range(1, steps + 1):
                    state = solver.advance(*state, prepared)
                    inflow += sum(p.rate * cfg.dt * float(p.mask.sum()) for p in prepared)
                    if i % (steps // 4) == 0:
                        marks.append(f"{float(state[0].sum()) / inflow:.3f}")
            cells.append(" / ".join(marks))
        print(f"| {seed} {fam} | {cells[0]} | {cells[1]} |")


def reference_run(
    seed: int, steps: int, dims: int, res: int, marks: list[int], cache: Path | None
) -> tuple[list[float], dict[int, torch.Tensor]]:
    """The reference's total density per step and its density at ``marks`` (cached on disk when
    ``cache`` is set: the solver is deterministic, so a rerun would give the same numbers)."""
    path = cache / f"ref_{dims}d_{res}_{seed}_{steps}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            if all(f"snap_{t}" in z.files for t in marks):
                return [float(x) for x in z["totals"]], {t: torch.from_numpy(z[f"snap_{t}"]) for t in marks}
    sc = make_scenario(FAMILIES[seed % 4], dims, res, seed=seed)
    ref = ReferenceSolver(sc.config, sc.obstacles)
    rs = ref.prepare_sources(sc.sources)
    state, totals, snaps = ref.zeros(), [], {}
    keep = set(marks) | {t for t in (50, 100, 200) if t <= steps}  # what either script asks for
    with torch.no_grad():
        for i in range(1, steps + 1):
            state = ref.advance(*state, rs)
            totals.append(float(state[0].sum()))
            if i in keep:
                snaps[i] = state[0].detach().cpu().clone()  # CPU: cached as numpy, compared on any device
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, totals=np.array(totals), **{f"snap_{t}": v.numpy() for t, v in snaps.items()})
        tmp.replace(path)
    return totals, snaps


def surrogates(
    paths: list[Path],
    seeds: list[int],
    steps: int,
    dims: int,
    res: int,
    as_trained: bool = False,
    cache: Path | None = None,
) -> list[dict[str, object]]:
    tail = steps - steps // 4
    marks = [t for t in (50, 100, 200) if t <= steps]
    refs = {}
    for seed in seeds:
        sc = make_scenario(FAMILIES[seed % 4], dims, res, seed=seed)
        totals, snaps = reference_run(seed, steps, dims, res, marks, cache)
        refs[seed] = (sc, totals, snaps)
    print(
        f"\n## surrogates on validation shots {seeds[0]}-{seeds[-1]}: error, and total density "
        f"at step {steps} vs the reference"
    )
    print(
        f"| model | mass | rel. L2 t={' / '.join(map(str, marks))} | total at the end (per shot) "
        "| last-quarter mean (per shot) |"
    )
    print("|---|---|---|---|---|")
    runs: list[tuple[str, str, CorrectionNet | None]] = [("coarse only", "-", None)]
    for path in paths:
        net, _ = surrogate_from_state(load_state_dict(path), source=str(path))
        trained = "budget" if net.mass_budget else "coarse" if net.conserve_mass else "none"
        runs.append((path.stem, f"{trained} (as trained)", net))
        for mode in ("coarse", "budget"):
            if mode != trained and not as_trained:
                net, _ = surrogate_from_state(load_state_dict(path), source=str(path))
                net.conserve_mass, net.mass_budget = True, mode == "budget"
                runs.append((path.stem, mode, net))
    rows: list[dict[str, object]] = []
    for name, mode, net in runs:
        errors: dict[int, list[float]] = {t: [] for t in marks}
        end, lastq = [], []
        for seed in seeds:
            sc, totals, snaps = refs[seed]
            model = net if net is not None else CorrectionNet(dims, 4, 2, 2)  # zero-initialised: coarse only
            sur = SurrogateSolver(sc.config, model, sc.obstacles, 4, dtype="float32")
            ss = sur.prepare_sources(sc.sources)
            state, mine = sur.solver.zeros(), []
            with torch.no_grad():
                for i in range(1, steps + 1):
                    state = sur.advance(*state, ss)
                    mine.append(float(state[0].sum()) * 4**dims)
                    if i in snaps:
                        out = (
                            sur.output_density(*state, ss)
                            if net is not None
                            else _upsample(state[0], 4, "nearest")
                        )
                        errors[i].append(rel_l2(out.double(), snaps[i]))
            end.append(mine[-1] / totals[-1])
            lastq.append(float(np.mean(mine[tail:]) / np.mean(totals[tail:])))
        err = " / ".join(f"{np.mean(v):.3f}" for v in errors.values())
        print(
            f"| {name} | {mode} | {err} | {' '.join(f'{x:.2f}' for x in end)} "
            f"| {' '.join(f'{x:.2f}' for x in lastq)} |"
        )
        rows.append(
            {
                "model": name,
                "mass": mode,
                "error": {str(t): float(np.mean(v)) for t, v in errors.items()},
                "total_end": end,
                "total_last_quarter": lastq,
                "seeds": seeds,
                "steps": steps,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="*", default=[])
    ap.add_argument("--steps", type=int, default=640)
    ap.add_argument("--closed-steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dims", type=int, default=2, choices=(2, 3))
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--shots", type=int, default=6, help="validation shots from seed 1000 (default 6)")
    ap.add_argument(
        "--as-trained", action="store_true", help="each model with its own mass setting only (no switching)"
    )
    ap.add_argument("--no-closed", action="store_true", help="skip part 1 (the closed box)")
    ap.add_argument("--cache", type=Path, help="folder to keep the reference runs in (reused by later runs)")
    ap.add_argument("--json", type=Path, help="also write part 2's rows (errors, totals per shot) as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_closed:
        closed_box([1000, 1001, 1002], args.closed_steps, args.dims, args.res)
    if args.weights:
        seeds = list(range(1000, 1000 + args.shots))
        rows = surrogates(args.weights, seeds, args.steps, args.dims, args.res, args.as_trained, args.cache)
        if args.json is not None:
            write_bytes_atomic(args.json, (json.dumps(rows, indent=1) + "\n").encode(), overwrite=True)


if __name__ == "__main__":
    main()
