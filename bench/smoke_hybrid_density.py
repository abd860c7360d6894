"""Does fine density on the coarse velocity beat coarse-only? A 2D test without learning.

Idea: much of coarse-only's error might be numerical diffusion of the density on the 64² grid,
which then pushes the buoyancy wrong. So keep the velocity on the surrogate's coarse grid (the
same coarse solver: advection, buoyancy, vorticity, projection) but carry the density at the
reference's 256², advected by the coarse velocity interpolated to the fine cells (RK2 traces and
MacCormack, as the reference), with the buoyancy taken from that density averaged to 64².
It costs a fine density advection per step (not timed here: the question is the error).

Scored like ``mlvfx smoke bench`` (relative L2 of the 256² density against the float64 reference)
on the **validation** shots (seeds 1000+; the benchmark's held-out 5000+ stay for models):

    .venv/bin/python bench/smoke_hybrid_density.py --seeds 1000-1007
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from mlvfx.fluids.bench import rel_l2
from mlvfx.fluids.grid import Faces, comp_dim, scalar_to_faces, velocity_at
from mlvfx.fluids.reference import PreparedSource, ReferenceSolver, Source
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import coarse_config, restrict_density, restrict_mask

FAMILIES = ("plume", "two_sources", "wind", "obstacle")
MARKS = (50, 100, 200)


def coarse_velocity_step(
    coarse: ReferenceSolver, vel: Faces, density: torch.Tensor, sources: list[PreparedSource]
) -> Faces:
    """The coarse solver's velocity update (as ``ReferenceSolver.advance``), buoyancy from ``density``."""
    cfg = coarse.config
    dt, ndim = cfg.dt, cfg.dims
    scheme = cfg.velocity_advection or "semi_lagrangian"
    traces = {g: coarse._traces(g, vel, scheme) for g in range(ndim)}
    vel = [coarse._advect(vel[c], comp_dim(c, ndim), traces[c]) for c in range(ndim)]
    if cfg.velocity_dissipation > 0:
        vel = [v * math.exp(-cfg.velocity_dissipation * dt) for v in vel]
    for src in sources:
        if src.face_masks is not None:
            vel = [
                v + fm * (src.velocity[c] - v)
                for c, (v, fm) in enumerate(zip(vel, src.face_masks, strict=True))
            ]
    if cfg.buoyancy != 0:
        vel[1] = vel[1] + (dt * cfg.buoyancy) * scalar_to_faces(density, 1)
    if cfg.wind and cfg.wind_rate > 0:
        blend = 1.0 - math.exp(-cfg.wind_rate * dt)
        vel = [v + blend * (cfg.wind[c] - v) for c, v in enumerate(vel)]
    if cfg.vorticity > 0:
        force = coarse._vorticity_force(vel)
        vel = [v + dt * scalar_to_faces(f, c) for c, (v, f) in enumerate(zip(vel, force, strict=True))]
    return coarse.projection(vel)


def fine_density_step(
    fine: ReferenceSolver, density: torch.Tensor, vel: Faces, factor: int, sources: list[PreparedSource]
) -> torch.Tensor:
    """The reference's density update on the fine grid, traced through the coarse velocity ``vel``."""
    cfg = fine.config
    pos = fine._grid_positions(-1)
    k = cfg.dt / cfg.dx  # velocities are in domain units, so the coarse field serves as it is

    def at(p: list[torch.Tensor]) -> list[torch.Tensor]:
        return velocity_at(vel, [x / factor for x in p])

    u0 = at(pos)

    def trace(sign: float) -> list[torch.Tensor]:
        u = u0
        if cfg.rk_order == 2:
            u = at([pos[d] + (0.5 * sign * k) * u0[1 - d] for d in range(2)])
        return [pos[d] + (sign * k) * u[1 - d] for d in range(2)]

    back = trace(-1.0)
    fwd = trace(1.0) if cfg.advection == "maccormack" else None
    density = fine._advect_density(density, (back, fwd))
    if cfg.density_dissipation > 0:
        density = density * math.exp(-cfg.density_dissipation * cfg.dt)
    for src in sources:
        density = density + (src.rate * cfg.dt) * src.mask
    return density.masked_fill(fine.solid, 0.0)


def seeds_from(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1000-1007", help="validation seeds, 'A-B' or 'A,B,C'")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    seeds = seeds_from(args.seeds)
    if any(s >= 5000 for s in seeds):
        raise SystemExit("seeds 5000+ are the benchmark's held-out shots; use validation seeds")
    torch.set_num_threads(args.threads)
    factor = args.factor
    errors: dict[str, dict[int, list[float]]] = {"coarse only": {}, "fine density": {}}
    for seed in seeds:
        t0 = time.perf_counter()
        sc = make_scenario(FAMILIES[seed % len(FAMILIES)], 2, args.res, seed=seed)
        ref = ReferenceSolver(sc.config, sc.obstacles)
        ref_src = ref.prepare_sources(sc.sources)
        solid = (
            None if sc.obstacles is None else restrict_mask(np.asarray(sc.obstacles, float), factor) >= 0.5
        )
        coarse = ReferenceSolver(coarse_config(sc.config, factor), solid)
        masks = [
            Source(restrict_mask(np.asarray(s.mask, float), factor), s.rate, s.velocity) for s in sc.sources
        ]
        coarse_src = coarse.prepare_sources(masks)
        r_state, c_state = ref.zeros(), coarse.zeros()
        h_density, h_vel = ref.zeros()[0], coarse.zeros()[1]
        row: dict[str, list[float]] = {m: [] for m in errors}
        with torch.no_grad():
            for i in range(1, max(MARKS) + 1):
                r_state = ref.advance(*r_state, ref_src)
                c_state = coarse.advance(*c_state, coarse_src)
                h_density = fine_density_step(ref, h_density, h_vel, factor, ref_src)
                h_vel = coarse_velocity_step(coarse, h_vel, restrict_density(h_density, factor), coarse_src)
                if i in MARKS:
                    nearest = F.interpolate(c_state[0][None, None], scale_factor=factor, mode="nearest")[0, 0]
                    for m, v in (
                        ("coarse only", rel_l2(nearest, r_state[0])),
                        ("fine density", rel_l2(h_density, r_state[0])),
                    ):
                        errors[m].setdefault(i, []).append(v)
                        row[m].append(v)
        cells = " | ".join(f"{m}: " + " / ".join(f"{v:.3f}" for v in vals) for m, vals in row.items())
        print(f"seed {seed} ({sc.name}): {cells}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    print(f"\nmean over {len(seeds)} validation shots, rel. L2 at t = " + " / ".join(str(t) for t in MARKS))
    base = errors["coarse only"]
    for m, per in errors.items():
        means = [float(np.mean(per[t])) for t in MARKS]
        ratios = [float(np.mean(per[t]) / np.mean(base[t])) for t in MARKS]
        print(
            f"  {m:13s} "
            + " / ".join(f"{v:.3f}" for v in means)
            + "   ("
            + " / ".join(f"{r:.2f}x" for r in ratios)
            + " coarse only)"
        )


if __name__ == "__main__":
    main()
