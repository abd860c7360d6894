"""``torch.inference_mode`` against ``torch.no_grad`` for one smoke step, interleaved in one process.

The hosts' steppers (``reference.HostStepper.step``) and ``mlvfx smoke bench``'s timing run the
solvers under ``inference_mode``: no version counters or view tracking on the many small tensors a
step makes. This times the 256² reference step and the 2D surrogate step with its outputs (density
and velocity at 256²) under both, each round in a rotating order, medians over the rounds.

    .venv/bin/python bench/smoke_inference_mode.py --weights runs/smoke2d_v4/smoke2d_v4.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mlvfx.fluids.bench import BenchSpec, _surrogate_and_coarse
from mlvfx.fluids.reference import ReferenceSolver
from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import surrogate_from_state
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True, help="a 2D surrogate (.safetensors)")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    sc = make_scenario("plume", 2, args.res)
    sur, _ = _surrogate_and_coarse(sc, net, factor, BenchSpec(dims=2, res=args.res))
    src = sur.prepare_sources(sc.sources)
    ref = ReferenceSolver(sc.config, sc.obstacles)
    rsrc = ref.prepare_sources(sc.sources)
    with torch.no_grad():
        start_ref, start_sur = ref.zeros(), sur.solver.zeros()
        for _ in range(30):  # a plume under way, caches built
            start_ref = ref.advance(*start_ref, rsrc)
            start_sur = sur.advance(*start_sur, src)

    def step_ref(state: tuple) -> tuple:
        return ref.advance(*state, rsrc)

    def step_sur(state: tuple) -> tuple:
        state = sur.advance(*state, src)
        sur.outputs(*state, src)
        return state

    names = ["reference no_grad", "reference inference_mode", "surrogate no_grad", "surrogate inference_mode"]
    states = {n: (start_ref if n.startswith("reference") else start_sur) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % 4 :] + names[: r % 4]:
            context = torch.no_grad() if name.endswith("no_grad") else torch.inference_mode()
            step = step_ref if name.startswith("reference") else step_sur
            with context:
                t = time.perf_counter()
                states[name] = step(states[name])
                times[name].append(time.perf_counter() - t)
    ms = {n: 1e3 * float(np.median(v)) for n, v in times.items()}
    for n in names:
        print(f"{n:<26} {ms[n]:7.2f} ms/step")
    for mode in ("no_grad", "inference_mode"):
        ratio = ms[f"reference {mode}"] / ms[f"surrogate {mode}"]
        print(f"speedup under {mode}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
