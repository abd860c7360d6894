"""How faithfully the add-on's material wiring shades a known relief in Blender (Cycles, bpy 5.0).

A procedural height field (two domes, two ramps) gives mlvfx's classical normal map
(``height_to_normal``, relief 0.01 of the image, as Generate Material's default) and both are
written with ``write_material``. A 2-unit plane is lit by a low sun from +X, then from +Y, and
rendered with each wiring that ``addon/bridge.py`` makes, plus the two stacked wirings it made
before stop 26 (the normal map linked beside the displacement; a Bump fed by the normal map), on
the plane as it is and subdivided (simple, level 7, flat shaded). Each render is compared with the
analytic Lambert shading of the normals the normal map holds (``height_to_normal`` of the height):
the correlation, and the gain (the render's shading contrast over the analytic one; 1.0 = the
relief at that depth, 2.0 = twice as deep). The normal map alone, rendered in the same run, is
the baseline.

    HOME=$(mktemp -d) .venv/bin/python bench/blender_relief_wiring.py [--samples 8]

Takes about 10 seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from mlvfx.classical.maps import height_to_normal
from mlvfx.io import read_image
from mlvfx.ops.material import MaterialResult, write_material

ROOT = Path(__file__).resolve().parents[1]
N = 256
RELIEF = 0.01
ELEVATION = math.radians(25.0)
# name: (height mode, maps, stacked as before stop 26)
WIRINGS = {
    "normal map alone (None)": ("NONE", ("normal",), False),
    "Displacement (now: height only)": ("DISPLACEMENT", ("normal", "height"), False),
    "Displacement + normal map (before)": ("DISPLACEMENT", ("normal", "height"), True),
    "Bump (now: in place of the normal map)": ("BUMP", ("normal", "height"), False),
    "Bump on the normal map (before)": ("BUMP", ("normal", "height"), True),
}


def load_bridge() -> Any:
    spec = importlib.util.spec_from_file_location("mlvfx_addon_bridge", ROOT / "addon" / "bridge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def relief_field() -> np.ndarray:
    r, c = np.mgrid[0:N, 0:N].astype(np.float32)

    def dome(row: float, col: float, radius: float, amp: float) -> np.ndarray:
        d2 = ((r - row) ** 2 + (c - col) ** 2) / radius**2
        return amp * np.clip(1 - d2, 0, None) ** 1.5

    h = dome(60, 70, 40, 1.0) + dome(180, 190, 45, 0.8)
    h += np.where((r > 150) & (r < 240) & (c > 20) & (c < 110), (c - 20) / 90.0 * 0.6, 0)  # rises to +X
    h += np.where((r > 20) & (r < 110) & (c > 150) & (c < 240), (110 - r) / 90.0 * 0.6, 0)  # rises up
    return np.clip(h, 0, 1).astype(np.float32)


def scene(samples: int) -> tuple[Any, Any]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = samples
    sc.cycles.use_denoising = False
    sc.cycles.max_bounces = 0
    sc.render.resolution_x = sc.render.resolution_y = N
    sc.render.resolution_percentage = 100
    sc.view_settings.view_transform = "Standard"
    sc.render.image_settings.file_format = "OPEN_EXR"
    sc.render.image_settings.color_depth = "32"
    sc.world = bpy.data.worlds.new("dark")
    sc.world.use_nodes = True
    sc.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(cam)
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = 2.0
    cam.location = (0, 0, 5)
    sc.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sc.collection.objects.link(sun)
    sun.data.energy = 3.0
    sun.data.angle = 0.0
    return sc, sun


def plane(subdivide: bool) -> Any:
    for ob in list(bpy.data.objects):
        if ob.type == "MESH":
            bpy.data.objects.remove(ob)
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    ob = bpy.context.active_object
    if subdivide:
        mod = ob.modifiers.new("subdivide", "SUBSURF")
        mod.subdivision_type = "SIMPLE"
        mod.levels = mod.render_levels = 7
    return ob


def wire(bridge: Any, ob: Any, folder: Path, mode: str, maps: tuple[str, ...], stacked: bool) -> None:
    mat = bpy.data.materials.new("m")
    ob.data.materials.clear()
    ob.data.materials.append(mat)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.8, 0.8, 0.8, 1)
    bsdf.inputs["Specular IOR Level"].default_value = 0.0
    bsdf.inputs["Roughness"].default_value = 1.0
    files = {"normal": folder / "normal.png", "height": folder / "height.exr"}
    images = bridge.load_map_images({k: files[k] for k in maps}, "bench", pack=False)
    relief = bridge.relief_for(RELIEF, ob, mat)  # one texture repeat over the 2-unit plane
    created, _ = bridge.build_material_nodes(
        mat, images, source=None, normal_strength=1.0, height_mode=mode, relief=relief, label="bench"
    )
    if stacked:  # the wirings before stop 26, rebuilt from today's nodes
        links = mat.node_tree.links
        normal = created["normal_map"].outputs["Normal"]
        if mode == "BUMP":
            links.new(normal, created["bump"].inputs["Normal"])
        else:
            links.new(normal, bsdf.inputs["Normal"])


def render(sc: Any, sun: Any, axis: str, out: Path) -> np.ndarray:
    light = (math.cos(ELEVATION), 0.0, math.sin(ELEVATION))
    if axis == "y":
        light = (0.0, math.cos(ELEVATION), math.sin(ELEVATION))
    sun.rotation_euler = Vector(light).to_track_quat("Z", "Y").to_euler()
    sc.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    pixels, _ = read_image(out)
    return np.asarray(pixels[..., 0], np.float64)


def compare(img: np.ndarray, analytic: np.ndarray) -> tuple[float, float]:
    a, b = img - img.mean(), analytic - analytic.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())), float((a * b).sum() / (b * b).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (default 8)")
    args = ap.parse_args()
    bridge = load_bridge()
    work = Path(tempfile.mkdtemp(prefix="mlvfx-relief-"))
    height = relief_field()
    normal = height_to_normal(height, strength=RELIEF * N, convention="opengl", tileable=False)
    result = MaterialResult(
        maps={"normal": normal, "height": height},
        method="classical",
        normal_convention="opengl",
        tileable=False,
        relief_px=RELIEF * N,
    )
    write_material(result, work / "maps")
    sc, sun = scene(args.samples)
    inner = (slice(4, -4), slice(4, -4))
    print(f"{'wiring':40s} {'mesh':11s}  corr X / Y     gain X / Y")
    for subdivide in (False, True):
        flat: dict[str, np.ndarray] = {}
        ob = plane(subdivide)
        for axis in ("x", "y"):  # the unlit-relief level: a flat plane under the same sun
            flat[axis] = render(sc, sun, axis, work / f"flat_{axis}.exr")
        for name, (mode, maps, stacked) in WIRINGS.items():
            wire(bridge, ob, work / "maps", mode, maps, stacked)
            scores = []
            for axis in ("x", "y"):
                light = np.array(
                    [math.cos(ELEVATION), 0, math.sin(ELEVATION)]
                    if axis == "x"
                    else [0, math.cos(ELEVATION), math.sin(ELEVATION)]
                )
                analytic = np.clip(normal @ light, 0, None) / math.sin(ELEVATION) * flat[axis].mean()
                scores.append(compare(render(sc, sun, axis, work / "r.exr")[inner], analytic[inner]))
            mesh = "subdivided" if subdivide else "plain"
            print(
                f"{name:40s} {mesh:11s}  {scores[0][0]:.3f} / {scores[1][0]:.3f}  "
                f"{scores[0][1]:.2f} / {scores[1][1]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
