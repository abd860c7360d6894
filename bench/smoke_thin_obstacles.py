"""How thick an obstacle must be for the learned 3D smoke model to hold smoke back.

A plume (an 8 x 6 x 8-voxel source at the bottom of a 32 x 64 x 32 grid, no inflow velocity) rises
into a horizontal slab that covers the middle half of the domain's width, for 60 steps of 1/24 s. The
reference solver at full resolution and the zoo's ``smoke3d`` surrogate (4x coarser, corrected)
run the same shot for slabs of several thicknesses; the reference is the baseline measured in the
same run. Printed: the density directly above the slab (over its middle), all density above the
slab's top, and what :func:`mlvfx.fluids.surrogate.thin_obstacle_warning` says.

    MLVFX_ZOO_MIRRORS=model_zoo .venv/bin/python bench/smoke_thin_obstacles.py   # about 1 minute
"""

from __future__ import annotations

import argparse

import numpy as np

from mlvfx.fluids.reference import SmokeConfig, Source, Stepper
from mlvfx.fluids.surrogate import load_stepper, thin_obstacle_warning


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--model", default="smoke3d")
    args = ap.parse_args()
    config = SmokeConfig(shape=(32, 64, 32), dt=1 / 24, boundary="open_top", dtype="float32")
    source = np.zeros(config.shape, np.float32)
    source[12:20, 2:8, 12:20] = 1.0
    print(f"{'slab (voxels)':>13}  {'solver':9}  {'directly above':>14}  {'all above':>9}  warning")
    low = 16  # every slab's underside at the same height: only the thickness differs
    for thickness in (4, 8, 12, 16):
        solid = np.zeros(config.shape, bool)
        solid[8:24, low : low + thickness, 8:24] = True
        top = low + thickness
        for name in ("reference", args.model):
            stepper = Stepper(config) if name == "reference" else load_stepper(name, config)
            density = velocity = None
            for _ in range(args.steps):
                density, velocity = stepper.step(density, velocity, [Source(source, rate=2.0)], solid)
            assert density is not None
            above = float(density[10:22, top:, 10:22].sum())
            everywhere = float(density[:, top:].sum())
            note = "" if name == "reference" else ("yes" if thin_obstacle_warning(solid) else "no")
            print(f"{thickness:>13}  {name:9}  {above:>14.2f}  {everywhere:>9.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
