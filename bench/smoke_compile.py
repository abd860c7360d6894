"""2D surrogate speed with torch.compile on both sides (an experiment; nothing ships compiled).

Times, in one run, the 256² reference step (float64, as the benchmark's reference) and the
surrogate step plus its output upsampling (64² float32), each eager and under ``torch.compile``
of the whole step, and prints the speedup for eager-vs-eager and compiled-vs-compiled.

    .venv/bin/python bench/smoke_compile.py --weights runs/smoke2d_v4/smoke2d_v4.safetensors --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from conv_onednn import median_ms  # bench/ is the script's folder, so it is on sys.path

from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import SurrogateSolver, surrogate_from_state
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    sc = make_scenario("plume", 2, 256)
    ref = ReferenceSolver(sc.config, sc.obstacles)
    ref_src = ref.prepare_sources(sc.sources)
    sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32")
    sur_src = sur.prepare_sources(sc.sources)

    def ref_step(d: torch.Tensor, v: Any) -> Any:
        return ref.advance(d, v, ref_src)

    def sur_step(d: torch.Tensor, v: Any) -> Any:
        d, v = sur.advance(d, v, sur_src)
        return d, v, sur.output_density(d, v, sur_src)

    rows = {}
    with torch.no_grad():
        for name, step, zeros in (
            ("reference", ref_step, ref.zeros),
            ("surrogate", sur_step, sur.solver.zeros),
        ):
            state = zeros()
            for _ in range(20):
                state = step(*state[:2])
            eager = median_ms(lambda f=step, s=state: f(*s[:2]), args.repeats)
            compiled_fn = torch.compile(step, dynamic=False)
            t = time.perf_counter()
            compiled_fn(*state[:2])
            build = time.perf_counter() - t
            compiled = median_ms(lambda f=compiled_fn, s=state: f(*s[:2]), args.repeats)
            same = step(*state[:2])[0]
            diff = float((compiled_fn(*state[:2])[0] - same).abs().max() / same.abs().max().clamp(min=1e-30))
            rows[name] = (eager, compiled, build, diff)
    print(f"threads {args.threads}, weights {args.weights.name}")
    print("| step | eager ms | compiled ms | build s | compiled vs eager, max rel. diff |")
    print("|---|---:|---:|---:|---:|")
    for name, (eager, compiled, build, diff) in rows.items():
        print(f"| {name} | {eager:.2f} | {compiled:.2f} | {build:.0f} | {diff:.1e} |")
    r, s = rows["reference"], rows["surrogate"]
    print(f"\nspeedup eager/eager {r[0] / s[0]:.2f}x; compiled/compiled {r[1] / s[1]:.2f}x")


if __name__ == "__main__":
    main()
