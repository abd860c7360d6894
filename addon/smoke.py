"""Learned smoke in Blender: turn a mesh into an emitter in a new domain, bake to an OpenVDB sequence,
and play it back on a Volume object.

The bake runs the core stepper in a worker thread and writes each frame with the core's OpenVDB
writer (through the openvdb module bundled with Blender). It bakes into a fresh folder and swaps it
in only when every frame is written, so a cancelled or failed rebake leaves the previous cache as it was.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from . import preferences
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
                f"Learned surrogate {entry.id} {entry.version} from the zoo",
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
        name="Emitter", type=bpy.types.Object, description="Mesh that emits smoke"
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


def _world_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    return corners.min(axis=0), corners.max(axis=0)


class MLVFX_OT_add_smoke(bpy.types.Operator):
    """Turn the selected mesh into a smoke emitter inside a new mlvfx smoke domain"""

    bl_idname = "mlvfx.add_smoke"
    bl_label = "Add Learned Smoke"
    bl_options = {"REGISTER", "UNDO"}

    emitter: bpy.props.StringProperty(name="Emitter", description="Mesh object (empty: the active object)")  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = bpy.data.objects.get(self.emitter) if self.emitter else context.active_object
        if obj is None or obj.type != "MESH":
            self.report({"ERROR"}, "select a mesh object to emit smoke")
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
        settings.cache = f"//mlvfx_smoke/{domain.name}"
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


def _voxelize(
    obj: bpy.types.Object, origin: np.ndarray, voxel: float, dims: tuple[int, int, int]
) -> np.ndarray:
    """Inside-mask of a mesh on a Blender-axis grid (X, Y, Z), voxel centres at origin + (i + 0.5) * voxel."""
    from mathutils.bvhtree import BVHTree

    depsgraph = bpy.context.evaluated_depsgraph_get()
    tree = BVHTree.FromObject(obj, depsgraph)
    inv = obj.matrix_world.inverted()
    low, high = _world_bounds(obj)
    lo = np.maximum(np.floor((low - origin) / voxel).astype(int), 0)
    hi = np.minimum(np.ceil((high - origin) / voxel).astype(int) + 1, np.array(dims))
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


class MLVFX_OT_bake_smoke(BackgroundJobOperator, bpy.types.Operator):
    """Simulate the domain's smoke over its frame range into an OpenVDB sequence and show it as a Volume"""

    bl_idname = "mlvfx.bake_smoke"
    bl_label = "Bake Smoke"
    job_name = "bake smoke"

    domain: bpy.props.StringProperty(name="Domain", description="Domain object (empty: the active object)")  # type: ignore[valid-type]

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        from mlvfx.errors import InputError

        preferences.apply_environment(context)
        domain = bpy.data.objects.get(self.domain) if self.domain else context.active_object
        if domain is None or not domain.mlvfx_smoke.is_domain:
            raise InputError("select an mlvfx smoke domain (use Add Learned Smoke first)")
        s = domain.mlvfx_smoke
        if s.emitter is None:
            raise InputError(f"smoke domain {domain.name!r} has no emitter")
        if s.frame_end < s.frame_start:
            raise InputError(f"frame range {s.frame_start}-{s.frame_end} is empty")
        if not s.cache.strip():
            raise InputError(f"smoke domain {domain.name!r} has no cache folder: set Cache first")
        if not bpy.data.is_saved and s.cache.startswith("//"):
            raise InputError("save the .blend first: the smoke cache is written next to it")
        check_cache_folder(Path(bpy.path.abspath(s.cache)))
        low, high = _world_bounds(domain)
        extent = high - low
        voxel = float(extent.max()) / s.resolution
        if s.model == "reference":
            dims = tuple(max(8, round(float(e) / voxel)) for e in extent)  # Blender X, Y, Z
        else:  # a surrogate runs 4x coarser: every axis a multiple of 4, and at least 4 coarse cells
            dims = tuple(max(16, 4 * round(float(e) / voxel / 4)) for e in extent)
        mask = _voxelize(s.emitter, low, voxel, dims)
        if not mask.any():
            raise InputError(f"emitter {s.emitter.name!r} covers no voxel of the domain at this resolution")
        solver_mask = np.transpose(mask, (1, 2, 0))  # (Z_solver = Y, Y_solver = Z up, X)
        fps = context.scene.render.fps / context.scene.render.fps_base
        return {
            "domain": domain.name,
            "cache": Path(bpy.path.abspath(s.cache)),
            "model": _resolve_model(s.model, max(dims)),  # the grid as rounded for a surrogate
            "shape": solver_mask.shape,
            "mask": solver_mask,
            "voxel": voxel,
            "origin": tuple(float(v) for v in low + 0.5 * voxel),
            "frames": list(range(s.frame_start, s.frame_end + 1)),
            "dt": 1.0 / fps / s.substeps,
            "substeps": s.substeps,
            "buoyancy": s.buoyancy,
            "dissipation": s.dissipation,
            "vorticity": s.vorticity,
            "emission": s.emission,
        }

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.fluids.reference import SmokeConfig, Source, Stepper
        from mlvfx.fluids.surrogate import INFERENCE_OPEN_INFLOW
        from mlvfx.io.volume import write_vdb
        from mlvfx.progress import check_cancel, report

        shape = plan["shape"]
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
            stepper = load_stepper(plan["model"], config)
        sources = [Source(plan["mask"], rate=plan["emission"])]
        cache: Path = plan["cache"]
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.baking-", dir=cache.parent))
        try:
            density = velocity = None
            frames = plan["frames"]
            for index, frame in enumerate(frames):
                for _ in range(plan["substeps"]):
                    check_cancel(cancel)
                    density, velocity = stepper.step(density, velocity, sources)
                assert density is not None
                write_vdb(
                    staging / f"density_{frame:04d}.vdb",
                    {"density": density},
                    voxel_size=plan["voxel"],
                    origin=plan["origin"],
                    up="z",
                )
                report(progress, (index + 1) / len(frames), f"frame {frame} ({index + 1}/{len(frames)})")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        staging: Path = result
        cache: Path = plan["cache"]
        try:
            swap_in(staging, cache)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        domain = bpy.data.objects.get(plan["domain"])
        first = cache / f"density_{plan['frames'][0]:04d}.vdb"
        volume_obj = _volume_object(domain.name if domain else plan["domain"], first, plan["frames"])
        self.report({"INFO"}, f"mlvfx: baked {len(plan['frames'])} frames into {cache} ({volume_obj.name})")
        return {"FINISHED"}


_FOLDER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Files a file browser leaves in any folder it shows; a bake may replace them."""


def check_cache_folder(cache: Path) -> None:
    """Refuse a cache path whose contents a bake would destroy: a file, or a folder holding anything
    but an earlier bake's ``density_*.vdb`` frames (a bake replaces the whole folder). ``//`` (the
    .blend's own folder) is the usual mistake.

    Raises:
        InputError: naming the path and the first foreign entry.
    """
    from mlvfx.errors import InputError

    if cache.exists() and not cache.is_dir():
        raise InputError("the smoke cache must be a folder, and this is a file", cache)
    if not cache.is_dir():
        return
    for entry in sorted(cache.iterdir()):
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
    the bake started."""
    check_cache_folder(cache)
    old = None
    if cache.exists():
        old = cache.with_name(f".{cache.name}.old-{uuid.uuid4().hex[:8]}")
        cache.rename(old)
    staging.rename(cache)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _volume_object(domain_name: str, first: Path, frames: list[int]) -> bpy.types.Object:
    name = f"{domain_name}_volume"
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "VOLUME":
        volume = bpy.data.volumes.new(name)
        obj = bpy.data.objects.new(name, volume)
        bpy.context.scene.collection.objects.link(obj)
    volume = obj.data
    volume.filepath = bpy.path.relpath(str(first)) if bpy.data.is_saved else str(first)
    volume.is_sequence = len(frames) > 1
    volume.frame_start = frames[0]
    volume.frame_duration = len(frames)
    volume.sequence_mode = "CLIP"
    volume.grids.load()
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


classes = (MLVFX_PG_smoke, MLVFX_OT_add_smoke, MLVFX_OT_bake_smoke)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Object.mlvfx_smoke = bpy.props.PointerProperty(type=MLVFX_PG_smoke)


def unregister() -> None:
    del bpy.types.Object.mlvfx_smoke
    _unregister_classes()
