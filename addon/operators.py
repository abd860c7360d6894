"""Operators. Heavy work runs in a worker thread (see jobs.py); Blender data is touched only here,
on the main thread, before the job starts and after it ends."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import bpy

from . import bridge, jobs, preferences

_MAPS_ORDER = ("normal", "height", "albedo", "roughness", "ao")

# The window-manager state of each running modal job (timer, progress cursor, status text), kept
# outside the operator: Blender frees a modal operator whose class is unregistered without calling
# its cancel(), so unregister() releases these itself (release_all_ui).
_ui_state: dict[int, tuple[Any, Any, Any]] = {}


class BackgroundJobOperator:
    """Shared flow of the long-running operators.

    ``_prepare`` reads Blender data (main thread), ``_compute`` runs the core with no Blender data
    (a worker thread when interactive), and ``_apply`` writes results back (main thread). In
    background mode and from scripts ``execute`` runs the three steps synchronously.
    """

    # UNDO without REGISTER: no Adjust Last Operation panel and no Repeat Last, which run
    # ``execute`` synchronously (minutes of a frozen UI with no progress and no Esc).
    bl_options = {"UNDO"}
    job_name = "mlvfx"
    _job: jobs.Job | None = None
    _timer: Any = None
    _plan: dict[str, Any] | None = None

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        raise NotImplementedError

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        raise NotImplementedError

    def _fail(self, exc: BaseException) -> set[str]:
        from mlvfx.errors import Cancelled, MlvfxError

        if isinstance(exc, Cancelled):
            self.report({"WARNING"}, "mlvfx: cancelled; nothing was changed")
        elif isinstance(exc, MlvfxError):
            self.report({"ERROR"}, _in_blender_terms(exc))
        else:  # a bug: the console gets the traceback to report, the artist one line
            traceback.print_exception(exc)
            self.report(
                {"ERROR"}, f"mlvfx internal error: {type(exc).__name__}: {exc} (traceback in the console)"
            )
        return {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Synchronous: background mode, scripts and farm jobs."""
        try:
            bridge.check_core()
            plan = self._prepare(context)
            result = self._compute(plan, None, None)
            return self._apply(context, plan, result)
        except Exception as exc:
            return self._fail(exc)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        try:
            bridge.check_core()
            plan = self._prepare(context)
        except Exception as exc:
            return self._fail(exc)
        return self._start_modal(context, plan)

    def _start_modal(self, context: bpy.types.Context, plan: dict[str, Any]) -> set[str]:
        """Start the worker, the timer and the progress cursor (recorded for unregister)."""
        self._plan = plan
        compute = self._compute
        discard = self._discard_result
        self._job = jobs.Job(
            self.job_name, lambda p, c: compute(plan, p, c), lambda result: discard(plan, result)
        ).start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        _ui_state[id(self._job)] = (wm, self._timer, context.workspace)
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
        if self._job is not None:
            _ui_state.pop(id(self._job), None)
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def cancel(self, context: bpy.types.Context) -> None:
        if self._job is not None:
            self._job.abandon()
        self._finish(context)

    @staticmethod
    def _discard_result(plan: dict[str, Any], result: Any) -> None:
        """Undo what ``_compute`` left outside Blender for ``_apply`` (nothing, by default). Called
        from any thread when the result will never be applied (see ``jobs.Job.abandon``)."""


def _in_blender_terms(exc: BaseException) -> str:
    """A core error as an artist in Blender reads it: offline mode is said to come from Blender's
    online access or the Offline preference, which set it, not from an environment variable."""
    from mlvfx.errors import OfflineError

    message = str(exc)
    if isinstance(exc, OfflineError):
        why = []
        if not bpy.app.online_access:
            why.append("Blender's online access is off (Preferences > System > Network)")
        prefs = preferences.get()
        if prefs is not None and prefs.offline:
            why.append("the mlvfx Offline preference is on")
        message = message.replace("MLVFX_OFFLINE=1 forbids", "offline mode forbids")
        if why:
            message += "; offline because " + " and ".join(why)
    return message


class SelectedImageMixin:
    """Targets the editor's active Image Texture node, or explicit material and node names."""

    # SKIP_SAVE: a name a script passed must not become the default of the next click in the UI.
    material: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Material",
        description="Material holding the node (empty: the Shader Editor's)",
        default="",
        options={"SKIP_SAVE"},
    )
    node: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Node",
        description="Image Texture node (empty: the active node)",
        default="",
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = getattr(context, "space_data", None)
        if space is None or getattr(space, "type", "") != "NODE_EDITOR":
            return True  # scripts and background mode name the material and node explicitly
        return bridge.active_image_node(context) is not None


class MLVFX_OT_generate_material(SelectedImageMixin, BackgroundJobOperator, bpy.types.Operator):
    """Build a material (normal, height, delit albedo, roughness) from the selected Image Texture"""

    bl_idname = "mlvfx.generate_material"
    bl_label = "Generate Material"
    job_name = "generate material"

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
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
            "quality": settings.quality,
            "tileable": settings.tileable,
            "normal_strength": settings.normal_strength,
            "height_mode": settings.height_mode,
            "pack": settings.pack,
            "replace": settings.replace,
            "object": context.object.name if getattr(context, "object", None) is not None else "",
            "profile_note": bridge.ignored_profile_note(node.image),
        }

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.ops.material import material

        return material(
            plan["pixels"],
            plan["maps"],
            tileable=plan["tileable"],
            method=plan["method"],
            quality=plan["quality"],
            progress=progress,
            cancel=cancel,
        )

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        from mlvfx.ops.material import write_material

        material = bpy.data.materials.get(plan["material"])
        if material is None or material.node_tree is None:
            self.report({"ERROR"}, f"material {plan['material']!r} was removed while mlvfx worked")
            return {"CANCELLED"}
        source = material.node_tree.nodes.get(plan["node"])
        folder, must_pack = bridge.output_folder(f"{material.name}_{plan['label']}", plan["pack"])
        try:
            files = write_material(result, folder, source=plan["label"])
            images = bridge.load_map_images({k: Path(v) for k, v in files.items()}, plan["label"], must_pack)
        finally:
            bridge.discard_folder(folder, must_pack)  # packed (or failed): the temp files are not needed
        replaced = 0
        if plan.get("replace", True) and source is not None:
            replaced = bridge.remove_earlier_maps(material, source)
            for role, image in images.items():  # the names the replaced images held are free again
                want = f"{plan['label']}_{role}"
                if image.name != want and want not in bpy.data.images:
                    image.name = want
        height, width = next(iter(result.maps.values())).shape[:2]
        on = bpy.data.objects.get(plan.get("object", ""))
        relief = bridge.relief_for(result.height_scale_px / max(height, width), on, material)
        _, warnings = bridge.build_material_nodes(
            material,
            images,
            source=source,
            normal_strength=plan["normal_strength"],
            height_mode=plan["height_mode"],
            relief=relief,
            label=f"mlvfx: {plan['label']}",
            albedo_alpha="albedo" in result.maps and result.maps["albedo"].shape[2] == 4,
        )
        for warning in [*warnings, *filter(None, [plan.get("profile_note")])]:
            self.report({"WARNING"}, warning)
        where = "packed into the .blend" if must_pack else str(folder)
        again = f"; replaced the earlier run's {replaced} nodes" if replaced else ""
        depth = f"; {relief.note}" if "height" in images and plan["height_mode"] != "NONE" else ""
        self.report({"INFO"}, f"mlvfx: {len(images)} maps for {material.name!r} ({where}){again}{depth}")
        return {"FINISHED"}


class MLVFX_OT_download_models(BackgroundJobOperator, bpy.types.Operator):
    """Download the newest version of every model in the zoo manifest into the cache now, with progress"""

    bl_idname = "mlvfx.download_models"
    bl_label = "Download Models Now"
    bl_options: set[str] = set()  # nothing to undo; not repeated from the redo panel either
    job_name = "download models"

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        preferences.apply_environment(context)
        if not bpy.app.online_access:
            self.report({"WARNING"}, "Blender's online access is off: only caches and mirrors are used")
        return {}

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.fluids.surrogate import pinned_smoke_version
        from mlvfx.ops.material import LEARNED_MODEL, learned_model_version
        from mlvfx.progress import scaled
        from mlvfx.zoo import fetch_model, load_manifest

        manifest = load_manifest()
        # The version of each model the tools use: the newest, or the one a show pinned (a review:
        # an offline show could not run the pinned one), not every published version.
        pinned = learned_model_version()
        models = [
            manifest.get(m, pinned if m == LEARNED_MODEL else pinned_smoke_version(m)) for m in manifest.ids()
        ]
        for index, entry in enumerate(models):
            step = scaled(progress, index / len(models), (index + 1) / len(models))
            fetch_model(entry, step, cancel=cancel)
        return len(models)

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        self.report({"INFO"}, f"mlvfx: {result} model(s) cached")
        return {"FINISHED"}


classes = (MLVFX_OT_generate_material, MLVFX_OT_download_models)


_register, _unregister = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register()


def release_all_ui() -> None:
    """Remove every running job's timer, progress cursor and status text (on unregister: Blender
    does not call cancel() on the modal operators it frees)."""
    for wm, timer, workspace in list(_ui_state.values()):
        try:
            wm.event_timer_remove(timer)
            wm.progress_end()
            if workspace is not None:
                workspace.status_text_set(None)
        except (ReferenceError, RuntimeError):  # the window or workspace is gone already
            pass
    _ui_state.clear()


def stop_all_jobs() -> None:
    """Cancel every background job, wait for the workers and release their UI state."""
    jobs.cancel_all()
    release_all_ui()


def unregister() -> None:
    stop_all_jobs()
    _unregister()
