"""Learned smoke in Blender: turn a mesh into an emitter in a new domain, bake to an OpenVDB sequence,
and play it back on a Volume object.

The bake voxelizes the emitter on the main thread (once per frame whose evaluated emitter differs,
so an animated emitter moves), runs the core stepper in a worker thread and writes each frame with
the core's OpenVDB writer (through the openvdb module bundled with Blender). It bakes into a fresh
folder and swaps it in only when every frame is written, so a cancelled or failed rebake leaves the
previous cache as it was.

A cache folder belongs to one domain: the one whose Volume object plays it. That Volume object
records its domain (``mlvfx_smoke.domain``, a pointer, so renaming either keeps the link), and a
bake into a folder that another domain also uses is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from . import bridge, preferences
from .operators import BackgroundJobOperator

DOMAIN_TAG = "mlvfx_smoke_domain"


_model_items_cache: list[tuple[str, str, str, str, int]] = []  # Blender needs the strings kept alive
AUTO = "auto"
AUTO_NUMBER = 1000
_FIXED_NUMBERS = {"smoke3d": 1, "smoke3d_128": 2}
"""The numbers .blend files saved before stop 20 hold for the zoo's models (their manifest order)."""


def model_number(model_id: str) -> int:
    """The enum number of a zoo smoke model: fixed per id, so a .blend keeps its choice whatever
    the manifest adds (new models, new versions) or reorders."""
    return _FIXED_NUMBERS.get(model_id) or 2000 + zlib.crc32(model_id.encode()) % 1_000_000


VELOCITY_FLOOR = 1e-4  # density below which a baked voxel's velocity is not stored


def _emitter_poll(self: Any, obj: bpy.types.Object) -> bool:
    """The Emitter picker offers meshes, never a smoke domain."""
    return obj.type == "MESH" and not obj.mlvfx_smoke.is_domain


def _version_used(manifest: Any, entry: Any) -> str:
    """The version of ``entry``'s model a bake runs: the Smoke Models preference's pin
    (``MLVFX_SMOKE_MODELS``), else the newest; a bad pin is the bake's error to report."""
    try:
        from mlvfx.fluids.surrogate import pinned_smoke_version

        return str(manifest.get(entry.id, pinned_smoke_version(entry.id)).version)
    except Exception:
        return str(entry.version)


def _model_items(self: Any, context: bpy.types.Context) -> list[tuple[str, str, str, str, int]]:
    from mlvfx.errors import MlvfxError

    # Explicit numbers: a .blend stores the number, so "reference" stays 0 and the zoo's models keep
    # the numbers they had before "auto" (AUTO_NUMBER) was added.
    items = [
        (
            "reference",
            "Reference Solver",
            "mlvfx's own Eulerian solver at full resolution (slow, exact)",
            "",
            0,
        )
    ]
    try:
        from mlvfx.zoo import load_manifest

        manifest = load_manifest()
        newest = [manifest.get(model_id) for model_id in manifest.ids()]  # one item per model
        zoo = [e for e in newest if e.task.startswith("smoke")]
    except MlvfxError as exc:  # a broken manifest must not break the UI; the reference stays usable
        print(f"mlvfx: zoo manifest unreadable, only the reference solver is offered: {exc}")
        zoo = []
    if zoo:
        items.append(
            (
                AUTO,
                "Learned (Auto)",
                "The zoo's surrogate for the resolution: smoke3d_128 from 96 voxels, else smoke3d",
                "",
                AUTO_NUMBER,
            )
        )
    for entry in zoo:
        items.append(
            (
                entry.id,
                entry.id,
                f"Learned surrogate {entry.id} {_version_used(manifest, entry)} from the zoo",
                "",
                model_number(entry.id),
            )
        )
    _model_items_cache[:] = items
    return _model_items_cache


class MLVFX_PG_smoke(bpy.types.PropertyGroup):
    """Settings of an mlvfx smoke domain."""

    is_domain: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    emitter: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Emitter", type=bpy.types.Object, description="Mesh that emits smoke", poll=_emitter_poll
    )
    obstacles: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Obstacles",
        type=bpy.types.Collection,
        description="Collection of meshes the smoke flows around (voxelized once, at the bake's first "
        "frame; the learned models need walls at least 12 voxels thick)",
    )
    model: bpy.props.EnumProperty(name="Model", items=_model_items)  # type: ignore[valid-type]
    resolution: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Resolution", description="Voxels along the domain's longest side", default=64, min=8, max=512
    )
    frame_start: bpy.props.IntProperty(name="Start", default=1)  # type: ignore[valid-type]
    frame_end: bpy.props.IntProperty(name="End", default=48)  # type: ignore[valid-type]
    substeps: bpy.props.IntProperty(name="Substeps", default=1, min=1, max=16)  # type: ignore[valid-type]
    buoyancy: bpy.props.FloatProperty(name="Buoyancy", default=1.0, min=0.0, max=100.0)  # type: ignore[valid-type]
    dissipation: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Dissipation", description="Density lost per second", default=0.0, min=0.0, max=10.0
    )
    vorticity: bpy.props.FloatProperty(name="Vorticity", default=0.2, min=0.0, max=5.0)  # type: ignore[valid-type]
    emission: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Emission Rate",
        description="Density emitted per second inside the emitter",
        default=2.0,
        min=0.0,
    )
    cache: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Cache",
        description="Folder of the baked OpenVDB sequence (new, empty, or an earlier bake's; nothing else "
        "in it is ever deleted)",
        default="",
        subtype="DIR_PATH",
        options={"PATH_SUPPORTS_BLEND_RELATIVE"},
    )
    domain: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Smoke Domain",
        type=bpy.types.Object,
        description="On a Volume object made by Bake Smoke: the domain whose bake it plays",
    )


def _world_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    return corners.min(axis=0), corners.max(axis=0)


class MLVFX_OT_add_smoke(bpy.types.Operator):
    """Turn the selected mesh into a smoke emitter inside a new mlvfx smoke domain"""

    bl_idname = "mlvfx.add_smoke"
    bl_label = "Add Learned Smoke"
    bl_options = {"REGISTER", "UNDO"}

    emitter: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Emitter", description="Mesh object (empty: the active object)", options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = bpy.data.objects.get(self.emitter) if self.emitter else context.active_object
        if obj is None or obj.type != "MESH":
            self.report({"ERROR"}, "select a mesh object to emit smoke")
            return {"CANCELLED"}
        if obj.mlvfx_smoke.is_domain:
            self.report(
                {"ERROR"},
                f"{obj.name!r} is an mlvfx smoke domain, not an emitter: select the mesh to emit smoke",
            )
            return {"CANCELLED"}
        if obj.mode != "OBJECT":  # edit-mode changes reach the mesh (and its bounds) only in object mode
            bpy.ops.object.mode_set(mode="OBJECT")
        low, high = _world_bounds(obj)
        size = max(float(np.max(high[:2] - low[:2])), 1e-3)
        width = max(3.0 * size, 0.5)
        height = 2.0 * width
        centre = (low + high) / 2
        # The domain is built from data, not with bpy.ops.mesh.primitive_cube_add, which in edit mode
        # adds the cube to the emitter's own mesh.
        import bmesh

        mesh = bpy.data.meshes.new(f"{obj.name}_smoke_domain")
        bm = bmesh.new()
        bmesh.ops.create_cube(bm, size=1.0)
        bm.to_mesh(mesh)
        bm.free()
        domain = bpy.data.objects.new(f"{obj.name}_smoke_domain", mesh)
        (context.collection or context.scene.collection).objects.link(domain)
        domain.location = (centre[0], centre[1], low[2] - 0.1 * width + height / 2)
        domain.scale = (width, width, height)
        for other in context.selected_objects:
            other.select_set(False)
        domain.select_set(True)
        context.view_layer.objects.active = domain
        domain.display_type = "WIRE"
        domain.hide_render = True
        domain[DOMAIN_TAG] = True
        settings = domain.mlvfx_smoke
        settings.is_domain = True
        settings.emitter = obj
        settings.frame_start = context.scene.frame_start
        settings.frame_end = context.scene.frame_end
        settings.cache = _free_cache_path(domain)
        if any(item[0] == AUTO for item in _model_items(settings, context)):
            settings.model = AUTO  # learned smoke by default, the model picked by resolution at bake time
        self.report({"INFO"}, f"mlvfx: smoke domain {domain.name!r} emits from {obj.name!r}")
        return {"FINISHED"}


def _resolve_model(model: str, cells: int) -> str:
    """``auto`` becomes the zoo's surrogate for a grid of ``cells`` along its longest axis
    (``mlvfx.fluids.surrogate.default_model``); other models stay as they are."""
    if model != AUTO:
        return model
    from mlvfx.fluids.surrogate import default_model

    return default_model(3, cells)


# -- which domain a cache folder and a Volume object belong to ------------------------------------


def _resolved(path: str) -> Path:
    normal = Path(os.path.normpath(path))
    try:
        return normal.resolve()
    except (OSError, RuntimeError):  # a symlink loop or an unreadable parent: compare as written
        return normal


# macOS's usual file system ignores case, as Windows' does (where Path equality already does):
# "Smoke" and "smoke" domains' cache folders are one folder there (an audit).
_CASELESS = sys.platform == "darwin"


def _folder_key(path: Path) -> str:
    return str(path).casefold() if _CASELESS else str(path)


def same_folder(a: Path | None, b: Path | None) -> bool:
    """Whether two resolved folders are one, as the platform's file system sees names."""
    return a is not None and b is not None and (a == b or (_CASELESS and _folder_key(a) == _folder_key(b)))


def target_domain(context: bpy.types.Context, name: str) -> bpy.types.Object | None:
    """The smoke domain an operator acts on: the object ``name`` (a script's), else the active one;
    None when that is not an mlvfx smoke domain."""
    obj = bpy.data.objects.get(name) if name else context.active_object
    return obj if obj is not None and obj.mlvfx_smoke.is_domain else None


def cache_path(domain: bpy.types.Object) -> Path | None:
    """The domain's cache folder as an absolute, normalised path (None while Cache is blank)."""
    cache = domain.mlvfx_smoke.cache
    if not cache.strip():
        return None
    return _resolved(bpy.path.abspath(cache, library=domain.library))


def _plays(volume_obj: bpy.types.Object, cache: Path) -> bool:
    """Whether the Volume object plays a file of the folder ``cache``."""
    filepath = volume_obj.data.filepath
    if not filepath:
        return False
    return same_folder(_resolved(bpy.path.abspath(filepath, library=volume_obj.data.library)).parent, cache)


def domain_volume(domain: bpy.types.Object) -> bpy.types.Object | None:
    """The Volume object that plays the domain's bake: the one whose ``mlvfx_smoke.domain`` is the
    domain (whatever either is called; a duplicate of the domain is not its owner). A Volume baked
    before that link existed (no domain recorded) is adopted when it plays the domain's cache folder."""
    owned = [o for o in bpy.data.objects if o.type == "VOLUME" and o.mlvfx_smoke.domain == domain]
    if owned:
        return next((o for o in owned if o.users_scene), owned[0])
    cache = cache_path(domain)
    if cache is None:
        return None
    legacy = [
        o
        for o in bpy.data.objects
        if o.type == "VOLUME" and o.mlvfx_smoke.domain is None and o.users_scene and _plays(o, cache)
    ]
    return next((o for o in legacy if o.name == f"{domain.name}_volume"), legacy[0] if legacy else None)


def _other_domains(domain: bpy.types.Object) -> list[bpy.types.Object]:
    """The smoke domains in a scene other than ``domain`` (a deleted one may linger in bpy.data)."""
    return [o for o in bpy.data.objects if o != domain and o.mlvfx_smoke.is_domain and o.users_scene]


def cache_conflict(domain: bpy.types.Object, cache: Path | None = None) -> tuple[str, str] | None:
    """Why ``domain`` must not bake into ``cache`` (default: its own Cache folder): another domain
    uses the same folder. ``(other domain's name, one-line message)``, or None when it may.

    The domain whose Volume plays the folder owns it and may rebake it; any other domain with that
    folder is refused (a Shift+D copy of a baked domain, say). Two domains that share a folder that
    neither has baked are both refused, so a bake never silently replaces another domain's smoke."""
    cache = cache_path(domain) if cache is None else cache
    if cache is None:
        return None
    others = [o for o in _other_domains(domain) if same_folder(cache_path(o), cache)]
    if not others:
        return None
    shown = domain.mlvfx_smoke.cache
    fix = f"choose another Cache folder for {domain.name!r}"
    for other in others:
        theirs = domain_volume(other)
        if theirs is not None and _plays(theirs, cache):
            return other.name, f"the cache folder {shown} holds the smoke of domain {other.name!r}: {fix}"
    mine = domain_volume(domain)
    if mine is not None and _plays(mine, cache):
        return None
    return others[0].name, f"smoke domain {others[0].name!r} uses the same cache folder {shown}: {fix}"


_shown_conflict: dict[tuple[Any, ...], tuple[str, str] | None] = {}


def shown_conflict(domain: bpy.types.Object) -> tuple[str, str] | None:
    """:func:`cache_conflict` for the panel, which redraws often: recomputed (with its path
    resolution on disk) only when a domain's cache, a volume's file or their links change."""
    key = (
        domain.name,
        bpy.data.filepath,
        tuple(
            (
                o.name,
                o.mlvfx_smoke.cache,
                o.data.filepath if o.type == "VOLUME" else "",
                o.mlvfx_smoke.domain.name if o.mlvfx_smoke.domain is not None else "",
            )
            for o in bpy.data.objects
            if o.mlvfx_smoke.is_domain or o.type == "VOLUME"
        ),
    )
    if key not in _shown_conflict:
        _shown_conflict.clear()
        _shown_conflict[key] = cache_conflict(domain)
    return _shown_conflict[key]


def _free_cache_path(domain: bpy.types.Object) -> str:
    """``//mlvfx_smoke/<domain>``, numbered when another domain already uses that folder."""
    taken = {_folder_key(p) for o in _other_domains(domain) if (p := cache_path(o)) is not None}
    base = f"//mlvfx_smoke/{bridge.safe_name(domain.name, 'domain')}"  # "../../x" stays inside
    candidate, number = base, 1
    while _folder_key(_resolved(bpy.path.abspath(candidate))) in taken:
        number += 1
        candidate = f"{base}_{number}"
    return candidate


# -- the emitter on the domain's grid, per frame --------------------------------------------------


def to_solver(grid: np.ndarray) -> np.ndarray:
    """A Blender-axis grid (X, Y, Z) in the solver's layout (Z, Y, X) with +Y up.

    The inverse of the core's Z-up VDB writing (``mlvfx.io.volume.to_vdb_index``), a rotation:
    solver y (up) is Blender Z, solver z is Blender -Y (so Blender's Y runs backwards), solver x
    is Blender X. A bake thus round-trips to where its emitter was.
    """
    return np.transpose(grid[:, ::-1, :], (1, 2, 0))


PackedMask = tuple[tuple[int, int, int], tuple[int, int, int], np.ndarray]
"""A {0, 1} mask kept small: the start and shape of the box around its covered cells, and that
box's cells as bits (``np.packbits``). An emitter covers a small part of the domain, so a moving
emitter costs a few kilobytes per frame, not a full grid."""


def pack_mask(mask: np.ndarray) -> PackedMask:
    covered = mask > 0
    if not covered.any():
        return (0, 0, 0), (0, 0, 0), np.zeros(0, np.uint8)
    spans = [np.flatnonzero(covered.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    lo = (int(spans[0][0]), int(spans[1][0]), int(spans[2][0]))
    hi = (int(spans[0][-1]) + 1, int(spans[1][-1]) + 1, int(spans[2][-1]) + 1)
    box = covered[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return lo, (box.shape[0], box.shape[1], box.shape[2]), np.packbits(box, axis=None)


def unpack_mask(packed: PackedMask, shape: tuple[int, ...]) -> np.ndarray:
    """The full float32 mask of ``shape`` that :func:`pack_mask` packed."""
    lo, box, bits = packed
    mask = np.zeros(shape, np.float32)
    if 0 not in box:
        cells = np.unpackbits(bits, count=box[0] * box[1] * box[2]).reshape(box)
        mask[lo[0] : lo[0] + box[0], lo[1] : lo[1] + box[1], lo[2] : lo[2] + box[2]] = cells
    return mask


def _voxelize(
    obj: bpy.types.Object,
    origin: np.ndarray,
    voxel: float,
    dims: tuple[int, int, int],
    depsgraph: bpy.types.Depsgraph | None = None,
) -> np.ndarray:
    """Inside-mask of a mesh on a Blender-axis grid (X, Y, Z), voxel centres at origin + (i + 0.5) * voxel.

    The mesh is the evaluated one (modifiers, shape keys, animation) at the depsgraph's frame. A
    closed mesh (the usual emitter) is voxelized in numpy (:func:`_voxelize_closed`), an open one
    (a plane) through Blender's BVH tree, a voxel at a time (:func:`_voxelize_bvh`)."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    closed = _closed_triangles(evaluated)
    if closed is None:
        return _voxelize_bvh(obj, origin, voxel, dims, depsgraph)
    # Only the box around the mesh (and a voxel more): the crossing counts are full int grids, so
    # a small obstacle in a 512³ domain cost over a gigabyte and a quarter of a second (a review).
    verts = closed[0]
    lo, hi = _voxel_box(verts.min(axis=0), verts.max(axis=0), origin, voxel, dims, margin=1)
    mask = np.zeros(dims, np.float32)
    if np.all(hi > lo):
        box = (int(hi[0] - lo[0]), int(hi[1] - lo[1]), int(hi[2] - lo[2]))
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = _voxelize_closed(
            *closed, origin + lo * voxel, voxel, box
        )
    return mask


def _voxel_box(
    low: np.ndarray,
    high: np.ndarray,
    origin: np.ndarray,
    voxel: float,
    dims: tuple[int, ...],
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Index range ``[lo, hi)`` of the voxels whose centres a world box can reach, ``margin`` more
    on each side, clipped to the grid."""
    size = np.array(dims)
    lo = np.clip(np.floor((low - origin) / voxel).astype(int) - margin, 0, size)
    hi = np.clip(np.ceil((high - origin) / voxel).astype(int) + 1 + margin, 0, size)
    return lo, hi


def _voxelize_bvh(
    obj: bpy.types.Object,
    origin: np.ndarray,
    voxel: float,
    dims: tuple[int, int, int],
    depsgraph: bpy.types.Depsgraph,
) -> np.ndarray:
    """:func:`_voxelize` by nearest-surface queries: a voxel is in when its centre is behind the
    nearest surface point's normal or within half a voxel of the surface (any mesh, but a Python
    call per voxel: about a second for 128³ on a quarter of the domain)."""
    from mathutils.bvhtree import BVHTree

    evaluated = obj.evaluated_get(depsgraph)
    tree = BVHTree.FromObject(obj, depsgraph)
    inv = evaluated.matrix_world.inverted()
    lo, hi = _voxel_box(*_world_bounds(evaluated), origin, voxel, dims)
    mask = np.zeros(dims, np.float32)
    for i in range(lo[0], hi[0]):
        for j in range(lo[1], hi[1]):
            for k in range(lo[2], hi[2]):
                p_world = origin + (np.array([i, j, k]) + 0.5) * voxel
                p = inv @ Vector(p_world)
                location, normal, _, dist = tree.find_nearest(p)
                if location is None:
                    continue
                if (p - location).dot(normal) < 0 or dist < 0.5 * voxel:
                    mask[i, j, k] = 1.0
    return mask


def _closed_triangles(evaluated: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """World-space vertices and triangles of a closed mesh (every edge shared by exactly two
    triangles), and whether its faces are consistently oriented (every directed edge once); None
    for an open mesh (a plane emitter), which the BVH path handles."""
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        if len(mesh.loop_triangles) == 0:
            return None
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        evaluated.to_mesh_clear()
    tris = tris.reshape(-1, 3)
    n = len(co) // 3
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected[:, 0] * n + undirected[:, 1], return_counts=True)  # 1-D keys: fast
    if not np.all(counts == 2):
        return None
    oriented = len(np.unique(directed[:, 0] * n + directed[:, 1])) == len(directed)
    m = np.array(evaluated.matrix_world, np.float64)
    verts = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    return verts, tris, oriented


CHUNK_PAIRS = 2_000_000  # triangle-column pairs the vectorized voxelizer handles at once (~0.5 GB)


def _ray_hits(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, origin: np.ndarray, voxel: float, dims: tuple[int, ...]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Where rays along the third axis, one through every voxel column's centre, cross the
    triangles ``(a, b, c)`` (each (T, 3), the ray axis last): ``(i, j, position, side)`` in chunks,
    ``side`` the sign of the triangle's facing along the ray (for winding numbers).

    The rays are nudged by an irrational fraction of a voxel, so that none runs exactly through an
    edge or a vertex of a mesh built on round numbers.
    """
    nudge = voxel * np.array([1e-4 * np.sqrt(2.0), 1e-4 * np.sqrt(3.0)])
    lo = (np.minimum(np.minimum(a, b), c)[:, :2] - origin[:2] - nudge) / voxel - 0.5
    hi = (np.maximum(np.maximum(a, b), c)[:, :2] - origin[:2] - nudge) / voxel - 0.5
    i0 = np.clip(np.ceil(lo[:, 0]).astype(np.int64), 0, dims[0])
    i1 = np.clip(np.floor(hi[:, 0]).astype(np.int64), -1, dims[0] - 1)
    j0 = np.clip(np.ceil(lo[:, 1]).astype(np.int64), 0, dims[1])
    j1 = np.clip(np.floor(hi[:, 1]).astype(np.int64), -1, dims[1] - 1)
    width = np.maximum(i1 - i0 + 1, 0)
    counts = width * np.maximum(j1 - j0 + 1, 0)
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):  # chunks of about CHUNK_PAIRS pairs (a long diagonal triangle has many)
        done = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, done + CHUNK_PAIRS, "right")))
        part = np.arange(start, stop)
        per = counts[part]
        tri = np.repeat(part, per)
        r = np.arange(len(tri)) - np.repeat(np.cumsum(per) - per, per)
        w = np.maximum(width[tri], 1)
        ii, jj = i0[tri] + r % w, j0[tri] + r // w
        px = origin[0] + (ii + 0.5) * voxel + nudge[0]
        py = origin[1] + (jj + 0.5) * voxel + nudge[1]
        ta, e1, e2 = a[tri], b[tri] - a[tri], c[tri] - a[tri]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok = np.abs(det) > 1e-18
        safe = np.where(ok, det, 1.0)
        dx, dy = px - ta[:, 0], py - ta[:, 1]
        u = (dx * e2[:, 1] - dy * e2[:, 0]) / safe
        v = (e1[:, 0] * dy - e1[:, 1] * dx) / safe
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1)
        along = ta[hit, 2] + u[hit] * e1[hit, 2] + v[hit] * e2[hit, 2]
        yield ii[hit], jj[hit], along, np.sign(det[hit]).astype(np.int32)
        start = stop


def _voxelize_closed(
    verts: np.ndarray,
    tris: np.ndarray,
    oriented: bool,
    origin: np.ndarray,
    voxel: float,
    dims: tuple[int, int, int],
) -> np.ndarray:
    """Inside-mask of a closed mesh by counting crossings along Z through every voxel column.

    With consistently oriented faces the count is a winding number (inside where it is not 0), so
    overlapping shells joined into one mesh stay filled; otherwise parity (odd: inside). The voxels
    the surface passes through are added from rays along all three axes, as the BVH path's
    half-voxel band does, so an emitter thin along any axis still covers voxels.
    """
    nz = dims[2]
    crossings = np.zeros((dims[0], dims[1], nz + 1), np.int32)
    band = np.zeros(dims, bool)
    a, b, c = (verts[tris[:, k]] for k in range(3))
    for axis in (2, 0, 1):  # rays along Z count crossings; all three mark the surface's voxels
        order = [k for k in range(3) if k != axis] + [axis]
        shape = tuple(dims[k] for k in order)
        o = origin[order]
        for ii, jj, t, side in _ray_hits(a[:, order], b[:, order], c[:, order], o, voxel, shape):
            if axis == 2:
                first_above = np.clip(np.ceil((t - o[2]) / voxel - 0.5), 0, nz).astype(np.int64)
                np.add.at(crossings, (ii, jj, first_above), side if oriented else 1)
            cell = np.floor((t - o[2]) / voxel).astype(np.int64)
            keep = (cell >= 0) & (cell < shape[2])
            index: list[np.ndarray] = [np.empty(0, np.int64)] * 3
            index[order[0]], index[order[1]], index[order[2]] = ii[keep], jj[keep], cell[keep]
            band[tuple(index)] = True
    count = np.cumsum(crossings, axis=2)[..., :nz]
    inside = (count != 0) if oriented else (count % 2 == 1)
    return (inside | band).astype(np.float32)


def _emitter_key(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> bytes:
    """A digest of the evaluated emitter (world matrix, vertex positions, faces): equal on two
    frames exactly when the emitter is the same there, whatever animates it (keys, parents,
    constraints, drivers, modifiers)."""
    evaluated = obj.evaluated_get(depsgraph)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.array(evaluated.matrix_world, np.float64).tobytes())
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        loops = np.empty(len(mesh.loops), np.int32)
        mesh.loops.foreach_get("vertex_index", loops)
        digest.update(co.tobytes())
        digest.update(loops.tobytes())
    finally:
        evaluated.to_mesh_clear()
    return digest.digest()


def _may_move(obj: bpy.types.Object) -> bool:
    """Whether anything can change the evaluated emitter from frame to frame: animation (actions,
    NLA strips, drivers) on it, a parent, or their data or shape keys; constraints (pose bones'
    too); modifiers (some follow time); a rigid body. Conservative: when in doubt, it may move."""
    chain = []
    node: bpy.types.Object | None = obj
    while node is not None:
        chain.append(node)
        node = node.parent
    for o in chain:
        if o.constraints or o.modifiers or getattr(o, "rigid_body", None) is not None:
            return True
        pose = getattr(o, "pose", None)
        if pose is not None and any(bone.constraints for bone in pose.bones):
            return True
        for block in (o, o.data, getattr(o.data, "shape_keys", None)):
            anim = getattr(block, "animation_data", None)
            if anim is not None and (anim.action or anim.drivers or anim.nla_tracks):
                return True
    return False


@contextlib.contextmanager
def _frame_kept(scene: bpy.types.Scene) -> Iterator[None]:
    """Step the scene's frame freely inside; the user's frame (and subframe) comes back after."""
    current, subframe = scene.frame_current, scene.frame_subframe
    try:
        yield
    finally:
        scene.frame_set(current, subframe=subframe)


def _same_at(context: bpy.types.Context, obj: bpy.types.Object, frames: list[int]) -> bool:
    """Whether the evaluated emitter is the same at these frames (a check behind :func:`_may_move`
    for what it cannot see); the scene's frame is restored."""
    keys = set()
    with _frame_kept(context.scene):
        for frame in frames:
            context.scene.frame_set(frame)
            keys.add(_emitter_key(obj, context.evaluated_depsgraph_get()))
    return len(keys) == 1


def _emitter_masks(
    context: bpy.types.Context,
    obj: bpy.types.Object,
    frames: list[int],
    origin: np.ndarray,
    voxel: float,
    dims: tuple[int, int, int],
) -> tuple[list[PackedMask], list[int]]:
    """The emitter voxelized at every frame of the bake (main thread), in the solver's axis order.

    Returns the distinct masks and, per frame, the index of its mask: a still emitter is voxelized
    once, a moving one once per frame where it differs. The scene's current frame is restored."""
    if not _may_move(obj) and _same_at(context, obj, [frames[0], frames[len(frames) // 2], frames[-1]]):
        # Still: no stepping through every frame (it runs every frame handler and simulation cache).
        with _frame_kept(context.scene):
            context.scene.frame_set(frames[0])  # the bake's own frame, not wherever the user is
            mask = _voxelize(obj, origin, voxel, dims, context.evaluated_depsgraph_get())
        return [pack_mask(to_solver(mask))], [0] * len(frames)
    scene = context.scene
    masks: list[PackedMask] = []
    index_of: dict[bytes, int] = {}
    per_frame: list[int] = []
    with _frame_kept(scene):
        for frame in frames:
            scene.frame_set(frame)
            depsgraph = context.evaluated_depsgraph_get()
            key = _emitter_key(obj, depsgraph)
            if key not in index_of:
                mask = _voxelize(obj, origin, voxel, dims, depsgraph)
                index_of[key] = len(masks)
                masks.append(pack_mask(to_solver(mask)))
            per_frame.append(index_of[key])
    return masks, per_frame


class MLVFX_OT_bake_smoke(BackgroundJobOperator, bpy.types.Operator):
    """Simulate the domain's smoke over its frame range into an OpenVDB sequence and show it as a Volume"""

    bl_idname = "mlvfx.bake_smoke"
    bl_label = "Bake Smoke"
    job_name = "bake smoke"

    domain: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Domain", description="Domain object (empty: the active object)", options={"SKIP_SAVE"}
    )

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        from mlvfx.errors import InputError

        preferences.apply_environment(context)
        domain = target_domain(context, self.domain)
        if domain is None:
            raise InputError("select an mlvfx smoke domain (use Add Learned Smoke first)")
        s = domain.mlvfx_smoke
        if s.emitter is None:
            raise InputError(f"smoke domain {domain.name!r} has no emitter")
        if s.emitter.type != "MESH" or s.emitter.mlvfx_smoke.is_domain:
            raise InputError(
                f"the emitter of smoke domain {domain.name!r} must be a mesh that is not a smoke domain, "
                f"and {s.emitter.name!r} is not"
            )
        if s.frame_end < s.frame_start:
            raise InputError(f"frame range {s.frame_start}-{s.frame_end} is empty")
        if s.frame_start < 0:
            raise InputError(f"frame range {s.frame_start}-{s.frame_end} starts before frame 0")
        if not s.cache.strip():
            raise InputError(f"smoke domain {domain.name!r} has no cache folder: set Cache first")
        if not bpy.data.is_saved and s.cache.startswith("//"):
            raise InputError("save the .blend first: the smoke cache is written next to it")
        cache = Path(bpy.path.abspath(s.cache))
        check_cache_folder(cache)
        conflict = cache_conflict(domain)
        if conflict is not None:
            raise InputError(conflict[1])
        freed = remove_leftovers(cache, restore=True)
        if freed:
            self.report({"INFO"}, f"mlvfx: removed an interrupted bake's frames ({freed / 2**20:.1f} MB)")
        low, high = _world_bounds(domain)
        extent = high - low
        voxel = float(extent.max()) / s.resolution
        dims: tuple[int, int, int]
        if s.model == "reference":
            dims = tuple(max(8, round(float(e) / voxel)) for e in extent)
        else:  # a surrogate runs 4x coarser: every axis a multiple of 4, and at least 4 coarse cells
            dims = tuple(max(16, 4 * round(float(e) / voxel / 4)) for e in extent)
        frames = list(range(s.frame_start, s.frame_end + 1))
        masks, emitter_of_frame = _emitter_masks(context, s.emitter, frames, low, voxel, dims)
        if all(0 in box for _, box, _ in masks):
            raise InputError(f"emitter {s.emitter.name!r} covers no voxel of the domain at this resolution")
        fps = context.scene.render.fps / context.scene.render.fps_base
        model = _resolve_model(s.model, max(dims))  # the grid as rounded for a surrogate
        obstacles = self._obstacles(context, domain, frames, low, voxel, dims, learned=model != "reference")
        dt = 1.0 / fps / s.substeps
        if model != "reference":
            from mlvfx.fluids.surrogate import dt_warning, resolution_warning

            warnings = [dt_warning(dt)]
            if s.model != AUTO:  # a model the artist named: is it the one for this resolution?
                warnings.append(resolution_warning(model, 3, max(dims)))
            for warning in warnings:
                if warning is not None:
                    self.report({"WARNING"}, f"mlvfx: {warning}")
        return {
            "domain": domain.name,
            "domain_uid": domain.session_uid,
            "cache": cache,
            "model": model,
            "shape": (dims[1], dims[2], dims[0]),  # solver order (Z = Blender -Y, Y = Blender Z up, X)
            "emitters": masks,
            "emitter_of_frame": emitter_of_frame,
            "obstacles": obstacles,
            "voxel": voxel,
            "origin": tuple(float(v) for v in low + 0.5 * voxel),
            "frames": frames,
            "dt": dt,
            "substeps": s.substeps,
            "buoyancy": s.buoyancy,
            "dissipation": s.dissipation,
            "vorticity": s.vorticity,
            "emission": s.emission,
        }

    def _obstacles(
        self,
        context: bpy.types.Context,
        domain: bpy.types.Object,
        frames: list[int],
        low: np.ndarray,
        voxel: float,
        dims: tuple[int, int, int],
        learned: bool = False,
    ) -> PackedMask | None:
        """The Obstacles collection's meshes voxelized at the first of ``frames``, in the solver's
        axis order (None without any). The solver's obstacles are static: one that moves over
        ``frames`` gets a warning, and so do ones too thin for a ``learned`` model and objects that
        are not meshes (skipped)."""
        from mlvfx.errors import InputError

        s = domain.mlvfx_smoke
        if s.obstacles is None:
            return None
        meshes = [o for o in s.obstacles.all_objects if o.type == "MESH" and o != domain]
        if s.emitter in meshes:
            raise InputError(
                f"the emitter {s.emitter.name!r} is in the obstacle collection {s.obstacles.name!r}: "
                "smoke cannot come out of a solid"
            )
        skipped = [o.name for o in s.obstacles.all_objects if o.type != "MESH" and o.type != "EMPTY"]
        if skipped:
            self.report(
                {"WARNING"},
                f"mlvfx: obstacles that are not meshes are left out ({', '.join(skipped[:3])}): "
                "convert them to meshes",
            )
        if not meshes:
            return None
        frame = frames[0]
        checked = [frames[0], frames[len(frames) // 2], frames[-1]]
        moving = [o.name for o in meshes if _may_move(o) and not _same_at(context, o, checked)]
        if moving:
            self.report(
                {"WARNING"},
                f"mlvfx: obstacles stay where they are at frame {frame} ({', '.join(moving[:3])} moves)",
            )
        solid = np.zeros(dims, bool)
        with _frame_kept(context.scene):
            context.scene.frame_set(frame)
            depsgraph = context.evaluated_depsgraph_get()
            for obj in meshes:
                solid |= _voxelize(obj, low, voxel, dims, depsgraph) > 0.5
        if not solid.any():
            return None
        if learned:
            from mlvfx.fluids.surrogate import THIN_OBSTACLE_CELLS, thin_obstacle_warning

            note = thin_obstacle_warning(solid)
            if note is not None:
                thick = THIN_OBSTACLE_CELLS * 4 * voxel
                self.report({"WARNING"}, f"mlvfx: {note} ({thick:.3g} units at this resolution)")
        return pack_mask(to_solver(solid.astype(np.float32)))

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.errors import ImageWriteError
        from mlvfx.fluids.reference import SmokeConfig, Source, Stepper
        from mlvfx.fluids.surrogate import INFERENCE_OPEN_INFLOW
        from mlvfx.io.atomic import make_temp_dir
        from mlvfx.io.volume import write_vdb
        from mlvfx.progress import check_cancel, report

        shape = plan["shape"]
        frames = plan["frames"]
        if "emitters" in plan:  # per frame, as _prepare makes it

            def emitter_mask(i: int) -> np.ndarray:
                return unpack_mask(plan["emitters"][i], shape)

            emitter_of_frame: list[int] = plan["emitter_of_frame"]
        else:  # one full [0, 1] mask for every frame (a plan written by hand)

            def emitter_mask(i: int) -> np.ndarray:
                return np.asarray(plan["mask"], np.float32)

            emitter_of_frame = [0] * len(frames)
        cache: Path = plan["cache"]
        try:  # the folder first: an unwritable project fails before any model or simulation work
            cache.parent.mkdir(parents=True, exist_ok=True)
            staging = make_temp_dir(cache.parent, _leftover_prefix(cache, "baking"))
        except OSError as exc:
            raise ImageWriteError(f"cannot create output: {exc.strerror or exc}", cache.parent) from None
        _live_staging.add(_key(staging))
        try:
            config = SmokeConfig(
                shape=shape,
                dt=plan["dt"],
                domain_width=plan["voxel"] * shape[2],
                buoyancy=plan["buoyancy"],
                density_dissipation=plan["dissipation"],
                vorticity=plan["vorticity"],
                boundary="open_top",
                open_inflow=INFERENCE_OPEN_INFLOW,  # smoke-free air through the open top, as the surrogate
                dtype="float32",
            )
            stepper: Any
            if plan["model"] == "reference":
                stepper = Stepper(config)
            else:  # the zoo's learned surrogate (downloaded on first use when online access is allowed)
                from mlvfx.fluids.surrogate import load_stepper

                report(progress, 0.0, f"loading smoke model {plan['model']}")
                with _kept_alive(staging):  # a download may take longer than LEFTOVER_AGE
                    stepper = load_stepper(plan["model"], config)
            density = velocity = None
            sources: list[Any] = []
            shown = -1
            packed_solid = plan.get("obstacles")
            solid = None if packed_solid is None else unpack_mask(packed_solid, shape) > 0.5
            for index, frame in enumerate(frames):
                if emitter_of_frame[index] != shown:  # the emitter moved (or this is the first frame)
                    shown = emitter_of_frame[index]
                    mask = emitter_mask(shown)
                    sources = [Source(mask, rate=plan["emission"])] if mask.any() else []
                for _ in range(plan["substeps"]):
                    check_cancel(cancel)
                    _touch(staging)  # alive: another Blender's Bake must not take it for a leftover
                    density, velocity = stepper.step(density, velocity, sources, solid)
                assert density is not None and velocity is not None
                # Velocity (Blender units per second) for motion blur, kept only where there is
                # smoke: a dense vector grid would make the cache several times larger.
                vel = np.where((density > VELOCITY_FLOOR)[..., None], velocity, 0.0).astype(np.float32)
                write_vdb(
                    staging / f"density_{frame:04d}.vdb",
                    {"density": density, "vel": vel},
                    voxel_size=plan["voxel"],
                    origin=plan["origin"],
                    up="z",
                )
                report(progress, (index + 1) / len(frames), f"frame {frame} ({index + 1}/{len(frames)})")
        except BaseException:
            _remove_staging(staging)
            raise
        return staging

    @staticmethod
    def _discard_result(plan: dict[str, Any], result: Any) -> None:
        _remove_staging(result)

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        from mlvfx.errors import InputError

        staging: Path = result
        cache: Path = plan["cache"]
        _forget_staging(staging)  # moved in or removed below
        try:
            uid = plan.get("domain_uid")  # the domain may have been renamed while the bake ran
            domain = next((o for o in bpy.data.objects if o.session_uid == uid), None)
            if domain is None:
                domain = bpy.data.objects.get(plan["domain"])
            if domain is None or not domain.mlvfx_smoke.is_domain:
                raise InputError(
                    f"smoke domain {plan['domain']!r} was deleted during the bake; nothing was changed"
                )
            conflict = cache_conflict(
                domain, _resolved(str(cache))
            )  # another domain may have baked there since
            if conflict is not None:
                raise InputError(conflict[1])
            swap_in(staging, cache)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        first = cache / f"density_{plan['frames'][0]:04d}.vdb"
        volume_obj = _volume_object(context, domain, first, plan["frames"])
        self.report({"INFO"}, f"mlvfx: baked {len(plan['frames'])} frames into {cache} ({volume_obj.name})")
        return {"FINISHED"}


_live_staging: set[str] = set()
"""Staging folders of this process's bakes that are running or wait for their ``_apply``."""

LEFTOVER_AGE = 1800.0
"""Seconds a staging folder of another process must have been untouched before a bake or Free Bake
removes it: a bake that is still running touches it at every substep."""


def _key(folder: Path) -> str:
    """A folder as the live set keeps it: resolved, so a cache reached through a symlink, ``..`` or
    a mapped drive is still recognised (a review)."""
    return str(_resolved(str(folder)))


_touched: dict[str, float] = {}


def _touch(folder: Path, every: float = 5.0) -> None:
    """Mark a staging folder alive (its mtime), at most once every ``every`` seconds: a network
    share pays for each touch."""
    import time

    now = time.monotonic()
    if now - _touched.get(str(folder), float("-inf")) < every:
        return
    _touched[str(folder)] = now
    with contextlib.suppress(OSError):
        os.utime(folder)


def _leftover_prefix(cache: Path, kind: str) -> str:
    return f".{cache.name}.{kind}-"


@contextlib.contextmanager
def _kept_alive(folder: Path, every: float = 60.0) -> Iterator[None]:
    """Touch ``folder`` every ``every`` seconds while the block runs (a model download, say)."""
    import threading

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            _touch(folder, every=0.0)

    thread = threading.Thread(target=beat, name="mlvfx: staging keep-alive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _touch(folder, every=0.0)


def _forget_staging(staging: Path) -> None:
    """No longer this process's running bake (moved into place, or about to be removed)."""
    _live_staging.discard(_key(staging))
    _touched.pop(str(staging), None)


def _remove_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    _forget_staging(staging)


def remove_leftovers(cache: Path, restore: bool = False) -> int:
    """Remove what interrupted bakes left beside ``cache``, and return the bytes freed.

    A bake writes its frames into a hidden staging folder ``.<cache>.baking-*`` next to the
    cache, and a swap-in moves the old cache aside as ``.<cache>.old-*`` until the new one is in,
    then renames it ``.<cache>.trash-*`` and removes it. If Blender quits or crashes in between,
    these stay. A bake can be the size of a disk.
    - ``.baking-*``: this process's running bakes are kept, and so are folders another process
      touched in the last :data:`LEFTOVER_AGE` seconds (another Blender may be baking there now).
    - ``.trash-*``: removed.
    - ``.old-*``: garbage when the cache is there (removed); without the cache it is the last
      bake's only copy, so it is kept, and with ``restore`` (a Bake, which replaces it anyway) the
      newest is put back as the cache (a review).
    """
    import time

    baking, old, trash = (_leftover_prefix(cache, kind) for kind in ("baking", "old", "trash"))
    try:
        siblings = [
            p for p in cache.parent.iterdir() if p.name.startswith((baking, old, trash)) and p.is_dir()
        ]
    except OSError:
        return 0
    siblings = [p for p in siblings if not p.is_symlink()]
    olds = sorted((p for p in siblings if p.name.startswith(old)), key=_mtime, reverse=True)
    if olds and not cache.exists():
        if restore:
            with contextlib.suppress(OSError):
                _rename_patiently(olds[0], cache)
        siblings = [p for p in siblings if not p.name.startswith(old)]  # the only copy: kept
    freed = 0
    now = time.time()
    for folder in siblings:
        if folder.name.startswith(baking):
            if _key(folder) in _live_staging:
                continue
            try:
                if now - folder.stat().st_mtime < LEFTOVER_AGE:
                    continue
            except OSError:
                continue
        try:
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            freed += size
    return freed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_FOLDER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Files a file browser leaves in any folder it shows; a bake may replace them."""


def check_cache_folder(cache: Path) -> None:
    """Refuse a cache path whose contents a bake would destroy: a file, or a folder holding anything
    but an earlier bake's ``density_*.vdb`` frames (a bake replaces the whole folder). ``//`` (the
    .blend's own folder) is the usual mistake.

    Raises:
        InputError: naming the path and the first foreign entry, or why the folder cannot be read.
    """
    from mlvfx.errors import InputError

    if cache.exists() and not cache.is_dir():
        raise InputError("the smoke cache must be a folder, and this is a file", cache)
    if not cache.is_dir():
        return
    try:
        entries = sorted(cache.iterdir())
    except OSError as exc:
        raise InputError(f"cannot read the smoke cache folder: {exc.strerror or exc}", cache) from None
    for entry in entries:
        if entry.name in _FOLDER_LITTER and entry.is_file():
            continue
        if not (entry.is_file() and entry.name.startswith("density_") and entry.suffix == ".vdb"):
            raise InputError(
                f"the smoke cache folder holds {entry.name!r}, which mlvfx did not bake; a bake replaces "
                "the whole folder, so choose a new or empty one",
                cache,
            )


def swap_in(staging: Path, cache: Path) -> None:
    """Replace ``cache`` by the finished ``staging`` folder; the old cache is removed only afterwards.

    The old cache is checked again first (:func:`check_cache_folder`): it may have changed since
    the bake started. If the new folder cannot be moved in, the old one is put back.

    Raises:
        ImageWriteError: the folder cannot be replaced (permissions, say).
    """
    from mlvfx.errors import ImageWriteError

    check_cache_folder(cache)
    old = None
    try:
        if cache.exists():
            old = cache.with_name(f"{_leftover_prefix(cache, 'old')}{uuid.uuid4().hex[:8]}")
            _rename_patiently(cache, old)
        _rename_patiently(staging, cache)
    except OSError as exc:
        if old is not None and not cache.exists():
            with contextlib.suppress(OSError):  # else the next Bake or Free Bake puts it back
                _rename_patiently(old, cache)
        raise ImageWriteError(f"cannot replace the smoke cache: {exc.strerror or exc}", cache) from None
    if old is not None:
        # Renamed before removal, so a .old-* folder only ever means a swap-in that stopped between
        # its two renames (the last bake's only copy), never a removal that half failed.
        suffix = old.name[len(_leftover_prefix(cache, "old")) :]  # not replace(): the cache may be "x.old-1"
        trash = old.with_name(_leftover_prefix(cache, "trash") + suffix)
        with contextlib.suppress(OSError):
            old.rename(trash)
            old = trash
        shutil.rmtree(old, ignore_errors=True)


RENAME_WAITS = (0.1, 0.3, 1.0)
"""Seconds to wait before each new try of a folder rename refused with PermissionError: on Windows
an indexer or a virus scanner holds a file it has just seen for a moment (an audit)."""


def _rename_patiently(source: Path, target: Path) -> None:
    import time

    for wait in RENAME_WAITS:
        try:
            source.rename(target)
            return
        except PermissionError:
            time.sleep(wait)
    source.rename(target)


def _volume_object(
    context: bpy.types.Context, domain: bpy.types.Object, first: Path, frames: list[int]
) -> bpy.types.Object:
    """The domain's Volume object (:func:`domain_volume`; a new one for a domain that has none),
    set to play the sequence ``density_<frame>.vdb`` of ``frames`` at those scene frames and
    nothing outside them."""
    obj = domain_volume(domain)
    if obj is None:
        name = f"{domain.name}_volume"
        obj = bpy.data.objects.new(name, bpy.data.volumes.new(name))
    if not obj.users_scene:  # new, or left in bpy.data without a scene
        context.scene.collection.objects.link(obj)
    obj.mlvfx_smoke.domain = domain
    volume = obj.data
    try:
        volume.filepath = bpy.path.relpath(str(first)) if bpy.data.is_saved else str(first)
    except ValueError:  # another drive than the .blend's on Windows: no relative path exists
        volume.filepath = str(first)
    # Blender numbers a sequence from 1: at scene frame f it loads file number
    # f - frame_start + 1 + frame_offset, so the offset frame_start - 1 loads density_<f>.vdb at f.
    # A single frame is a sequence too, else it would show on every frame of the shot; "CLIP" shows
    # nothing before the first baked frame (no smoke yet) and after the last (nothing baked there).
    volume.is_sequence = True
    volume.frame_start = frames[0]
    volume.frame_offset = frames[0] - 1
    volume.frame_duration = len(frames)
    volume.sequence_mode = "CLIP"
    context.evaluated_depsgraph_get()  # the scene's frame reaches the volume (else it loads file 0)
    volume.grids.load()
    # Motion blur reads the "vel" grid: Blender finds it by that name whenever the grids load.
    # Setting velocity_grid ourselves reported "Could not find grid with name vel" as an error after
    # every bake whose grids were not loaded (the scene's frame outside the baked range; an audit).
    volume.velocity_unit = "SECOND"
    if not volume.materials:
        volume.materials.append(_smoke_material())
    return obj


def _smoke_material() -> bpy.types.Material:
    """The shared "mlvfx Smoke" volume material; an existing one (maybe edited by the user) is kept."""
    mat = bpy.data.materials.get("mlvfx Smoke")
    if mat is not None:
        return mat
    mat = bpy.data.materials.new("mlvfx Smoke")
    tree = mat.node_tree
    tree.nodes.clear()
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    vol = tree.nodes.new("ShaderNodeVolumePrincipled")
    vol.location = (-300, 0)
    vol.inputs["Density"].default_value = 5.0
    tree.links.new(vol.outputs["Volume"], out.inputs["Volume"])
    return mat


class MLVFX_OT_free_smoke(bpy.types.Operator):
    """Delete the domain's baked frames and the Volume object that plays them"""

    bl_idname = "mlvfx.free_smoke"
    bl_label = "Free Bake"
    bl_options = {"REGISTER", "UNDO"}

    domain: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Domain", description="Domain object (empty: the active object)", options={"SKIP_SAVE"}
    )

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        # Files deleted from disk do not come back with Undo: ask first.
        return context.window_manager.invoke_confirm(  # type: ignore[no-any-return]
            self, event, message="Delete the baked smoke frames from disk? Undo does not bring them back."
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        domain = target_domain(context, self.domain)
        if domain is None:
            self.report({"ERROR"}, "select an mlvfx smoke domain")
            return {"CANCELLED"}
        if domain.library is not None:
            self.report({"ERROR"}, f"smoke domain {domain.name!r} is linked from another .blend")
            return {"CANCELLED"}
        cache = cache_path(domain)
        conflict = cache_conflict(domain)
        if conflict is not None:  # another domain's smoke: not ours to delete
            self.report({"ERROR"}, conflict[1])
            return {"CANCELLED"}
        volume_obj = domain_volume(domain)
        if volume_obj is None or cache is None or not _plays(volume_obj, cache):
            # Only frames this domain's Volume plays are known to be its bake: a Cache changed since,
            # or pointed at another shot's folder, is not deleted (a review).
            where = (
                "no Volume of it plays"
                if volume_obj is None
                else f"its Volume {volume_obj.name!r} does not play"
            )
            freed = 0 if cache is None else remove_leftovers(cache)
            if freed:  # a first bake that Blender's quitting interrupted: only its hidden folder
                self.report({"INFO"}, f"mlvfx: freed an interrupted bake's {freed / 2**20:.1f} MB")
                return {"FINISHED"}
            self.report(
                {"ERROR"},
                f"mlvfx: nothing freed: {where} the Cache folder {domain.mlvfx_smoke.cache!r} "
                "(delete a folder by hand if it is this domain's)",
            )
            return {"CANCELLED"}
        from mlvfx.errors import InputError

        try:
            check_cache_folder(cache)  # only an earlier bake's frames, never anything else
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        freed = remove_leftovers(cache)  # while the cache is there: a .old-* beside it is garbage
        # The Volume objects first (an Alt+D copy shares the data): none left playing deleted files,
        # and on Windows the files are no longer held open.
        data = volume_obj.data
        for obj in [o for o in bpy.data.objects if o.type == "VOLUME" and o.data == data]:
            bpy.data.objects.remove(obj)
        if data.users == 0:
            bpy.data.volumes.remove(data)
        frames = sorted(cache.glob("density_*.vdb"))
        removed = 0
        try:
            for frame in frames:
                frame.unlink()
                removed += 1
            if not any(p for p in cache.iterdir() if p.name not in _FOLDER_LITTER):
                shutil.rmtree(cache)
        except OSError as exc:
            why = exc.strerror or exc
            self.report(
                {"ERROR"},
                f"mlvfx: deleted {removed} of {len(frames)} baked frames, then: {why} ({cache})",
            )
            return {"CANCELLED"}
        also = f", and an interrupted bake's {freed / 2**20:.1f} MB" if freed else ""
        self.report({"INFO"}, f"mlvfx: freed {removed} baked frames of {domain.name!r}{also}")
        return {"FINISHED"}


classes = (MLVFX_PG_smoke, MLVFX_OT_add_smoke, MLVFX_OT_bake_smoke, MLVFX_OT_free_smoke)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


# Save As moves the .blend, and Blender remaps the baked Volume's relative path to keep pointing
# at the frames, but not the domain's Cache string: the Cache then named an empty folder beside the
# new file while the smoke played from the old one (an audit, stop 26). The same remap, done here:
# before the write, to the file being written; taken back in memory after a Save Copy.
_remapped: list[tuple[str, str]] = []


@bpy.app.handlers.persistent  # type: ignore[misc]
def _remap_caches_before_save(filepath: str, *_: Any) -> None:
    _remapped.clear()
    if not bpy.data.filepath or not filepath:
        return
    new_dir = Path(filepath).resolve().parent
    if new_dir == Path(bpy.data.filepath).resolve().parent:
        return
    for obj in bpy.data.objects:
        settings = getattr(obj, "mlvfx_smoke", None)
        if obj.library is not None or settings is None or not settings.cache.startswith("//"):
            continue
        where = Path(bpy.path.abspath(settings.cache))
        if not where.is_dir():
            continue
        original = settings.cache
        try:
            settings.cache = bpy.path.relpath(str(where), start=str(new_dir))
        except ValueError:  # another drive on Windows
            settings.cache = str(where)
        _remapped.append((obj.name, original))


@bpy.app.handlers.persistent  # type: ignore[misc]
def _restore_after_save_copy(filepath: str, *_: Any) -> None:
    if filepath and bpy.data.filepath and Path(filepath).resolve() != Path(bpy.data.filepath).resolve():
        _restore_remapped()  # a copy was written: this session's file has not moved


@bpy.app.handlers.persistent  # type: ignore[misc]
def _restore_after_failed_save(*_: Any) -> None:
    _restore_remapped()  # nothing was written: the file has not moved (a review)


def _restore_remapped() -> None:
    for name, cache in _remapped:
        obj = bpy.data.objects.get(name)
        if obj is not None:
            obj.mlvfx_smoke.cache = cache
    _remapped.clear()


_SAVE_HANDLERS = (
    ("save_pre", _remap_caches_before_save),
    ("save_post", _restore_after_save_copy),
    ("save_post_fail", _restore_after_failed_save),
)


def register() -> None:
    _register_classes()
    bpy.types.Object.mlvfx_smoke = bpy.props.PointerProperty(type=MLVFX_PG_smoke)
    for name, handler in _SAVE_HANDLERS:
        handlers = getattr(bpy.app.handlers, name, None)  # save_post_fail: Blender 4.1 and later
        if handlers is not None and handler not in handlers:
            handlers.append(handler)


def unregister() -> None:
    for name, handler in _SAVE_HANDLERS:
        handlers = getattr(bpy.app.handlers, name, None)
        if handlers is not None and handler in handlers:
            handlers.remove(handler)
    del bpy.types.Object.mlvfx_smoke
    _unregister_classes()
