"""Where a 3D surrogate's long-run total density comes from (diagnostics for issue 7's stability target).

Part 1 (``--train-data``): the surrogate rolled out from the empty domain on a recipe's own
training shots, total density against the shot's restricted reference at steps 50 and 100.
This is training data: it shows whether the model fits the totals inside its training horizon,
not how it generalises.

Part 2 (``--parts``): the validation shots (seeds from 1000), run for ``--steps`` steps with the
whole correction, with its density part only and with its velocity part only; total density at
the end over the reference's (the reference totals come from ``bench/smoke_mass.py --cache``, or
are computed here and cached the same way).

    .venv/bin/python bench/smoke_drift.py --weights model_zoo/weights/smoke3d-0.2.0.safetensors \
        --recipe model_zoo/recipes/smoke3d_v2.json --train-data DATA --parts --cache /tmp/smoke_refs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES, reference_run

from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import SurrogateSolver, surrogate_from_state
from mlvfx.train.smoke import load_shots, load_smoke_recipe
from mlvfx.zoo import load_state_dict


def train_totals(path: Path, recipe_path: Path, data: Path) -> None:
    recipe = load_smoke_recipe(recipe_path)
    net, factor = surrogate_from_state(load_state_dict(path), source=str(path))
    cells = []
    for shot in load_shots(data, recipe, "train"):
        sc = shot.scenario
        sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32")
        src = sur.prepare_sources(sc.sources)
        state, ratios = sur.solver.zeros(), []
        with torch.no_grad():
            for i in range(1, 101):
                state = sur.advance(*state, src)
                if i in (50, 100):
                    ratios.append(float(state[0].sum()) / float(shot.density[i].sum()))
        cells.append(f"{shot.seed} {sc.name}: {ratios[0]:.2f} / {ratios[1]:.2f}")
    print(f"| {path.stem} | " + " | ".join(cells) + " |")


def parts(path: Path, steps: int, res: int, shots: int, cache: Path | None) -> None:
    net, factor = surrogate_from_state(load_state_dict(path), source=str(path))
    row = []
    for seed in range(1000, 1000 + shots):
        fam = FAMILIES[seed % 4]
        totals, _ = reference_run(seed, steps, 3, res, [], cache)
        sc = make_scenario(fam, 3, res, seed=seed)
        out = []
        for mode in ("both", "density", "velocity"):
            sur = SurrogateSolver(sc.config, net, sc.obstacles, factor, dtype="float32")
            real = sur.correct

            def correct(density, vel, sources=(), budget=None, mode=mode, real=real):  # type: ignore[no-untyped-def]
                # The model's own correction; then one half of it is dropped again (the coarse
                # step's velocity is already projected, its density already non-negative).
                d, v = real(density, vel, sources, budget)
                return (d, vel) if mode == "density" else (density, v) if mode == "velocity" else (d, v)

            sur.correct = correct  # type: ignore[method-assign]
            src = sur.prepare_sources(sc.sources)
            state = sur.solver.zeros()
            with torch.no_grad():
                for _ in range(steps):
                    state = sur.advance(*state, src)
            out.append(float(state[0].sum()) * factor**3 / totals[-1])
        row.append(f"{seed} {fam}: " + " / ".join(f"{x:.2f}" for x in out))
    print(f"| {path.stem} | " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    ap.add_argument("--recipe", type=Path, help="the recipe whose training shots part 1 uses")
    ap.add_argument("--train-data", type=Path, help="that recipe's data folder (part 1)")
    ap.add_argument("--parts", action="store_true", help="part 2: which half of the correction drifts")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="reference runs, shared with bench/smoke_mass.py")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.train_data is not None:
        if args.recipe is None:
            raise SystemExit("--train-data needs --recipe")
        print("## training shots: total density / reference at steps 50 / 100")
        for w in args.weights:
            train_totals(w, args.recipe, args.train_data)
    if args.parts:
        print(
            f"\n## validation shots: total / reference at step {args.steps}: whole / density / velocity part"
        )
        for w in args.weights:
            parts(w, args.steps, args.res, args.shots, args.cache)


if __name__ == "__main__":
    main()
