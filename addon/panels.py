"""The "mlvfx" tab in the Shader Editor's sidebar."""

from __future__ import annotations

import time

import bpy

from . import bridge, preferences, smoke

_OFFLINE_CHECK_SECONDS = 3.0
_model_note: dict[str, tuple[float, str | None]] = {}


def learned_model_note(context: bpy.types.Context) -> str | None:
    """Why the learned method cannot run now, said before the artist clicks: mlvfx is offline
    (Blender's online access, or the Offline preference) and the model is neither cached nor in a
    mirror. None when it can run. Checked at most every few seconds (panels redraw often)."""
    prefs = preferences.get(context)
    if bpy.app.online_access and not (prefs is not None and prefs.offline):
        return None
    now = time.monotonic()
    hit = _model_note.get("material")
    if hit is not None and now - hit[0] < _OFFLINE_CHECK_SECONDS:
        return hit[1]
    note: str | None = None
    try:
        from mlvfx import zoo
        from mlvfx.ops.material import LEARNED_MODEL, learned_model_version

        preferences.apply_environment(context)
        entry = zoo.load_manifest().get(LEARNED_MODEL, learned_model_version())
        if not zoo.available_locally(entry.file(None, "safetensors")):
            note = f"Offline, and the {LEARNED_MODEL} {entry.version} model is not downloaded"
    except Exception:  # noqa: S110 - a hint only: Generate Material reports the real error
        pass
    _model_note["material"] = (now, note)
    return note


class ShaderEditorPanel:
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "mlvfx"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = context.space_data
        return space is not None and getattr(space, "tree_type", "") == "ShaderNodeTree"


class MLVFX_PT_material(ShaderEditorPanel, bpy.types.Panel):
    """Material maps from the selected Image Texture"""

    bl_label = "Material from Photo"
    bl_idname = "MLVFX_PT_material"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mlvfx_material
        if bridge.active_image_node(context) is None:
            layout.label(text="Select an Image Texture node with a photo", icon="INFO")
        col = layout.column()
        col.prop(settings, "method")
        note = learned_model_note(context) if settings.method == "learned" else None
        if note is not None:
            box = col.box()
            box.label(text=note, icon="ERROR")
            box.label(text="Allow online access (Preferences > System), set a mirror, or use Classical")
        row = col.row()
        row.enabled = settings.method == "learned"
        row.prop(settings, "quality")
        col.prop(settings, "tileable")
        col.prop(settings, "normal_strength")
        col.prop(settings, "height_mode")
        col.prop(settings, "ao")
        col.prop(settings, "max_resolution")
        col.prop(settings, "pack")
        col.prop(settings, "replace")
        layout.operator("mlvfx.generate_material", icon="MATERIAL")


class MLVFX_UL_exemplars(bpy.types.UIList):
    """Exemplar slots: a label colour and its texture"""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):  # type: ignore[no-untyped-def]
        row = layout.row(align=True)
        row.prop(item, "color", text="")
        row.prop(item, "image", text="")


class MLVFX_PT_texture(ShaderEditorPanel, bpy.types.Panel):
    """Texture tools on the selected Image Texture"""

    bl_label = "Texture Tools"
    bl_idname = "MLVFX_PT_texture"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mlvfx_texture
        col = layout.column(align=True)
        col.prop(settings, "equalize")
        col.operator("mlvfx.make_seamless", icon="MOD_ARRAY")
        col.separator()
        row = col.row(align=True)
        row.prop(settings, "width")
        row.prop(settings, "height")
        col.prop(settings, "count")
        col.prop(settings, "seed")
        col.prop(settings, "tileable")
        col.operator("mlvfx.grow_variations", icon="TEXTURE")
        box = layout.box()
        box.label(text="Paint from Labels")
        box.prop(settings, "label_image")
        row = box.row()
        row.template_list(
            "MLVFX_UL_exemplars", "", settings, "exemplars", settings, "active_exemplar", rows=3
        )
        buttons = row.column(align=True)
        buttons.operator("mlvfx.exemplar_add", icon="ADD", text="")
        buttons.operator("mlvfx.exemplar_remove", icon="REMOVE", text="")
        box.operator("mlvfx.paint_texture", icon="BRUSH_DATA")


class MLVFX_PT_smoke(bpy.types.Panel):
    """Learned smoke: emitter, domain settings and bake"""

    bl_label = "Smoke"
    bl_idname = "MLVFX_PT_smoke"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "mlvfx"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = context.active_object
        if obj is None or not obj.mlvfx_smoke.is_domain:
            layout.operator("mlvfx.add_smoke", icon="MOD_FLUIDSIM")
            return
        s = obj.mlvfx_smoke
        col = layout.column()
        col.prop(s, "emitter")
        col.prop(s, "obstacles")
        col.prop(s, "model")
        col.prop(s, "resolution")
        row = col.row(align=True)
        row.prop(s, "frame_start")
        row.prop(s, "frame_end")
        col.prop(s, "substeps")
        col.prop(s, "buoyancy")
        col.prop(s, "dissipation")
        col.prop(s, "vorticity")
        col.prop(s, "emission")
        col.prop(s, "cache")
        conflict = smoke.shown_conflict(obj)
        if conflict is not None:
            col.label(text=f"Cache folder also used by {conflict[0]!r}", icon="ERROR")
        row = layout.row(align=True)
        row.operator("mlvfx.bake_smoke", icon="RENDER_ANIMATION")
        row.operator("mlvfx.free_smoke", icon="TRASH")


classes = (MLVFX_PT_material, MLVFX_UL_exemplars, MLVFX_PT_texture, MLVFX_PT_smoke)


register, unregister = bpy.utils.register_classes_factory(classes)
