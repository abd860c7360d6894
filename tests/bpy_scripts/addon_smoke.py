"""Learned smoke in the built extension: the Volume's frames, an animated emitter, cache ownership,
unwritable folders and small cases. Run by tests/test_addon_smoke.py in a fresh bpy process:
    python addon_smoke.py EXTENSION_ZIP WORKDIR
Prints one ``RESULT {json}`` line with what it observed; every check is also asserted here.
Tiny grids (16-24 voxels) and a few frames keep it fast.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from _extension import MODULE, error_of, install, reference_plan

zip_path, work = install()
observed: dict[str, Any] = {}
smoke = sys.modules[MODULE + ".smoke"]

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "shot.blend"))
scene = bpy.context.scene


def new_domain(location: tuple[float, float, float], frames: tuple[int, int], resolution: int = 16) -> Any:
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.2, location=location)
    assert bpy.ops.mlvfx.add_smoke() == {"FINISHED"}
    domain = bpy.context.active_object
    s = domain.mlvfx_smoke
    s.model, s.resolution, (s.frame_start, s.frame_end) = "reference", resolution, frames
    return domain


def cache_of(domain: Any) -> Path:
    return Path(bpy.path.abspath(domain.mlvfx_smoke.cache))


def grids_at(volume_obj: Any, frame: int) -> tuple[int, str]:
    """Density grids the Volume object shows at a scene frame (0 or 1), and the file they came from."""
    scene.frame_set(frame)
    grids = volume_obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.grids
    grids.load()
    density = sum(g.name == "density" for g in grids)
    return density, Path(grids.frame_filepath).name if density else ""


def smoke_xy(path: Path) -> tuple[float, float]:
    """World x and y of the density's centroid in a baked frame."""
    import openvdb  # bundled with Blender; a bake has made it importable

    grid = openvdb.read(str(path), "density")
    lo, hi = grid.evalActiveVoxelBoundingBox()
    a = np.zeros([h - lo_ + 1 for lo_, h in zip(lo, hi, strict=True)], np.float32)
    grid.copyToArray(a, ijk=lo)
    xc = float((a.sum(axis=(1, 2)) * (np.arange(a.shape[0]) + lo[0])).sum() / a.sum())
    yc = float((a.sum(axis=(0, 2)) * (np.arange(a.shape[1]) + lo[1])).sum() / a.sum())
    world = grid.transform.indexToWorld((xc, yc, 0))
    return float(world[0]), float(world[1])


def volumes_of(domain: Any) -> list[str]:
    return [o.name for o in bpy.data.objects if o.type == "VOLUME" and o.mlvfx_smoke.domain == domain]


# -- 1. a shot that starts at 1001: the Volume shows density_<f>.vdb at frame f, nothing outside ----
shot = new_domain((0.0, 0.0, 0.3), (1001, 1003))
scene.frame_set(1)
assert bpy.ops.mlvfx.bake_smoke(domain=shot.name) == {"FINISHED"}
assert sorted(p.name for p in cache_of(shot).iterdir()) == [f"density_{f}.vdb" for f in (1001, 1002, 1003)]
shot_volume = smoke.domain_volume(shot)
v = shot_volume.data
observed["sequence"] = [v.is_sequence, v.frame_start, v.frame_offset, v.frame_duration, v.sequence_mode]
assert observed["sequence"] == [True, 1001, 1000, 3, "CLIP"], observed["sequence"]
shown = {f: grids_at(shot_volume, f) for f in (1, 1000, 1001, 1002, 1003, 1004)}
observed["shot_frames"] = {str(f): list(g) for f, g in shown.items()}
for f in (1001, 1002, 1003):
    assert shown[f] == (1, f"density_{f}.vdb"), (f, shown[f])
for f in (1, 1000, 1004):
    assert shown[f][0] == 0, (f, shown[f])

# -- 5b. one baked frame is a one-frame sequence: smoke at that frame only -------------------------
single = new_domain((3.0, 0.0, 0.3), (10, 10))
assert bpy.ops.mlvfx.bake_smoke(domain=single.name) == {"FINISHED"}
single_volume = smoke.domain_volume(single)
observed["single_frame"] = {str(f): grids_at(single_volume, f)[0] for f in (1, 9, 10, 11, 200)}
assert observed["single_frame"] == {"1": 0, "9": 0, "10": 1, "11": 0, "200": 0}, observed["single_frame"]

# -- 5c. a domain is no emitter -------------------------------------------------------------------
message = error_of(bpy.ops.mlvfx.add_smoke, emitter=single.name)
assert "is an mlvfx smoke domain" in message and not single.mlvfx_smoke.emitter.mlvfx_smoke.is_domain, message
assert sum(o.mlvfx_smoke.is_domain for o in bpy.data.objects) == 2
emitter_before = single.mlvfx_smoke.emitter
single.mlvfx_smoke.emitter = shot  # a script or an old file can still set it: the bake refuses
message_bake = error_of(bpy.ops.mlvfx.bake_smoke, domain=single.name)
assert "not a smoke domain" in message_bake, message_bake
single.mlvfx_smoke.emitter = emitter_before
observed["domain_as_emitter"] = [message, message_bake]

# -- 2. an animated emitter is voxelized at every frame; the user's frame comes back ---------------
moving = new_domain((0.0, 6.0, 0.3), (1, 6), resolution=24)
emitter = moving.mlvfx_smoke.emitter
emitter.scale = (0.6, 0.6, 0.6)
emitter.location.x, emitter.location.y = -0.5, 6.3
emitter.keyframe_insert("location", frame=1)
emitter.location.x, emitter.location.y = 0.5, 5.7
emitter.keyframe_insert("location", frame=6)
scene.frame_set(4)
assert bpy.ops.mlvfx.bake_smoke(domain=moving.name) == {"FINISHED"}
assert scene.frame_current == 4, scene.frame_current
centres = [smoke_xy(cache_of(moving) / f"density_{f:04d}.vdb") for f in range(1, 7)]
xs = [round(c[0], 3) for c in centres]
ys = [round(c[1], 3) for c in centres]
observed["moving_smoke_x"], observed["moving_smoke_y"] = xs, ys
assert xs[0] < -0.3 and xs[-1] > xs[0] + 0.25 and all(b > a for a, b in itertools.pairwise(xs)), xs
# Blender's Y round-trips through the solver (whose z is Blender -Y) to where the emitter was.
assert ys[0] > 6.1 and ys[-1] < ys[0] - 0.15 and all(b < a for a, b in itertools.pairwise(ys)), ys
low, high = smoke._world_bounds(moving)
voxel = float((high - low).max()) / 24
dims = tuple(max(8, round(float(e) / voxel)) for e in high - low)
masks, per_frame = smoke._emitter_masks(bpy.context, emitter, list(range(1, 7)), low, voxel, dims)
assert len(masks) == 6 and per_frame == list(range(6)), per_frame
starts = [m[0][2] for m in masks]  # solver X = Blender X: the box moves along +x
assert starts == sorted(starts) and starts[-1] > starts[0], starts
assert scene.frame_current == 4
# A still emitter (keys removed) is voxelized once; a packed mask unpacks to the same grid.
emitter.animation_data_clear()
masks, per_frame = smoke._emitter_masks(bpy.context, emitter, list(range(1, 7)), low, voxel, dims)
assert len(masks) == 1 and per_frame == [0] * 6, per_frame
full = smoke.to_solver(smoke._voxelize(emitter, low, voxel, dims))
assert np.array_equal(smoke.unpack_mask(masks[0], full.shape), full) and full.any()
observed["packed_mask_bytes"] = int(masks[0][2].nbytes)
assert masks[0][2].nbytes * 8 < full.size  # a box of bits, not a full grid
# Animation pushed to an NLA strip (no active action) moves the emitter too.
emitter.location.x = -0.5
emitter.keyframe_insert("location", frame=1)
emitter.location.x = 0.5
emitter.keyframe_insert("location", frame=6)
anim = emitter.animation_data
track = anim.nla_tracks.new()
track.strips.new("move", 1, anim.action)
anim.action = None
masks, per_frame = smoke._emitter_masks(bpy.context, emitter, list(range(1, 7)), low, voxel, dims)
assert len(masks) == 6, per_frame
emitter.animation_data_clear()
observed["animated_emitter"] = "voxelized per frame"
# A closed emitter is voxelized in numpy (ray parity), an open one through the BVH tree: the two
# agree on a sphere up to the surface band (bench/addon_voxelize.py has the timings).
bpy.ops.mesh.primitive_ico_sphere_add(radius=0.5, location=(0.03, -0.02, 0.01))
ball = bpy.context.active_object
box_origin, box_dims = np.array([-1.0, -1.0, -1.0]), (32, 32, 32)


def closed_mask(obj: Any) -> np.ndarray:
    """The numpy path itself (not _voxelize, which could fall back to the BVH path unnoticed)."""
    closed = smoke._closed_triangles(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    assert closed is not None
    return smoke._voxelize_closed(*closed, box_origin, 1 / 16, box_dims)


fast = closed_mask(ball)
slow = smoke._voxelize_bvh(ball, box_origin, 1 / 16, box_dims, bpy.context.evaluated_depsgraph_get())
iou = float((fast * slow).sum() / np.maximum(fast, slow).sum())
observed["voxelize_iou"] = round(iou, 3)
assert iou > 0.9 and abs(fast.sum() / slow.sum() - 1) < 0.1, (iou, fast.sum(), slow.sum())
assert np.array_equal(smoke._voxelize(ball, box_origin, 1 / 16, box_dims), fast)  # the path taken
# Thin along X (a wall parallel to the Z rays) still covers voxels; two overlapping cubes joined
# into one mesh are filled where they overlap (parity would call the overlap outside).
bpy.ops.mesh.primitive_cube_add(size=0.7, scale=(0.02, 1.0, 1.0), location=(0.021, 0.0, 0.0))
wall = bpy.context.active_object
assert closed_mask(wall).sum() > 0
bpy.ops.mesh.primitive_cube_add(size=0.8, location=(-0.2, 0.0, 0.0))
left = bpy.context.active_object
bpy.ops.mesh.primitive_cube_add(size=0.8, location=(0.2, 0.0, 0.0))
right = bpy.context.active_object
with bpy.context.temp_override(active_object=left, selected_editable_objects=[left, right]):
    bpy.ops.object.join()
joined = closed_mask(left)
assert joined[14:18, 14:18, 14:18].all()  # the overlap, around the domain's centre
observed["joined_voxels"] = int(joined.sum())  # 1.2 x 0.8 x 0.8 units = 3146 voxels, plus the band
assert 3146 <= joined.sum() < 3146 * 1.5, joined.sum()
bpy.ops.mesh.primitive_plane_add(size=0.8)
plane = bpy.context.active_object
assert smoke._closed_triangles(plane.evaluated_get(bpy.context.evaluated_depsgraph_get())) is None
for obj in (ball, wall, left, plane):
    bpy.data.objects.remove(obj)

# -- 3. a duplicated domain does not take over the original's cache; the Volume follows its domain -
first_inode = (cache_of(shot) / "density_1001.vdb").stat().st_ino
bpy.ops.object.select_all(action="DESELECT")
shot.select_set(True)
bpy.context.view_layer.objects.active = shot
assert bpy.ops.object.duplicate() == {"FINISHED"}  # Shift+D
copy = bpy.context.active_object
assert copy != shot and copy.mlvfx_smoke.cache == shot.mlvfx_smoke.cache
message = error_of(bpy.ops.mlvfx.bake_smoke, domain=copy.name)
assert repr(shot.name) in message and "choose another Cache folder" in message, message
assert "\n" not in message
observed["duplicate_refused"] = message
assert (cache_of(shot) / "density_1001.vdb").stat().st_ino == first_inode  # untouched
assert smoke.cache_conflict(copy) is not None and smoke.cache_conflict(shot) is None
assert bpy.ops.mlvfx.bake_smoke(domain=shot.name) == {"FINISHED"}  # the owner may rebake
assert smoke.domain_volume(shot) == shot_volume and smoke.domain_volume(copy) is None
copy.mlvfx_smoke.cache = "//mlvfx_smoke/copy"
assert bpy.ops.mlvfx.bake_smoke(domain=copy.name) == {"FINISHED"}
copy_volume = smoke.domain_volume(copy)
assert copy_volume is not None and copy_volume != shot_volume
assert Path(bpy.path.abspath(copy_volume.data.filepath)).parent == cache_of(copy)
assert Path(bpy.path.abspath(shot_volume.data.filepath)).parent == cache_of(shot)
# Renamed, the domain keeps its Volume: a rebake adds none.
volume_count = sum(o.type == "VOLUME" for o in bpy.data.objects)
shot.name = "Renamed"
assert bpy.ops.mlvfx.bake_smoke(domain="Renamed") == {"FINISHED"}
assert sum(o.type == "VOLUME" for o in bpy.data.objects) == volume_count
assert volumes_of(shot) == [shot_volume.name], volumes_of(shot)
# Two domains that share a folder neither has baked are both refused.
copy.mlvfx_smoke.cache = single.mlvfx_smoke.cache = "//mlvfx_smoke/shared"
assert repr(single.name) in error_of(bpy.ops.mlvfx.bake_smoke, domain=copy.name)
assert repr(copy.name) in error_of(bpy.ops.mlvfx.bake_smoke, domain=single.name)
# On macOS (a file system without case) "Shared" and "shared" are one folder too (an audit).
copy.mlvfx_smoke.cache = "//mlvfx_smoke/Shared"
assert smoke.cache_conflict(copy) is None  # Linux: two folders
smoke._CASELESS = True
try:
    observed["caseless_conflict"] = smoke.cache_conflict(copy)
    assert observed["caseless_conflict"] is not None, "macOS would see one folder"
finally:
    smoke._CASELESS = False
copy.mlvfx_smoke.cache = "//mlvfx_smoke/copy"
single.mlvfx_smoke.cache = f"//mlvfx_smoke/{single.name}"
# A Volume baked before it recorded its domain is adopted by cache folder, not name.
shot_volume.mlvfx_smoke.domain = None
assert smoke.domain_volume(shot) == shot_volume
# A new domain's default cache folder is one no other domain uses.
bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.0, -6.0, 0.3))
later_emitter = bpy.context.active_object
copy.mlvfx_smoke.cache = f"//mlvfx_smoke/{later_emitter.name}_smoke_domain"
assert bpy.ops.mlvfx.add_smoke() == {"FINISHED"}
later = bpy.context.active_object
observed["new_default_cache"] = later.mlvfx_smoke.cache
assert later.mlvfx_smoke.cache == f"//mlvfx_smoke/{later.name}_2", later.mlvfx_smoke.cache
observed["volume_owner"] = "pointer"

# -- 4. an unwritable project folder: a one-line error, no traceback, the old cache kept ----------
atomic = sys.modules["mlvfx.io.atomic"]
single_files = {p.name: p.stat().st_ino for p in cache_of(single).iterdir()}
if os.getuid() != 0:  # a real read-only folder (root ignores the permission bits)
    os.chmod(cache_of(single).parent, 0o555)
    try:
        message = error_of(bpy.ops.mlvfx.bake_smoke, domain=single.name)
    finally:
        os.chmod(cache_of(single).parent, 0o755)
else:
    real_make_temp_dir = atomic.make_temp_dir

    def refuse(parent: Path, prefix: str) -> Path:
        raise PermissionError(13, "Permission denied", str(parent))

    atomic.make_temp_dir = refuse
    try:
        message = error_of(bpy.ops.mlvfx.bake_smoke, domain=single.name)
    finally:
        atomic.make_temp_dir = real_make_temp_dir
observed["read_only"] = message
assert "cannot create output: Permission denied" in message and "internal error" not in message, message
# The finished bake cannot be moved in (a rename refused): the same kind of error, old cache back.
real_rename = Path.rename


def rename_refused(self: Path, target: Any) -> Any:
    if ".baking-" in self.name:
        raise PermissionError(13, "Permission denied")
    return real_rename(self, target)


Path.rename = rename_refused  # type: ignore[method-assign]
try:
    message = error_of(bpy.ops.mlvfx.bake_smoke, domain=single.name)
finally:
    Path.rename = real_rename  # type: ignore[method-assign]
observed["swap_refused"] = message
assert "cannot replace the smoke cache: Permission denied" in message and "internal error" not in message
assert {p.name: p.stat().st_ino for p in cache_of(single).iterdir()} == single_files
assert sorted(p.name for p in cache_of(single).parent.iterdir() if p.name.startswith(".")) == []
# Refused once (a virus scanner holding a new file for a moment on Windows): tried again, baked.
refusals = {"left": 1}


def rename_refused_once(self: Path, target: Any) -> Any:
    if ".baking-" in self.name and refusals["left"]:
        refusals["left"] -= 1
        raise PermissionError(13, "Permission denied")
    return real_rename(self, target)


Path.rename = rename_refused_once  # type: ignore[method-assign]
try:
    assert bpy.ops.mlvfx.bake_smoke(domain=single.name) == {"FINISHED"}
finally:
    Path.rename = real_rename  # type: ignore[method-assign]
assert refusals["left"] == 0

# -- 5. Save As elsewhere: the Cache follows the frames, as Blender remaps the Volume's path -------
baked_at = cache_of(shot)
volume_file = Path(bpy.path.abspath(shot_volume.data.filepath))
(work / "elsewhere").mkdir()
bpy.ops.wm.save_as_mainfile(filepath=str(work / "elsewhere" / "shot_v2.blend"))
observed["cache_after_save_as"] = shot.mlvfx_smoke.cache
assert cache_of(shot).resolve() == baked_at.resolve(), (shot.mlvfx_smoke.cache, baked_at)
assert Path(bpy.path.abspath(shot_volume.data.filepath)).parent.resolve() == baked_at.resolve()
assert shot.mlvfx_smoke.cache.startswith("//"), shot.mlvfx_smoke.cache  # still relative
# A Save As that fails (a folder that is not there) leaves the Cache as it was (a review).
before_copy = shot.mlvfx_smoke.cache
try:
    bpy.ops.wm.save_as_mainfile(filepath=str(work / "no" / "such" / "folder" / "x.blend"))
except RuntimeError:
    pass
assert shot.mlvfx_smoke.cache == before_copy, shot.mlvfx_smoke.cache
# A Save Copy writes the remapped path into the copy only: this session's file has not moved.
bpy.ops.wm.save_as_mainfile(filepath=str(work / "copy_of_shot.blend"), copy=True)
assert shot.mlvfx_smoke.cache == before_copy and cache_of(shot).resolve() == baked_at.resolve()
bpy.ops.wm.open_mainfile(filepath=str(work / "copy_of_shot.blend"))
reopened = bpy.data.objects["Renamed"]
assert Path(bpy.path.abspath(reopened.mlvfx_smoke.cache)).resolve() == baked_at.resolve()
assert volume_file.is_file()


# -- 5b. voxelizing only the box around a mesh gives the same mask as the whole domain ------------
depsgraph = bpy.context.evaluated_depsgraph_get()
grid_origin, grid_voxel, grid_dims = np.array([-1.0, -1.0, -0.5]), 0.05, (40, 44, 36)
checked = []
for make, where in (
    (bpy.ops.mesh.primitive_cube_add, (0.1, 0.2, 0.3)),
    (bpy.ops.mesh.primitive_uv_sphere_add, (0.9, -0.9, 1.2)),  # partly outside the grid
    (bpy.ops.mesh.primitive_torus_add, (-0.3, 0.4, 0.2)),
):
    make(location=where)
    shape_obj = bpy.context.active_object
    depsgraph = bpy.context.evaluated_depsgraph_get()
    closed = smoke._closed_triangles(shape_obj.evaluated_get(depsgraph))
    assert closed is not None
    whole = smoke._voxelize_closed(*closed, grid_origin, grid_voxel, grid_dims)
    boxed = smoke._voxelize(shape_obj, grid_origin, grid_voxel, grid_dims, depsgraph)
    assert whole.any() and np.array_equal(whole, boxed), shape_obj.name
    checked.append(int(whole.sum()))
    bpy.data.objects.remove(shape_obj)
observed["boxed_voxelization"] = checked


# -- 6. obstacles: a slab over the emitter holds the smoke down; smoke never inside it -------------
def density_grid(path: Path) -> np.ndarray:
    import openvdb

    grid = openvdb.read(str(path), "density")
    lo, hi = grid.evalActiveVoxelBoundingBox()
    a = np.zeros([h - lo_ + 1 for lo_, h in zip(lo, hi, strict=True)], np.float32)
    grid.copyToArray(a, ijk=lo)
    return a


def above(domain: Any, frame: int, z: float) -> float:
    """Smoke above world height z in a baked frame."""
    import openvdb

    path = cache_of(domain) / f"density_{frame:04d}.vdb"
    grid = openvdb.read(str(path), "density")
    lo, _ = grid.evalActiveVoxelBoundingBox()
    a = density_grid(path)
    heights = [grid.transform.indexToWorld((lo[0], lo[1], lo[2] + k))[2] for k in range(a.shape[2])]
    return float(a[:, :, np.array(heights) > z].sum())


free = new_domain((0.0, 10.0, 0.2), (1, 48), resolution=24)
walled = new_domain((0.0, 14.0, 0.2), (1, 48), resolution=24)
bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 14.0, 0.55))
slab = bpy.context.active_object
slab.scale = (0.5, 0.5, 0.06)  # 0.12 thick: over 3 voxels at this resolution
walls = bpy.data.collections.new("Walls")
bpy.context.scene.collection.children.link(walls)
walls.objects.link(slab)
walled.mlvfx_smoke.obstacles = walls
for d in (free, walled):
    assert bpy.ops.mlvfx.bake_smoke(domain=d.name) == {"FINISHED"}
observed["smoke_above_slab"] = [above(free, 48, 0.62), above(walled, 48, 0.62)]
assert observed["smoke_above_slab"][0] > 1.0, observed["smoke_above_slab"]  # it does rise that far
assert observed["smoke_above_slab"][1] < 0.25 * observed["smoke_above_slab"][0], observed["smoke_above_slab"]
# the emitter in the obstacle collection: refused, naming both
walls.objects.link(walled.mlvfx_smoke.emitter)
message = error_of(bpy.ops.mlvfx.bake_smoke, domain=walled.name)
assert "is in the obstacle collection 'Walls'" in message, message
walls.objects.unlink(walled.mlvfx_smoke.emitter)

# -- 7. Free Bake: the frames and the Volume go; a folder with anything else in it is refused ------
freed_cache = cache_of(free)
assert any(freed_cache.glob("density_*.vdb")) and smoke.domain_volume(free) is not None
assert bpy.ops.mlvfx.free_smoke(domain=free.name) == {"FINISHED"}
observed["freed"] = [freed_cache.exists(), smoke.domain_volume(free) is None]
assert observed["freed"] == [False, True], observed["freed"]
assert bpy.ops.mlvfx.bake_smoke(domain=free.name) == {"FINISHED"}  # it bakes again afterwards
(cache_of(free) / "notes.txt").write_text("mine")
message = error_of(bpy.ops.mlvfx.free_smoke, domain=free.name)
assert "notes.txt" in message and (cache_of(free) / "notes.txt").is_file(), message
assert any(cache_of(free).glob("density_*.vdb"))  # nothing deleted
(cache_of(free) / "notes.txt").unlink()
# Cache pointed elsewhere since the bake (another shot's frames, say): nothing is deleted there.
played = cache_of(free)
elsewhere = work / "another_shot"
elsewhere.mkdir()
(elsewhere / "density_0001.vdb").write_bytes(b"theirs")
free.mlvfx_smoke.cache = str(elsewhere)
message = error_of(bpy.ops.mlvfx.free_smoke, domain=free.name)
assert "nothing freed" in message and (elsewhere / "density_0001.vdb").is_file(), message
assert any(played.glob("density_*.vdb")) and smoke.domain_volume(free) is not None


# -- 8. Leftovers of interrupted bakes -------------------------------------------------------------
# A bake stages its frames in a hidden folder beside the cache. One that Blender's quitting or a
# crash interrupted stayed there for good (an audit: 21 MB); the next Bake or Free Bake removes it
# once nobody has written to it for LEFTOVER_AGE, and keeps a fresh one (another Blender's bake).
import time  # noqa: E402


def leftover(cache: Path, kind: str, age: float) -> Path:
    folder = cache.parent / f".{cache.name}.{kind}-{kind[:3]}{int(age)}"
    folder.mkdir()
    (folder / "density_0001.vdb").write_bytes(b"x" * 4096)
    when = time.time() - age
    os.utime(folder, (when, when))
    return folder


free.mlvfx_smoke.cache = str(played)
cache = cache_of(free)
stale = [leftover(cache, "baking", 2 * smoke.LEFTOVER_AGE), leftover(cache, "old", 2 * smoke.LEFTOVER_AGE)]
fresh = leftover(cache, "baking", 5)
assert bpy.ops.mlvfx.bake_smoke(domain=free.name) == {"FINISHED"}
observed["leftovers_after_bake"] = [f.exists() for f in [*stale, fresh]]
assert observed["leftovers_after_bake"] == [False, False, True], observed["leftovers_after_bake"]
shutil.rmtree(fresh)
# an interrupted first bake: no Volume plays the cache yet, and Free Bake removes only the leftover
first = new_domain((9.0, 0.0, 0.0), (1, 2))
first_cache = cache_of(first)
stale_first = leftover(first_cache, "baking", 2 * smoke.LEFTOVER_AGE)
assert bpy.ops.mlvfx.free_smoke(domain=first.name) == {"FINISHED"}
assert not stale_first.exists()
# A finished bake whose operator Blender cancelled (a file loaded) is never applied: its staging
# folder goes when the job is abandoned, before or after the worker ends.
jobs = sys.modules[MODULE + ".jobs"]
bake = smoke.MLVFX_OT_bake_smoke
plan = reference_plan(first.name, first_cache, [1, 2])
abandoned = []
for when in ("after", "before"):
    job = jobs.Job("bake", lambda p, c: bake._compute(plan, p, c), lambda r: bake._discard_result(plan, r))
    job.start()
    if when == "after":
        assert job.wait(60) and job.error is None and Path(job.result).is_dir()
    job.abandon()
    assert job.wait(60)
    abandoned.append(sorted(p.name for p in first_cache.parent.glob(f".{first_cache.name}.*")))
observed["abandoned_staging"] = abandoned
assert abandoned == [[], []], abandoned
assert not smoke._live_staging
# Finished but not yet polled when the add-on goes (a reload in the poll's 0.1 s): the worker has
# left the running set, and cancel_all must still throw its result away (a review).
job = jobs.Job("bake", lambda p, c: bake._compute(plan, p, c), lambda r: bake._discard_result(plan, r))
job.start()
job._thread.join(60)
assert job not in jobs._running and job in jobs._undelivered
jobs.cancel_all()
assert not list(first_cache.parent.glob(f".{first_cache.name}.*")) and not smoke._live_staging
# A bake another Blender is running is kept however slow its frames: it touches its folder at every
# substep. (Here: this process's own job, taken out of the live set to look like another's.)
smoke.LEFTOVER_AGE = 1.0
long_plan = {**plan, "frames": list(range(1, 100001))}
job = jobs.Job(
    "bake", lambda p, c: bake._compute(long_plan, p, c), lambda r: bake._discard_result(long_plan, r)
)
job.start()
deadline = time.monotonic() + 60
while not smoke._live_staging and time.monotonic() < deadline:
    time.sleep(0.01)
(live,) = smoke._live_staging
smoke._live_staging.clear()
time.sleep(1.5)
smoke.remove_leftovers(first_cache)
observed["other_process_bake_kept"] = Path(live).is_dir()
smoke._live_staging.add(live)
job.abandon()
assert job.wait(60) and not Path(live).exists()
assert observed["other_process_bake_kept"], observed
# The live set is kept resolved: the same cache reached another way is still this process's bake.
smoke.LEFTOVER_AGE = 0.0
link = work / "linked_parent"
link.symlink_to(first_cache.parent, target_is_directory=True)
job = jobs.Job(
    "bake", lambda p, c: bake._compute(long_plan, p, c), lambda r: bake._discard_result(long_plan, r)
)
job.start()
while not smoke._live_staging and time.monotonic() < deadline + 60:
    time.sleep(0.01)
smoke.remove_leftovers(link / first_cache.name)
observed["spelled_otherwise_kept"] = all(Path(p).is_dir() for p in smoke._live_staging)
job.abandon()
assert job.wait(60)
assert observed["spelled_otherwise_kept"], observed
# A swap-in stopped between its two renames leaves the last bake only as .old-*: Free Bake keeps it
# (the only copy), a Bake puts it back before replacing it; beside an existing cache it is garbage,
# as is a .trash-* however new (a review: the first fix deleted the only copy, or restored a
# half-removed old cache after Free Bake).
smoke.LEFTOVER_AGE = 1800.0
played_cache = cache_of(free)
assert played_cache.is_dir()
aside = played_cache.with_name(f".{played_cache.name}.old-cafe0001")
played_cache.rename(aside)
smoke.remove_leftovers(played_cache)  # Free Bake's call
assert aside.is_dir() and not played_cache.exists()
smoke.remove_leftovers(played_cache, restore=True)  # a Bake's
observed["old_bake_put_back"] = [played_cache.is_dir(), aside.exists()]
assert observed["old_bake_put_back"] == [True, False], observed
fresh_old, fresh_trash = (leftover(played_cache, kind, 1) for kind in ("old", "trash"))
smoke.remove_leftovers(played_cache)
assert not fresh_old.exists() and not fresh_trash.exists()
# a cache whose own name holds ".old-": the old one still goes as .trash-* and nothing stays
odd = work / "shot.old-v1"
odd.mkdir()
(odd / "density_0001.vdb").write_bytes(b"old")
odd_staging = work / ".shot.old-v1.baking-test"
odd_staging.mkdir()
(odd_staging / "density_0001.vdb").write_bytes(b"new")
real_rmtree = shutil.rmtree
shutil.rmtree = lambda *args, **kwargs: None  # a file held open (Windows): the old cache stays behind
try:
    smoke.swap_in(odd_staging, odd)
finally:
    shutil.rmtree = real_rmtree
assert (odd / "density_0001.vdb").read_bytes() == b"new"
left = [p.name for p in work.glob(".shot.old-v1.*")]
assert len(left) == 1 and left[0].startswith(".shot.old-v1.trash-"), left  # not ".shot.trash-v1.old-"
assert smoke.remove_leftovers(odd) > 0 and not list(work.glob(".shot.old-v1.*"))
# A model download longer than LEFTOVER_AGE: the staging folder is kept alive meanwhile.
alive = work / ".alive.baking-test"
alive.mkdir()
os.utime(alive, (time.time() - 7200, time.time() - 7200))
with smoke._kept_alive(alive, every=0.05):
    time.sleep(0.3)
    assert time.time() - alive.stat().st_mtime < 5
shutil.rmtree(alive)
# a bake that finished leaves neither
assert bpy.ops.mlvfx.bake_smoke(domain=free.name) == {"FINISHED"}
assert not [p.name for p in played_cache.parent.glob(f".{played_cache.name}.*")]

print("RESULT " + json.dumps(observed))
