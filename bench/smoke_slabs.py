"""Where a 3D surrogate's smoke sits: density summed over slabs of the coarse grid, against the reference.

For one validation shot it rolls out the surrogate and the coarse solver alone from the empty
domain for ``--steps`` steps (the coarse solver's open walls as trained, ``border``, unless
``--open-inflow clean``) and prints, per slab along each axis, the summed coarse density next to
the 64³ reference's restricted to the coarse grid (from the ``bench/smoke_mass.py`` cache).

    .venv/bin/python bench/smoke_slabs.py --weights model_zoo/weights/smoke3d-0.2.0.safetensors \\
        --seed 1002 --steps 200 --cache refs/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smoke_mass import FAMILIES, reference_run

from mlvfx.fluids.scenarios import make_scenario
from mlvfx.fluids.surrogate import CorrectionNet, SurrogateSolver, restrict_density, surrogate_from_state
from mlvfx.zoo import load_state_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1002)
    ap.add_argument("--steps", type=int, choices=(50, 100, 200), default=200)
    ap.add_argument("--open-inflow", choices=("border", "clean"), default="border")
    ap.add_argument("--cache", type=Path, help="reference runs, shared with bench/smoke_mass.py")
    args = ap.parse_args()
    torch.set_num_threads(1)
    fam = FAMILIES[args.seed % 4]
    sc = make_scenario(fam, 3, 64, seed=args.seed)
    _, snaps = reference_run(args.seed, 400, 3, 64, [args.steps], args.cache)
    net, factor = surrogate_from_state(load_state_dict(args.weights), source=str(args.weights))
    ref = restrict_density(snaps[args.steps].double(), factor)
    rows = {"reference": ref}
    plain = CorrectionNet(3, width=2, depth=2, conditions=2)  # zero-initialised: the coarse solver
    for label, model in ((args.weights.stem, net), ("coarse only", plain)):
        sur = SurrogateSolver(
            sc.config, model.eval(), sc.obstacles, factor, "float32", open_inflow=args.open_inflow
        )
        src = sur.prepare_sources(sc.sources)
        state = sur.solver.zeros()
        with torch.no_grad():
            for _ in range(args.steps):
                state = sur.advance(*state, src)
        rows[label] = state[0].double()
    print(f"shot {args.seed} ({fam}), step {args.steps}, {args.open_inflow} inflow; wind {sc.config.wind}")
    for axis, name in ((2, "x"), (1, "y"), (0, "z")):
        others = tuple(a for a in range(3) if a != axis)
        n = ref.shape[axis]
        print(f"\n| {name} slab | " + " | ".join(str(i) for i in range(n)) + " |")
        print("|---|" + "---:|" * n)
        for label, d in rows.items():
            sums = np.asarray(d.sum(dim=others))
            print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in sums) + " |")


if __name__ == "__main__":
    main()
