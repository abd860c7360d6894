"""How predictable is the 2D reference at t = 50/100/200? A floor for any deterministic surrogate.

Issue 7 asks for a surrogate whose density error at t = 100 is <= 0.75x coarse-only's. This script
asks how much of that error any one trajectory prediction must make, because the reference itself
amplifies small differences. On the benchmark's held-out shots (seeds 5000-5003 by default, 256²,
open top), every row below is scored against the unperturbed float64 reference, with the same
relative L2 as ``mlvfx smoke bench``:

* **coarse only / coarse + bicubic**: the 64² solver (float32), as in the benchmark. The ratios
  in the last columns are against coarse only, measured in this run.
* **reference, float32**: the same solver in single precision. The only difference is rounding.
* **reference, inflow x (1 + eps)**: the source's rate changed by eps (1e-6, 1e-3, 1e-2).
* **reference at 128², bicubic x2**: the same solver at half the resolution, a far better coarse
  model than the surrogate's 64² grid.
* **restricted reference, bicubic x4**: the reference averaged to 64² at every step and upsampled
  back. No dynamics error at all: the cost of representing the state on the surrogate's grid.
* **ensemble mean**: the mean of ``--members`` runs with the inflow changed by eps_k ~ N(0, 1e-3).
  Under that uncertainty it approximates the best L2 prediction a deterministic model can make (the
  conditional mean); it is blurrier than any member.

    .venv/bin/python bench/smoke_predictability.py --shots 4 --members 8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from mlvfx.fluids.bench import BenchSpec, _upsample, rel_l2
from mlvfx.fluids.reference import ReferenceSolver, Source
from mlvfx.fluids.scenarios import Scenario, make_scenario
from mlvfx.fluids.surrogate import coarse_config, restrict_density, restrict_mask

MARKS = (50, 100, 200)


def trajectory(
    sc: Scenario,
    steps: int,
    *,
    factor: int = 1,
    dtype: str | None = None,
    rate_scale: float = 1.0,
) -> dict[int, torch.Tensor]:
    """Density at each mark (float64, at the solver's own resolution)."""
    cfg = sc.config if factor == 1 else coarse_config(sc.config, factor)
    if dtype is not None:
        cfg = replace(cfg, dtype=dtype)
    obstacles = sc.obstacles
    if factor > 1 and obstacles is not None:
        obstacles = restrict_mask(obstacles.astype(np.float64), factor) >= 0.5
    solver = ReferenceSolver(cfg, obstacles)
    sources = [
        Source(restrict_mask(s.mask, factor) if factor > 1 else s.mask, s.rate * rate_scale, s.velocity)
        for s in sc.sources
    ]
    prepared = solver.prepare_sources(sources)
    state = solver.zeros()
    out: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for i in range(1, steps + 1):
            state = solver.advance(*state, prepared)
            if i in MARKS:
                out[i] = state[0].double().clone()
    return out


def up(d: dict[int, torch.Tensor], factor: int, mode: str) -> dict[int, torch.Tensor]:
    return {t: _upsample(v, factor, mode) for t, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--seed", type=int, default=BenchSpec.seed)
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    families = BenchSpec.families
    steps = max(MARKS)
    rows: dict[str, dict[int, list[float]]] = {}

    def add(name: str, pred: dict[int, torch.Tensor], truth: dict[int, torch.Tensor]) -> None:
        for t in MARKS:
            rows.setdefault(name, {}).setdefault(t, []).append(rel_l2(pred[t], truth[t]))

    t0 = time.perf_counter()
    for n in range(args.shots):
        seed = args.seed + n
        sc = make_scenario(families[seed % len(families)], 2, args.res, seed=seed)
        truth = trajectory(sc, steps)
        coarse = trajectory(sc, steps, factor=4, dtype="float32")
        add("coarse only (64², nearest)", up(coarse, 4, "nearest"), truth)
        add("coarse + bicubic (64²)", up(coarse, 4, "smooth"), truth)
        add("reference, float32", trajectory(sc, steps, dtype="float32"), truth)
        for eps in (1e-6, 1e-3, 1e-2):
            add(f"reference, inflow x (1 + {eps:g})", trajectory(sc, steps, rate_scale=1 + eps), truth)
        add("reference at 128², bicubic x2", up(trajectory(sc, steps, factor=2), 2, "smooth"), truth)
        add(
            "restricted reference, bicubic x4",
            {t: _upsample(restrict_density(v, 4), 4, "smooth") for t, v in truth.items()},
            truth,
        )
        rng = np.random.default_rng([seed, 7])
        members = [
            trajectory(sc, steps, rate_scale=1 + 1e-3 * rng.standard_normal()) for _ in range(args.members)
        ]
        add("one ensemble member (eps ~ N(0, 1e-3))", members[0], truth)
        mean = {t: torch.stack([m[t] for m in members]).mean(0) for t in MARKS}
        add(f"ensemble mean of {args.members} (eps ~ N(0, 1e-3))", mean, truth)
        print(f"shot {seed} ({sc.name}) done, {time.perf_counter() - t0:.0f} s", flush=True)

    base = {t: float(np.mean(rows["coarse only (64², nearest)"][t])) for t in MARKS}
    print()
    last = args.seed + args.shots - 1
    print(f"shots {args.seed}-{last}, {args.res}², open top; rel. L2 of density vs the float64 reference")
    print("| prediction | t=50 | t=100 | t=200 | / coarse only at t=50 / 100 / 200 |")
    print("|---|---|---|---|---|")
    for name, per in rows.items():
        vals = [float(np.mean(per[t])) for t in MARKS]
        ratios = " / ".join(f"{v / base[t]:.2f}x" for v, t in zip(vals, MARKS, strict=True))
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {ratios} |")
    print()
    print("per shot at t=100:")
    for name, per in rows.items():
        print(f"  {name}: " + " ".join(f"{v:.3f}" for v in per[100]))


if __name__ == "__main__":
    main()
