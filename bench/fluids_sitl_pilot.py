"""Pilot: does a Solver-in-the-Loop correction beat the coarse-only baseline in 2D? (not the recipe)

A few minutes of CPU training, to size the problem before the real recipe is written:

1. reference trajectories at ``--res`` (default 128^2) for randomised plume / two_sources / wind
   shots (training seeds 0..N-1, held-out seeds 1000..), restricted to the coarse grid
   (factor 4) with the flux-preserving operators of :mod:`mlvfx.fluids.surrogate`;
2. train :class:`CorrectionNet` through the differentiable coarse solver, unrolling ``--unroll``
   steps from noise-perturbed reference states;
3. on the held-out shots, run coarse-only and coarse+correction from an empty domain for 200
   steps and report density relative L2 against the reference (prolonged to the reference grid,
   bicubic) at steps 50, 100 and 200, with ms/step.

    .venv/bin/python bench/fluids_sitl_pilot.py --train 12 --iters 1500
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from mlvfx.fluids.grid import Faces, face_shape
from mlvfx.fluids.scenarios import Scenario, make_scenario, simulate
from mlvfx.fluids.surrogate import (
    CorrectionNet,
    SurrogateSolver,
    prolong_density,
    restrict_density,
    restrict_faces,
    unrolled_loss,
)

FAMILIES = ("plume", "two_sources", "wind")
FACTOR = 4


def shot(seed: int, res: int) -> Scenario:
    return make_scenario(FAMILIES[seed % len(FAMILIES)], 2, res, seed=seed)


def trajectory(sc: Scenario, steps: int) -> tuple[list[torch.Tensor], list[Faces], list[torch.Tensor]]:
    """Restricted densities and face velocities at steps 0..steps, and fine densities."""
    coarse_d = [restrict_density(torch.zeros(sc.config.shape, dtype=torch.float64), FACTOR)]
    zero_faces = [torch.zeros(face_shape(sc.config.shape, c), dtype=torch.float64) for c in range(2)]
    coarse_v = [restrict_faces(zero_faces, FACTOR)]
    fine_d = [torch.zeros(sc.config.shape, dtype=torch.float64)]
    for _, d, v in simulate(sc, steps):
        coarse_d.append(restrict_density(d, FACTOR))
        coarse_v.append(restrict_faces(v, FACTOR))
        fine_d.append(d.clone())
    return coarse_d, coarse_v, fine_d


def rollout(
    surrogate: SurrogateSolver, sc: Scenario, steps: int, use_net: bool
) -> tuple[dict[int, torch.Tensor], float]:
    sources = surrogate.prepare_sources(sc.sources)
    density, vel = surrogate.solver.zeros()
    out = {}
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(1, steps + 1):
            if use_net:
                density, vel = surrogate.advance(density, vel, sources)
            else:
                density, vel = surrogate.solver.advance(density, vel, sources)
            out[i] = density.clone()
    return out, (time.perf_counter() - t) / steps


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp(min=1e-12))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--train", type=int, default=12, help="training shots")
    parser.add_argument("--heldout", type=int, default=6, help="held-out shots")
    parser.add_argument("--steps", type=int, default=120, help="training trajectory length")
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--unroll", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)

    t0 = time.perf_counter()
    train = []
    for seed in range(args.train):
        sc = shot(seed, args.res)
        d, v, _ = trajectory(sc, args.steps)
        train.append((sc, d, v))
    print(
        f"reference data: {args.train} shots x {args.steps} steps in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    net = CorrectionNet(2, width=args.width)
    solvers = [SurrogateSolver(sc.config, net) for sc, _, _ in train]
    sources = [s.prepare_sources(sc.sources) for s, (sc, _, _) in zip(solvers, train, strict=True)]
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    running = 0.0
    for it in range(1, args.iters + 1):
        k = rng.randrange(len(train))
        _, d, v = train[k]
        start = rng.randrange(0, args.steps - args.unroll)
        loss = unrolled_loss(
            solvers[k],
            d[start],
            v[start],
            d[start + 1 : start + 1 + args.unroll],
            v[start + 1 : start + 1 + args.unroll],
            sources[k],
            noise=args.noise,
            generator=gen,
        )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        running = 0.95 * running + 0.05 * float(loss.detach()) if it > 1 else float(loss.detach())
        if it % 100 == 0:
            print(f"iter {it}: loss {running:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_s = time.perf_counter() - t0

    checkpoints = (50, 100, 200)
    rows: dict[str, dict[int, list[float]]] = {"coarse_only": {}, "surrogate": {}}
    times: dict[str, list[float]] = {"coarse_only": [], "surrogate": [], "reference": []}
    for seed in range(1000, 1000 + args.heldout):
        sc = shot(seed, args.res)
        t = time.perf_counter()
        fine = {i: d.clone() for i, d, _ in simulate(sc, max(checkpoints)) if i in checkpoints}
        times["reference"].append((time.perf_counter() - t) / max(checkpoints))
        surrogate = SurrogateSolver(sc.config, net)
        for name, use_net in (("coarse_only", False), ("surrogate", True)):
            states, ms = rollout(surrogate, sc, max(checkpoints), use_net)
            times[name].append(ms)
            for s in checkpoints:
                up = prolong_density(states[s], FACTOR)
                rows[name].setdefault(s, []).append(rel_l2(up, fine[s]))
    print(f"\ntrained {args.iters} iterations in {train_s:.0f} s; held-out shots: {args.heldout}")
    print(f"{'step':>6} {'coarse-only':>12} {'surrogate':>10} {'ratio':>6}")
    result: dict[str, Any] = {"args": vars(args) | {"json": None}, "train_s": train_s, "steps": {}}
    for s in checkpoints:
        c = sum(rows["coarse_only"][s]) / len(rows["coarse_only"][s])
        g = sum(rows["surrogate"][s]) / len(rows["surrogate"][s])
        result["steps"][s] = {"coarse_only": c, "surrogate": g}
        print(f"{s:>6} {c:>12.4f} {g:>10.4f} {g / c:>6.2f}")
    mean_ms = {k: 1e3 * sum(v) / len(v) for k, v in times.items()}
    result["ms_per_step"] = mean_ms
    print(
        f"ms/step: reference {mean_ms['reference']:.1f}, coarse-only {mean_ms['coarse_only']:.1f}, "
        f"surrogate {mean_ms['surrogate']:.1f} "
        f"(reference/surrogate {mean_ms['reference'] / mean_ms['surrogate']:.1f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
