"""Render the README's smoke preview: a plume baked by the Blender extension, one frame in Cycles.

HOME=$(mktemp -d) .venv/bin/python docs/scripts/render_smoke_preview.py [--res 48] [--frames 40]
    [--out docs/addon_smoke_preview.png]
HOME=$(mktemp -d) .venv/bin/python docs/scripts/render_smoke_preview.py --model smoke3d --res 64 \
    --vorticity 0.1 --out docs/addon_smoke_surrogate_preview.png        # the zoo's learned surrogate
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from _preview import preview_scene, render_still

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="reference", help="reference, or smoke3d (the zoo's surrogate)")
    parser.add_argument("--res", type=int, default=48)
    parser.add_argument("--vorticity", type=float, default=0.3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "docs/addon_smoke_preview.png"))
    args = parser.parse_args()

    with preview_scene("smoke") as bpy:
        _build(bpy, args)
    print(args.out)
    return 0


def _build(bpy: Any, args: argparse.Namespace) -> None:
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.15, location=(0, 0, 0.2))
    emitter = bpy.context.active_object
    assert bpy.ops.mlvfx.add_smoke(emitter=emitter.name) == {"FINISHED"}
    domain = bpy.context.active_object
    s = domain.mlvfx_smoke
    s.resolution, s.frame_start, s.frame_end, s.vorticity = args.res, 1, args.frames, args.vorticity
    s.model = args.model
    start = time.perf_counter()
    assert bpy.ops.mlvfx.bake_smoke(domain=domain.name) == {"FINISHED"}
    print(f"bake ({args.model}): {args.frames} frames at {args.res} in {time.perf_counter() - start:.1f} s")
    emitter.hide_render = True
    scene.frame_set(args.frames)

    bpy.ops.object.camera_add(location=(0, -3.0, 0.95), rotation=(math.radians(90), 0, 0))
    scene.camera = bpy.context.object
    world = bpy.data.worlds.new("Dark")
    scene.world = world
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.02, 0.022, 0.03, 1.0)
    bpy.ops.object.light_add(type="SUN", rotation=(math.radians(50), 0, math.radians(-35)))
    bpy.context.object.data.energy = 5.0
    bpy.data.materials["mlvfx Smoke"].node_tree.nodes["Principled Volume"].inputs[
        "Density"
    ].default_value = 20.0
    render_still(bpy, args.out, args.samples, 384, 512)


if __name__ == "__main__":
    sys.exit(main())
