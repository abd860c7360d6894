"""The learned smoke against the reference on the shot a host makes by default (Blender's Add
Learned Smoke), which is outside the training shots (a unit cube, inflow velocity, vorticity up
to 0.15): a domain twice as tall as wide, a still spherical emitter, vorticity 0.2.

Blender's *Add Learned Smoke* on an ico sphere of radius 0.2 makes a 1.2 x 1.2 x 2.4 domain; at
its default 64 voxels along the longest side that is a 32 x 64 x 32 grid (Y up) of 0.0375 units
(``--resolution 128``: 64 x 128 x 64, where *Auto* picks ``smoke3d_128``),
buoyancy 1, vorticity 0.2, emission 2 per second, 24 fps. The reference at full resolution is
the truth; coarse-only (the same solver 4x coarser, nearest upsampling, as ``mlvfx smoke
bench``) is the baseline measured in the same run. Printed per frame: the density's relative L2
error against the reference, each model's ratio to coarse-only, and the total density against
the reference's.

    MLVFX_ZOO_MIRRORS=model_zoo .venv/bin/python bench/smoke_host_default.py [--resolution 128]
"""

from __future__ import annotations

import argparse

import numpy as np

from mlvfx.fluids.reference import SmokeConfig, Source, Stepper
from mlvfx.fluids.surrogate import coarse_config, load_stepper, restrict_mask


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--vorticity", type=float, default=0.2, help="Blender's default 0.2")
    ap.add_argument("--models", nargs="+", default=["smoke3d", "smoke3d_128"])
    ap.add_argument("--resolution", type=int, default=64, help="voxels along Z, the panel's Resolution")
    args = ap.parse_args()
    if args.resolution % 8:
        ap.error("--resolution must be a multiple of 8 (the width, half of it, a multiple of 4)")
    voxel = 2.4 / args.resolution
    width = args.resolution // 2
    config = SmokeConfig(
        shape=(width, args.resolution, width),
        dt=1 / 24,
        domain_width=width * voxel,
        buoyancy=1.0,
        vorticity=args.vorticity,
        boundary="open_top",
        open_inflow="clean",
        dtype="float32",
    )
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * voxel for n in config.shape], indexing="ij")
    # the emitter's centre: 0.1 x width above the domain's floor plus its radius, mid-width
    emitter = ((x - 0.6) ** 2 + (y - 0.32) ** 2 + (z - 0.6) ** 2 < 0.2**2).astype(np.float32)
    coarse = coarse_config(config, 4)
    coarse_emitter = restrict_mask(emitter, 4).astype(np.float32)
    steppers = {"reference": Stepper(config), "coarse-only": Stepper(coarse)}
    steppers.update({m: load_stepper(m, config) for m in args.models})
    sources = {
        name: [Source(coarse_emitter if name == "coarse-only" else emitter, rate=2.0)] for name in steppers
    }
    states: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {n: (None, None) for n in steppers}
    marks = {24, 48, 96, args.frames}
    names = [n for n in steppers if n != "reference"]
    print(
        f"{'frame':>5}  " + "  ".join(f"{n + ' err (x coarse)':>26}" for n in names) + "  totals / reference"
    )
    for frame in range(1, args.frames + 1):
        for name, stepper in steppers.items():
            density, velocity = states[name]
            states[name] = stepper.step(density, velocity, sources[name])
        if frame in marks:
            truth = states["reference"][0]
            assert truth is not None
            out = {}
            for name in names:
                d = states[name][0]
                assert d is not None
                if name == "coarse-only":
                    d = np.kron(d, np.ones((4, 4, 4), np.float32))
                out[name] = (rel_l2(d, truth), float(d.sum()) / max(float(truth.sum()), 1e-12))
            base = out["coarse-only"][0]
            cells = "  ".join(f"{out[n][0]:>12.3f} ({out[n][0] / base:>5.2f}x)      " for n in names)
            totals = " ".join(f"{out[n][1]:.2f}" for n in names)
            print(f"{frame:>5}  {cells}  {totals}", flush=True)


if __name__ == "__main__":
    main()
