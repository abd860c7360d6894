"""Smoke benchmark: the reference solver's cost per step, and the coarse-grid baselines.

Timing (``--timing``): milliseconds per step of :class:`mlvfx.fluids.reference.ReferenceSolver`
on a canonical scenario at each size, after one untimed warm-up step (which also builds the
pressure solver: DCT bases, LU factorisation). The same run times the solver on a grid 4x
coarser per axis (the "coarse-only" baseline a Solver-in-the-Loop surrogate starts from) and
prints the ratio. Sizes are ``2d:N`` or ``3d:N``.

Accuracy (``--accuracy``, 2D): the canonical plume at N^2 (the reference) against the same
physical shot at (N/4)^2 upsampled to N^2, nearest ("coarse-only") and bicubic
("coarse+bicubic"), as density relative L2 at steps 50, 100 and 200, plus the reference's
divergence residual. These are the baselines the surrogate must beat (issue 7).

    .venv/bin/python bench/smoke.py --timing 2d:256 3d:64 3d:128 --accuracy 256

The machine's load average is printed with the numbers: on a shared box, timings are only
comparable within one run.

The surrogate benchmark of issue 7 (reference, coarse-only, coarse + bicubic and the learned
surrogate on held-out shots, all in one run) is ``mlvfx smoke bench``; this script runs it too,
with the same arguments after ``surrogate``:

    .venv/bin/python bench/smoke.py surrogate --dims 3 --res 64 --shots 3 --plot curves.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mlvfx.fluids.reference import ReferenceSolver, relative_divergence
from mlvfx.fluids.scenarios import make_scenario


def time_solver(scenario: str, dims: int, res: int, steps: int, dtype: str) -> dict[str, float]:
    """Mean and min ms/step over ``steps`` steps after one warm-up step; also setup time."""
    sc = make_scenario(scenario, dims, res, dtype=dtype)
    t0 = time.perf_counter()
    solver = ReferenceSolver(sc.config, sc.obstacles)
    sources = solver.prepare_sources(sc.sources)
    density, vel = solver.zeros()
    setup = time.perf_counter() - t0
    # Warm up on a developed flow so the timed steps are representative.
    density, vel = solver.advance(density, vel, sources)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        density, vel = solver.advance(density, vel, sources)
        times.append(time.perf_counter() - t)
    return {
        "ms_mean": 1e3 * sum(times) / len(times),
        "ms_min": 1e3 * min(times),
        "setup_ms": 1e3 * setup,
        "cg_iterations": float(solver.stats.cg_iterations),
    }


def upsample(density: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    x = density[None, None]
    if mode == "nearest":
        return F.interpolate(x, scale_factor=factor, mode="nearest")[0, 0]
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)[0, 0].clamp(min=0.0)


def accuracy(res: int, factor: int = 4, checkpoints: tuple[int, ...] = (50, 100, 200)) -> dict[str, Any]:
    """Coarse-grid baselines against the reference on the canonical 2D plume."""
    fine_sc = make_scenario("plume", 2, res)
    coarse_sc = make_scenario("plume", 2, res // factor)
    from mlvfx.fluids.scenarios import simulate

    last = max(checkpoints)
    fine = {}
    divs = {}
    t = time.perf_counter()
    for step, density, vel in simulate(fine_sc, last):
        if step in checkpoints:
            fine[step] = density.clone()
            divs[step] = relative_divergence(vel)
    fine_s = time.perf_counter() - t
    coarse = {}
    t = time.perf_counter()
    for step, density, _ in simulate(coarse_sc, last):
        if step in checkpoints:
            coarse[step] = density.clone()
    coarse_s = time.perf_counter() - t
    out: dict[str, Any] = {"res": res, "coarse_res": res // factor, "steps": list(checkpoints)}
    for mode, name in (("nearest", "coarse_only"), ("bicubic", "coarse_bicubic")):
        out[name] = {
            s: float(
                torch.linalg.vector_norm(upsample(coarse[s], factor, mode) - fine[s])
                / torch.linalg.vector_norm(fine[s])
            )
            for s in checkpoints
        }
    out["reference_divergence"] = divs
    out["reference_mass"] = {s: float(fine[s].sum()) / res**2 for s in checkpoints}
    out["coarse_mass"] = {s: float(coarse[s].sum()) / (res // factor) ** 2 for s in checkpoints}
    out["ms_per_step_reference"] = 1e3 * fine_s / last
    out["ms_per_step_coarse"] = 1e3 * coarse_s / last
    return out


def conservation(res: int = 48, steps: int = 200) -> dict[str, dict[str, float]]:
    """Total-density drift in a closed box without sources or dissipation, per advection scheme.

    Two shots: a Gaussian blob carried by a gentle, discretely divergence-free vortex (the
    setting of the unit test), and the same blob rising by buoyancy into the lid (a stagnation
    flow, where semi-Lagrangian schemes are least conservative).
    """
    import math

    from mlvfx.fluids.reference import SmokeConfig

    out: dict[str, dict[str, float]] = {}
    centres = (torch.arange(res, dtype=torch.float64) + 0.5) / res
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    blob = torch.exp(-((x - 0.5) ** 2 + (y - 0.3) ** 2) / (2 * 0.08**2))
    nodes = torch.arange(res + 1, dtype=torch.float64) / res
    yn, xn = torch.meshgrid(nodes, nodes, indexing="ij")
    psi = 0.2 / math.pi * torch.sin(math.pi * xn) * torch.sin(math.pi * yn)
    for shot in ("vortex", "buoyant"):
        for scheme in ("semi_lagrangian", "maccormack", "conservative"):
            cfg = SmokeConfig(
                shape=(res, res),
                advection=scheme,
                buoyancy=0.0 if shot == "vortex" else 1.0,
                boundary="closed",
            )
            solver = ReferenceSolver(cfg)
            density, vel = blob.clone(), solver.zeros()[1]
            if shot == "vortex":
                vel = [(psi[1:, :] - psi[:-1, :]) * res, -(psi[:, 1:] - psi[:, :-1]) * res]
            m0 = float(density.sum())
            worst = 0.0
            for _ in range(steps):
                density, vel = solver.advance(density, vel)
                worst = max(worst, abs(float(density.sum()) / m0 - 1.0))
            out[f"{shot}/{scheme}"] = {"final": float(density.sum()) / m0 - 1.0, "max_abs": worst}
    return out


def projection_table() -> list[dict[str, Any]]:
    """Divergence left by each pressure solver on random face velocities (max ratio after/before)."""
    from mlvfx.fluids.grid import Walls, divergence, face_shape
    from mlvfx.fluids.pressure import PCGSolver, Projection, make_solver

    rows = []
    cases = [
        ((256, 256), False, "dct"),
        ((256, 256), True, "lu"),
        ((256, 256), True, "cg"),
        ((64, 64, 64), False, "dct"),
        ((64, 64, 64), True, "cg"),
    ]
    gen = torch.Generator().manual_seed(0)
    for shape, obstacle, kind in cases:
        for boundary in ("closed", "open_top"):
            walls = Walls.from_spec(boundary, len(shape))
            solid = torch.zeros(shape, dtype=torch.bool)
            if obstacle:
                solid[tuple(slice(n // 3, n // 2) for n in shape)] = True
            t = time.perf_counter()
            solver, fixed = make_solver(kind, solid, walls, torch.float64)
            setup = time.perf_counter() - t
            project = Projection(solver, fixed, walls, solid)
            vel = [
                torch.randn(face_shape(shape, c), generator=gen, dtype=torch.float64).masked_fill(
                    fixed[c], 0.0
                )
                for c in range(len(shape))
            ]
            before = float(divergence(vel).masked_fill(solid, 0.0).abs().max())
            t = time.perf_counter()
            out = project(vel)
            solve = time.perf_counter() - t
            after = float(divergence(out).masked_fill(solid, 0.0).abs().max())
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "boundary": boundary,
                    "solver": kind,
                    "relative_divergence": after / before,
                    "setup_ms": 1e3 * setup,
                    "solve_ms": 1e3 * solve,
                    "cg_iterations": solver.last_iterations if isinstance(solver, PCGSolver) else 0,
                }
            )
    return rows


def plot_scenarios(path: Path, res: int = 128, steps: int = 120) -> None:
    """Render the four canonical 2D scenarios after ``steps`` steps side by side (PNG, atomic)."""
    import cv2
    import numpy as np

    from mlvfx.fluids.scenarios import SCENARIOS, simulate

    tiles = []
    for name in SCENARIOS:
        sc = make_scenario(name, 2, res)
        for _, density, _ in simulate(sc, steps, every=steps):
            d = density.cpu().numpy()
        img = np.clip(d / max(float(d.max()), 1e-9), 0.0, 1.0)
        rgb = np.stack([img, img, img], axis=-1)
        if sc.obstacles is not None:
            rgb[sc.obstacles] = (0.2, 0.35, 0.8)
        tiles.append((rgb[::-1] * 255).astype(np.uint8))
        tiles.append(np.full((res, 3, 3), 255, np.uint8))
    sheet = np.concatenate(tiles[:-1], axis=1)
    tmp = path.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), sheet[..., ::-1])
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timing", nargs="*", default=[], help="sizes such as 2d:256 3d:64 3d:128")
    parser.add_argument("--scenarios", nargs="+", default=["plume", "obstacle"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per size (after one warm-up)")
    parser.add_argument(
        "--accuracy", type=int, default=0, help="2D resolution for the accuracy table (0: skip)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the four canonical 2D scenarios")
    parser.add_argument("--projection", action="store_true", help="pressure-solver accuracy table")
    parser.add_argument("--conservation", action="store_true", help="closed-box mass drift table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": "cpu",
        "timing": [],
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    if args.timing:
        print(
            f"{'size':>10} {'scenario':>9} {'dtype':>8} {'ms/step':>9} {'min':>9} {'setup ms':>9} "
            f"{'coarse ms':>10} {'ref/coarse':>10} {'cg it':>6}"
        )
    for spec in args.timing:
        kind, _, n = spec.partition(":")
        dims = {"2d": 2, "3d": 3}[kind.lower()]
        res = int(n)
        for scenario in args.scenarios:
            for dtype in args.dtypes:
                steps = args.steps if res**dims <= 64**3 else max(2, args.steps // 2)
                ref = time_solver(scenario, dims, res, steps, dtype)
                coarse = time_solver(scenario, dims, res // 4, max(steps, 10), dtype)
                row = {"size": spec, "scenario": scenario, "dtype": dtype, "reference": ref, "coarse": coarse}
                report["timing"].append(row)
                print(
                    f"{spec:>10} {scenario:>9} {dtype:>8} {ref['ms_mean']:>9.1f} {ref['ms_min']:>9.1f} "
                    f"{ref['setup_ms']:>9.1f} {coarse['ms_mean']:>10.2f} "
                    f"{ref['ms_mean'] / coarse['ms_mean']:>10.1f} {int(ref['cg_iterations']):>6}",
                    flush=True,
                )
    if args.accuracy:
        acc = accuracy(args.accuracy)
        report["accuracy"] = acc
        print(
            f"\n2D plume, reference {acc['res']}^2 vs coarse {acc['coarse_res']}^2 upsampled x4 "
            "(density relative L2)"
        )
        print(f"{'step':>6} {'coarse-only':>12} {'coarse+bicubic':>15} {'ref divergence':>15}")
        for s in acc["steps"]:
            print(
                f"{s:>6} {acc['coarse_only'][s]:>12.4f} {acc['coarse_bicubic'][s]:>15.4f} "
                f"{acc['reference_divergence'][s]:>15.2e}"
            )
        print(
            f"ms/step over the run: reference {acc['ms_per_step_reference']:.1f}, "
            f"coarse {acc['ms_per_step_coarse']:.1f}"
        )
    if args.projection:
        rows = projection_table()
        report["projection"] = rows
        print("\npressure projection of random face velocities (float64): max|div after| / max|div before|")
        print(
            f"{'grid':>10} {'walls':>9} {'solver':>6} {'rel. div':>9} {'setup ms':>9} {'solve ms':>9}"
            f" {'cg it':>6}"
        )
        for r in rows:
            print(
                f"{r['shape']:>10} {r['boundary']:>9} {r['solver']:>6} {r['relative_divergence']:>9.1e} "
                f"{r['setup_ms']:>9.1f} {r['solve_ms']:>9.1f} {r['cg_iterations']:>6}"
            )
    if args.conservation:
        cons = conservation()
        report["conservation"] = cons
        print("\nclosed box 48^2, no sources/dissipation, 200 steps: total density drift")
        for key, value in cons.items():
            print(f"{key:>28}: final {100 * value['final']:+.2f}%, max |drift| {100 * value['max_abs']:.2f}%")
    if args.plot:
        plot_scenarios(args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def surrogate(argv: list[str]) -> int:
    """``mlvfx smoke bench`` with ``argv`` (the CLI's own parser, errors and exit codes)."""
    from mlvfx.cli import main as cli_main

    return cli_main(["smoke", "bench", *argv])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "surrogate":
        raise SystemExit(surrogate(sys.argv[2:]))
    raise SystemExit(main())
