"""The "mlvfx" tab in the Shader Editor's sidebar."""

from __future__ import annotations

import bpy


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
        node = getattr(getattr(context.space_data, "edit_tree", None), "nodes", None)
        active = node.active if node is not None else None
        if active is None or active.bl_idname != "ShaderNodeTexImage" or active.image is None:
            layout.label(text="Select an Image Texture node with a photo", icon="INFO")
        col = layout.column()
        col.prop(settings, "method")
        col.prop(settings, "tileable")
        col.prop(settings, "normal_strength")
        col.prop(settings, "height_mode")
        col.prop(settings, "ao")
        col.prop(settings, "max_resolution")
        col.prop(settings, "pack")
        layout.operator("mlvfx.generate_material", icon="MATERIAL")


classes = (MLVFX_PT_material,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
