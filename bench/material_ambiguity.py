"""How much does a photo say about the sign of its relief? The convex/concave ambiguity, rendered.

Turn every light of a scene half a turn about the vertical (sun, area light, HDRI) and invert the
relief (height -> -height). With the camera looking straight down, every local shading term is
unchanged: n.L, the view direction, the specular lobe. Only global light transport (cast shadows,
occlusion of the sky, interreflection) can tell the two scenes apart. A model that has to infer
the light direction from the photo therefore cannot know whether a bump is a bump or a dent unless
those global cues, or a prior of the family (stones are domes, mortar lies low), decide it.

For each spec the factory renders three photos:

* **original**;
* **flipped**: lights turned by 180 degrees and relief inverted (opposite normals' slopes);
* **turned**: lights turned by 180 degrees, relief unchanged (a control: how much the lighting
  alone changes the photo).

and prints, per family, the mean relative L1 difference of ``flipped`` and ``turned`` against the
original (each photo divided by its own mean first, to remove the exposure), and their ratio. A
ratio near 0 means the photo pins down the relief only up to its sign; the mean angle between the
original's and the flipped normals shows what the wrong sign would cost.

Usage (needs bpy; about 2 s per render at 256², 16 samples):
    HOME=$(mktemp -d) .venv/bin/python bench/material_ambiguity.py --per-family 6 \\
        --families rocky cobblestones bark pebbles tiles dunes
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.data import materials

Float = npt.NDArray[np.float32]


def turned(light: dict[str, Any]) -> dict[str, Any]:
    """The same lighting turned half a turn about the vertical."""
    out = dict(light)
    out["hdri_rotation"] = float(light["hdri_rotation"]) + math.pi
    out["sun"] = dict(light["sun"], azimuth=float(light["sun"]["azimuth"]) + math.pi)
    if light.get("area"):
        out["area"] = dict(light["area"], azimuth=float(light["area"]["azimuth"]) + math.pi)
    return out


def rel_l1(a: Float, b: Float, block: int = 4) -> float:
    """Mean |a - b| of the two photos, each over its own mean, on ``block``² averages (render
    noise at 16 samples would otherwise dominate both differences)."""
    h, w = a.shape[0] // block * block, a.shape[1] // block * block

    def pooled(x: Float) -> Float:
        y = x[:h, :w].mean(axis=-1).reshape(h // block, block, w // block, block).mean(axis=(1, 3))
        return np.asarray(y / max(float(y.mean()), 1e-6), np.float32)

    return float(np.abs(pooled(a) - pooled(b)).mean())


def angle_deg(a: Float, b: Float) -> float:
    return float(np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0))).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["rocky", "cobblestones", "bark", "pebbles", "tiles"])
    ap.add_argument("--per-family", type=int, default=6)
    ap.add_argument("--seed", type=int, default=424242, help="spec seed (not a training seed of any recipe)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--lighting", default="studio", choices=materials.LIGHTING_MODES)
    args = ap.parse_args()

    t0 = time.perf_counter()
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for fam in args.families:
        for i in range(args.per_family):
            spec = materials.make_spec(
                args.seed,
                i,
                size=args.size,
                samples=args.samples,
                families=[fam],
                lighting=args.lighting,
            )
            light = turned(spec.lighting)
            orig = materials.render_maps(spec)
            flip = materials.render_maps(dataclasses.replace(spec, relief=-spec.relief, lighting=light))
            turn = materials.render_maps(dataclasses.replace(spec, lighting=light))
            rows.setdefault(fam, []).append(
                (rel_l1(orig.lit, flip.lit), rel_l1(orig.lit, turn.lit), angle_deg(orig.normal, flip.normal))
            )
    print(f"{sum(len(v) for v in rows.values())} specs, seed {args.seed}, lighting {args.lighting}, ", end="")
    print(f"{args.size}², {args.samples} spp, {time.perf_counter() - t0:.0f} s")
    print("\n| family | n | flipped vs original | turned vs original | ratio | normals flipped vs original |")
    print("|---|---:|---:|---:|---:|---:|")
    for fam, v in rows.items():
        a = np.array(v)
        f, t, ang = a.mean(axis=0)
        print(f"| {fam} | {len(a)} | {f:.3f} | {t:.3f} | {f / max(t, 1e-9):.2f} | {ang:.1f}° |")


if __name__ == "__main__":
    main()
