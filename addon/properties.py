"""Per-scene settings of the mlvfx tools."""

from __future__ import annotations

import bpy


class MLVFX_PG_material(bpy.types.PropertyGroup):
    """Options of Generate Material."""

    method: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Method",
        items=(
            ("classical", "Classical", "Fast classical methods; no model needed"),
            ("learned", "Learned", "The zoo's learned material model (downloaded on first use)"),
        ),
        default="classical",
    )
    tileable: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Tileable", description="The photo tiles; make the maps tile too", default=False
    )
    normal_strength: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Normal Strength", description="Strength of the Normal Map node", default=1.0, min=0.0, max=10.0
    )
    height_mode: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Height",
        items=(
            ("DISPLACEMENT", "Displacement", "Height drives the Material Output's Displacement"),
            ("BUMP", "Bump", "Height drives a Bump node on top of the normal map"),
            ("NONE", "None", "Don't use the height map"),
        ),
        default="DISPLACEMENT",
    )
    max_resolution: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Resolution Limit",
        description="Downscale photos larger than this (longest side, pixels; 0: no limit)",
        default=4096,
        min=0,
        max=16384,
    )
    ao: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Ambient Occlusion",
        description="Also compute an AO map (multiplied into the base colour)",
        default=False,
    )
    pack: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Pack Images",
        description="Pack the maps into the .blend instead of saving them next to it",
        default=False,
    )


classes = (MLVFX_PG_material,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.mlvfx_material = bpy.props.PointerProperty(type=MLVFX_PG_material)


def unregister() -> None:
    del bpy.types.Scene.mlvfx_material
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
