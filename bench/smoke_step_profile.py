"""Where a coarse 2D smoke step's time goes (64², float32), and what torch.compile would give.

Times the pieces of ``ReferenceSolver.advance`` on its own (median of repeated calls) and the
bicubic upsampling of the density to the 256² output, counts the
torch operations of one step with the profiler, and with ``--compile`` times ``torch.compile`` of
the whole step at 64² (float32) and at the 256² reference (float64) in the same run.

    .venv/bin/python bench/smoke_step_profile.py --threads 1 [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import replace

import torch
from conv_onednn import median_ms  # bench/ is the script's folder, so it is on sys.path
from torch.profiler import ProfilerActivity, profile

from mlvfx.fluids.grid import comp_dim
from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import prolong_density


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sc = make_scenario("plume", 2, 64)
    s = ReferenceSolver(replace(sc.config, dtype="float32"))
    src = s.prepare_sources(sc.sources)
    state = s.zeros()
    with torch.no_grad():
        for _ in range(40):
            state = s.advance(*state, src)
        d, v = state
        mc = s._traces(-1, v, "maccormack")
        sl = {g: s._traces(g, v, "semi_lagrangian") for g in range(2)}
        pieces = {
            "whole step": lambda: s.advance(d, v, src),
            "traces: velocity grids (2)": lambda: [s._traces(g, v, "semi_lagrangian") for g in range(2)],
            "traces: density, back and forth": lambda: s._traces(-1, v, "maccormack"),
            "MacCormack density advection": lambda: s._advect(d, None, mc),
            "velocity advection": lambda: [s._advect(v[c], comp_dim(c, 2), sl[c]) for c in range(2)],
            "vorticity confinement": lambda: s._vorticity_force(v),
            "pressure projection": lambda: s.projection(v),
            "output 64² → 256², F.interpolate bicubic (before)": lambda: torch.nn.functional.interpolate(
                d[None, None], scale_factor=4, mode="bicubic", align_corners=False
            )[0, 0].clamp(min=0.0),
            "output 64² → 256², prolong_density (matrix form)": lambda: prolong_density(d, 4),
        }
        print(f"threads {args.threads}; 64² plume, float32, after 40 steps")
        print("| piece | ms |")
        print("|---|---:|")
        for name, fn in pieces.items():
            print(f"| {name} | {median_ms(fn, args.repeats):.3f} |")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            s.advance(d, v, src)
    ops = [e for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    conversions = Counter(e.name for e in prof.events() if e.name == "aten::to")
    print(
        f"\ntop-level torch operations in one step: {len(ops)}; "
        f"aten::to (scalar conversions): {conversions['aten::to']}"
    )
    if not args.compile:
        return
    print("\n| torch.compile | eager ms | compiled ms | build s |")
    print("|---|---:|---:|---:|")
    big = make_scenario("plume", 2, 256)
    for label, scn, cfg in (
        ("64² float32", sc, replace(sc.config, dtype="float32")),
        ("256² float64", big, big.config),
    ):
        solver = ReferenceSolver(cfg)
        prepared = solver.prepare_sources(scn.sources)
        with torch.no_grad():
            st = solver.zeros()
            for _ in range(20):
                st = solver.advance(*st, prepared)
            eager = median_ms(lambda so=solver, x=st, p=prepared: so.advance(*x, p), 50)
            fn = torch.compile(solver.advance, dynamic=False)
            t = time.perf_counter()
            fn(*st, prepared)
            build = time.perf_counter() - t
            compiled = median_ms(lambda f=fn, x=st, p=prepared: f(*x, p), 50)
        print(f"| {label} | {eager:.2f} | {compiled:.2f} | {build:.0f} |")


if __name__ == "__main__":
    main()
