"""Operators. Heavy work runs in a worker thread (see jobs.py); Blender data is touched only here,
on the main thread, before the job starts and after it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from . import bridge, jobs, preferences

_MAPS_ORDER = ("normal", "height", "albedo", "roughness", "ao")


class MLVFX_OT_generate_material(bpy.types.Operator):
    """Build a material (normal, height, delit albedo, roughness) from the selected Image Texture"""

    bl_idname = "mlvfx.generate_material"
    bl_label = "Generate Material"
    bl_options = {"REGISTER", "UNDO"}

    material: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Material", description="Material to edit (empty: the Shader Editor's material)", default=""
    )
    node: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Node", description="Image Texture node holding the photo (empty: the active node)", default=""
    )

    _job: jobs.Job | None = None
    _timer: Any = None
    _plan: dict[str, Any] | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = getattr(context, "space_data", None)
        if space is None or getattr(space, "type", "") != "NODE_EDITOR":
            return True  # scripts and background mode name the material and node explicitly
        node = getattr(getattr(space, "edit_tree", None), "nodes", None)
        active = node.active if node is not None else None
        return active is not None and active.bl_idname == "ShaderNodeTexImage" and active.image is not None

    # -- shared steps ---------------------------------------------------------------------------

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        """Read everything the worker needs from Blender (main thread)."""
        preferences.apply_environment(context)
        settings = context.scene.mlvfx_material
        material, node = bridge.resolve_image_node(context, self.material, self.node)
        pixels = bridge.downscale(bridge.image_to_array(node.image), settings.max_resolution)
        maps = ["normal", "albedo", "roughness"]
        if settings.height_mode != "NONE":
            maps.append("height")
        if settings.ao:
            maps.append("ao")
        return {
            "material": material.name,
            "node": node.name,
            "label": bridge.source_label(node.image),
            "pixels": pixels,
            "maps": tuple(m for m in _MAPS_ORDER if m in maps),
            "method": settings.method,
            "tileable": settings.tileable,
            "normal_strength": settings.normal_strength,
            "height_mode": settings.height_mode,
            "pack": settings.pack,
        }

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        """The core call; touches no Blender data, so it may run in a worker thread."""
        from mlvfx.ops.material import material

        return material(
            plan["pixels"],
            plan["maps"],
            tileable=plan["tileable"],
            method=plan["method"],
            progress=progress,
            cancel=cancel,
        )

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        """Write the maps to files, load them as new images and wire the nodes (main thread)."""
        from mlvfx.ops.material import write_material

        material = bpy.data.materials.get(plan["material"])
        if material is None or material.node_tree is None:
            self.report({"ERROR"}, f"material {plan['material']!r} was removed while mlvfx worked")
            return {"CANCELLED"}
        source = material.node_tree.nodes.get(plan["node"])
        folder, must_pack = bridge.output_folder(f"{material.name}_{plan['label']}")
        files = write_material(result, folder, source=plan["label"])
        images = bridge.load_map_images(
            {k: Path(v) for k, v in files.items()}, plan["label"], pack=must_pack or plan["pack"]
        )
        relief = 0.02
        _, kept = bridge.build_material_nodes(
            material,
            images,
            source=source,
            normal_strength=plan["normal_strength"],
            height_mode=plan["height_mode"],
            relief=relief,
            label=f"mlvfx: {plan['label']}",
        )
        if kept:
            self.report(
                {"WARNING"}, "kept existing links into " + ", ".join(kept) + "; new maps left unconnected"
            )
        where = "packed into the .blend" if (must_pack or plan["pack"]) else str(folder)
        self.report({"INFO"}, f"mlvfx: {len(images)} maps for {material.name!r} ({where})")
        return {"FINISHED"}

    def _fail(self, exc: BaseException) -> set[str]:
        from mlvfx.errors import Cancelled, MlvfxError

        if isinstance(exc, Cancelled):
            self.report({"WARNING"}, "mlvfx: cancelled; nothing was changed")
        elif isinstance(exc, MlvfxError):
            self.report({"ERROR"}, str(exc))
        else:
            self.report({"ERROR"}, f"mlvfx internal error: {type(exc).__name__}: {exc}")
        return {"CANCELLED"}

    # -- entry points ---------------------------------------------------------------------------

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Synchronous: background mode, scripts and farm jobs."""
        try:
            plan = self._prepare(context)
            result = self._compute(plan, None, None)
            return self._apply(context, plan, result)
        except Exception as exc:
            return self._fail(exc)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        try:
            plan = self._prepare(context)
        except Exception as exc:
            return self._fail(exc)
        self._plan = plan
        self._job = jobs.Job("generate material", lambda p, c: self._compute(plan, p, c)).start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        job = self._job
        assert job is not None and self._plan is not None
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()  # the worker stops at its next check point and reports Cancelled
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the UI stays usable while the job runs
        done = job.poll()
        context.window_manager.progress_update(round(job.fraction * 100))
        if context.workspace is not None:
            context.workspace.status_text_set(f"mlvfx: {job.message} {job.fraction:.0%} (Esc to cancel)")
        if not done:
            return {"RUNNING_MODAL"}
        self._finish(context)
        if job.error is not None:
            return self._fail(job.error)
        try:
            return self._apply(context, self._plan, job.result)
        except Exception as exc:
            return self._fail(exc)

    def _finish(self, context: bpy.types.Context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def cancel(self, context: bpy.types.Context) -> None:
        if self._job is not None:
            self._job.cancel()
        self._finish(context)


class MLVFX_OT_download_models(bpy.types.Operator):
    """Download every model in the zoo manifest into the cache now, with progress"""

    bl_idname = "mlvfx.download_models"
    bl_label = "Download Models Now"

    def execute(self, context: bpy.types.Context) -> set[str]:
        from mlvfx.errors import MlvfxError
        from mlvfx.zoo import load_manifest

        preferences.apply_environment(context)
        if not bpy.app.online_access:
            self.report({"WARNING"}, "Blender's online access is disabled (Preferences > System > Network)")
        try:
            manifest = load_manifest()
            from mlvfx.zoo import fetch

            wm = context.window_manager
            wm.progress_begin(0, 100)
            try:
                for index, model in enumerate(manifest.models):
                    fetch(model.id, model.version)
                    wm.progress_update(round(100 * (index + 1) / max(1, len(manifest.models))))
            finally:
                wm.progress_end()
        except MlvfxError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"mlvfx: {len(manifest.models)} model(s) cached")
        return {"FINISHED"}


classes = (MLVFX_OT_generate_material, MLVFX_OT_download_models)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    jobs.cancel_all()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
