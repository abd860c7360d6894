"""Validate the reference smoke solver against PhiFlow 3.4 (an independent solver) on a 2D plume.

PhiFlow is a bench-only, optional dependency (never imported by mlvfx). Install it outside the
project's venv so it cannot upgrade numpy, then point ``--phiflow-path`` (or ``PHIFLOW_PATH``) at it:

    .venv/bin/pip install --target /tmp/phi_site -c <(echo 'numpy<2') phiflow==3.4.0 'numpy<2'
    .venv/bin/python bench/fluids_phiflow.py --phiflow-path /tmp/phi_site --res 64 --steps 200

PhiFlow runs on its NumPy backend (its torch backend is unreliable on CPU). Both solvers run the
same shot: unit square, closed walls, one inflow disc (PhiFlow's own soft disc mask is used as
our source mask, so both emit exactly the same density), buoyancy 1, no vorticity confinement or
dissipation, dt = 1/24, Euler back-trace (PhiFlow's default integrator), the same order of
operations (advect, inflow, buoyancy, project), both in float64. The report gives the relative L2
difference of the density fields at several steps, for semi-Lagrangian and for MacCormack advection, next to
our own semi-Lagrangian-vs-MacCormack difference as the yardstick of a discretisation-level
change.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from mlvfx.fluids.reference import ReferenceSolver, SmokeConfig, Source

Array = npt.NDArray[Any]
DT = 1.0 / 24.0
RATE = 2.0
BUOYANCY = 1.0
# Variant -> (density scheme, velocity scheme). "mc_density" is PhiFlow's own smoke-plume example.
SCHEMES = {
    "semi_lagrangian": ("semi_lagrangian", "semi_lagrangian"),
    "mc_density": ("maccormack", "semi_lagrangian"),
    "maccormack": ("maccormack", "maccormack"),
}


def run_phiflow(
    res: int, steps: int, scheme: str, record: list[int]
) -> tuple[dict[int, Array], Array, float]:
    from phi import flow as pf  # type: ignore[import-not-found]

    pf.math.set_global_precision(64)  # PhiFlow's default float32 CG stalls near 1e-5
    domain: dict[str, Any] = {"x": res, "y": res, "bounds": pf.Box(x=1, y=1)}
    smoke = pf.CenteredGrid(0, pf.ZERO_GRADIENT, **domain)
    velocity = pf.StaggeredGrid(0, 0, **domain)
    disc = pf.Sphere(center=pf.tensor([0.5, 0.15], pf.channel(vector="x,y")), radius=0.08)
    inflow = pf.CenteredGrid(disc, pf.ZERO_GRADIENT, **domain)
    mask = inflow.values.numpy("y,x").astype(np.float64)
    schemes = {"maccormack": pf.advect.mac_cormack, "semi_lagrangian": pf.advect.semi_lagrangian}
    density_scheme, velocity_scheme = SCHEMES[scheme]
    solve = pf.Solve("CG", 1e-9, 1e-9, max_iterations=5000, rank_deficiency=1)
    out: dict[int, Array] = {}
    start = time.perf_counter()
    for i in range(1, steps + 1):
        smoke = schemes[density_scheme](smoke, velocity, DT) + inflow * (RATE * DT)
        buoyancy = pf.resample(smoke * (0, BUOYANCY), to=velocity)
        velocity = schemes[velocity_scheme](velocity, velocity, DT) + buoyancy * DT
        velocity, _ = pf.fluid.make_incompressible(velocity, (), solve)
        if i in record:
            out[i] = smoke.values.numpy("y,x").astype(np.float64)
    return out, mask, (time.perf_counter() - start) / steps


def run_ours(
    res: int, steps: int, scheme: str, mask: Array, record: list[int]
) -> tuple[dict[int, Array], float]:
    cfg = SmokeConfig(
        shape=(res, res),
        dt=DT,
        advection=SCHEMES[scheme][0],  # type: ignore[arg-type]
        velocity_advection=SCHEMES[scheme][1],  # type: ignore[arg-type]
        rk_order=1,
        buoyancy=BUOYANCY,
        boundary="closed",
        device="cpu",
    )
    solver = ReferenceSolver(cfg)
    sources = solver.prepare_sources([Source(mask.astype(np.float32), RATE)])
    density, vel = solver.zeros()
    out: dict[int, Array] = {}
    start = time.perf_counter()
    for i in range(1, steps + 1):
        density, vel = solver.advance(density, vel, sources)
        if i in record:
            out[i] = density.cpu().numpy().copy()
    return out, (time.perf_counter() - start) / steps


def rel_l2(a: Array, b: Array) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def save_plot(path: Path, ours: dict[int, Array], theirs: dict[int, Array], steps: list[int]) -> None:
    import cv2

    rows = []
    for fields in (ours, theirs):
        tiles = []
        for s in steps:
            d = fields[s]
            img = np.clip(d / max(float(d.max()), 1e-9), 0, 1)[::-1]
            tiles.append((img * 255).astype(np.uint8))
            tiles.append(np.full((d.shape[0], 2), 128, np.uint8))
        rows.append(np.concatenate(tiles[:-1], axis=1))
    sep = np.full((2, rows[0].shape[1]), 128, np.uint8)
    img = np.concatenate([rows[0], sep, rows[1]], axis=0)
    scale = max(1, 256 // ours[steps[0]].shape[0])
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    tmp = path.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), img)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--phiflow-path", default=os.environ.get("PHIFLOW_PATH"))
    parser.add_argument("--plot", type=Path, default=None, help="write a side-by-side PNG here")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    if args.phiflow_path:
        sys.path.append(args.phiflow_path)  # appended: the project's numpy/scipy stay first
    if importlib.util.find_spec("phi") is None:
        print("PhiFlow is not importable; see the module docstring for how to install it.")
        return 2
    torch.set_num_threads(1)
    record = [s for s in (10, 25, 50, 100, 150, 200, 300, 400) if s <= args.steps]
    results: dict[str, Any] = {"res": args.res, "steps": args.steps, "record": record}
    fields: dict[str, dict[int, Array]] = {}
    for scheme in SCHEMES:
        theirs, mask, t_phi = run_phiflow(args.res, args.steps, scheme, record)
        ours, t_ours = run_ours(args.res, args.steps, scheme, mask, record)
        fields[f"ours_{scheme}"] = ours
        fields[f"phi_{scheme}"] = theirs
        results[scheme] = {
            "rel_l2": {s: rel_l2(ours[s], theirs[s]) for s in record},
            "mass_ratio": {s: float(ours[s].sum() / theirs[s].sum()) for s in record},
            "ms_per_step_ours": 1e3 * t_ours,
            "ms_per_step_phiflow": 1e3 * t_phi,
        }
    results["yardstick_ours_sl_vs_mc"] = {
        s: rel_l2(fields["ours_semi_lagrangian"][s], fields["ours_maccormack"][s]) for s in record
    }
    results["yardstick_phi_sl_vs_mc"] = {
        s: rel_l2(fields["phi_semi_lagrangian"][s], fields["phi_maccormack"][s]) for s in record
    }
    print(f"2D plume, {args.res}^2, closed box, dt=1/24, PhiFlow 3.4 (NumPy backend)")
    print("relative L2 of density, ours vs PhiFlow, per advection variant (density/velocity scheme),")
    print("and the SL-vs-MC difference within each solver as the yardstick")
    print(f"{'step':>6} {'SL/SL':>8} {'MC/SL':>8} {'MC/MC':>8} {'ours SL-MC':>11} {'phi SL-MC':>10}")
    for s in record:
        print(
            f"{s:>6} {results['semi_lagrangian']['rel_l2'][s]:>8.4f}"
            f" {results['mc_density']['rel_l2'][s]:>8.4f}"
            f" {results['maccormack']['rel_l2'][s]:>8.4f}"
            f" {results['yardstick_ours_sl_vs_mc'][s]:>11.4f} {results['yardstick_phi_sl_vs_mc'][s]:>10.4f}"
        )
    for scheme in SCHEMES:
        r = results[scheme]
        print(
            f"{scheme}: ms/step ours {r['ms_per_step_ours']:.1f}, PhiFlow {r['ms_per_step_phiflow']:.1f} "
            f"(ratio {r['ms_per_step_phiflow'] / r['ms_per_step_ours']:.1f}x); mass ours/phi at "
            f"{record[-1]}: {r['mass_ratio'][record[-1]]:.4f}"
        )
    if args.plot:
        shown: list[int] = [s for s in (50, 100, 200) if s in record] or record[-3:]
        save_plot(args.plot, fields["ours_mc_density"], fields["phi_mc_density"], shown)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
