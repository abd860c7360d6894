"""The Blender bake's emitter voxelization: the numpy ray-parity path for closed meshes against the
BVH path (a Python call per voxel), on the same meshes in one run.

Builds the extension, installs it into bpy under a temporary HOME and voxelizes a sphere, a turned
cube, a torus, slabs thin in Z and in X (a cube scaled to 2 %), a thin cylinder, two overlapping
cubes joined into one mesh and an open plane at 32³, 64³ and 128³ of a 2-unit domain: voxels in,
seconds, and the overlap of the two masks (intersection over union). Then a small cube at 256³ and
512³: the whole domain's grids against the box around the mesh (what ``_voxelize`` does since stop
26), seconds and whether the masks are equal.

    .venv/bin/python bench/addon_voxelize.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(zip_path: str) -> None:
    import bpy
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "bpy_scripts"))
    sys.argv = ["addon_voxelize", zip_path, tempfile.mkdtemp()]
    from _extension import MODULE, install

    install()
    smoke = sys.modules[MODULE + ".smoke"]
    bpy.ops.wm.read_homefile(use_empty=True)
    shapes = {}
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.5, location=(0.03, -0.02, 0.01))
    shapes["sphere"] = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.7, location=(0.1, 0.0, -0.1), rotation=(0.3, 0.5, 0.2))
    shapes["turned cube"] = bpy.context.active_object
    bpy.ops.mesh.primitive_torus_add(major_radius=0.5, minor_radius=0.15)
    shapes["torus"] = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.7, scale=(1.0, 1.0, 0.02))
    shapes["thin slab"] = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.7, scale=(0.02, 1.0, 1.0), location=(0.021, 0.0, 0.0))
    shapes["slab thin in X"] = bpy.context.active_object
    bpy.ops.mesh.primitive_cylinder_add(radius=0.02, depth=0.8, location=(0.031, 0.031, 0.0))
    shapes["thin cylinder"] = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.8, location=(-0.2, 0.0, 0.0))
    left = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.8, location=(0.2, 0.0, 0.0))
    right = bpy.context.active_object
    bpy.ops.object.select_all(action="DESELECT")
    left.select_set(True)
    right.select_set(True)
    bpy.context.view_layer.objects.active = left
    with bpy.context.temp_override(active_object=left, selected_editable_objects=[left, right]):
        bpy.ops.object.join()
    shapes["two cubes joined (overlap)"] = left
    bpy.ops.mesh.primitive_plane_add(size=0.8, location=(0, 0, -0.3))
    shapes["plane (open)"] = bpy.context.active_object
    depsgraph = bpy.context.evaluated_depsgraph_get()
    print("| mesh | grid | voxels (numpy / BVH) | s (numpy / BVH) | speed-up | IoU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, obj in shapes.items():
        for res in (32, 64, 128):
            voxel, origin, dims = 2.0 / res, np.array([-1.0, -1.0, -1.0]), (res, res, res)
            t = time.perf_counter()
            new = smoke._voxelize(obj, origin, voxel, dims)
            tn = time.perf_counter() - t
            t = time.perf_counter()
            old = smoke._voxelize_bvh(obj, origin, voxel, dims, depsgraph)
            to = time.perf_counter() - t
            union = float(np.maximum(new, old).sum())
            iou = float((new * old).sum()) / union if union else float("nan")
            print(
                f"| {name} | {res}³ | {int(new.sum())} / {int(old.sum())} | {tn:.3f} / {to:.3f} | "
                f"{to / tn:.0f}x | {iou:.3f} |",
                flush=True,
            )
    # A small closed mesh in a large domain: the whole grid's crossing counts against its box only.
    bpy.ops.mesh.primitive_cube_add(size=0.2, location=(0.3, 0.2, 0.4))
    cube = bpy.context.active_object
    depsgraph = bpy.context.evaluated_depsgraph_get()
    closed = smoke._closed_triangles(cube.evaluated_get(depsgraph))
    print("| small cube, grid | s (whole domain / its box) | speed-up | same mask |")
    print("|---|---:|---:|:-:|")
    for res in (256, 512):
        voxel, origin, dims = 2.0 / res, np.array([-1.0, -1.0, -1.0]), (res, res, res)
        t = time.perf_counter()
        whole = smoke._voxelize_closed(*closed, origin, voxel, dims)
        tw = time.perf_counter() - t
        t = time.perf_counter()
        boxed = smoke._voxelize(cube, origin, voxel, dims, depsgraph)
        tb = time.perf_counter() - t
        same = bool(np.array_equal(whole, boxed))
        print(f"| {res}³ | {tw:.3f} / {tb:.3f} | {tw / tb:.0f}x | {same} |", flush=True)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build = [sys.executable, str(ROOT / "build_addon.py"), "--core-only", "--platforms", "linux-x64"]
        subprocess.run([*build, "--out", tmp], check=True, capture_output=True)
        (zip_path,) = Path(tmp).glob("*.zip")
        env = {**os.environ, "HOME": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(zip_path)], env=env, capture_output=True, text=True
        )
        print("\n".join(ln for ln in out.stdout.splitlines() if ln.startswith("|")))
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
        return out.returncode


if __name__ == "__main__":
    raise SystemExit(main())
