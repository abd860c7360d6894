"""Per-scene settings of the mlvfx tools."""

from __future__ import annotations

import bpy


class MLVFX_PG_material(bpy.types.PropertyGroup):
    """Options of Generate Material."""

    method: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Method",
        items=(
            ("learned", "Learned", "The zoo's learned material model (downloaded on first use)"),
            ("classical", "Classical", "Fast classical methods; no model needed"),
        ),
        default="learned",
    )
    quality: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Quality",
        items=(
            ("standard", "Standard", "One pass of the learned model"),
            ("high", "High", "Learned model also sees the photo turned and mirrored (8 views), ~6x slower"),
        ),
        default="standard",
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
            (
                "DISPLACEMENT",
                "Displacement",
                "Height drives the Material Output's Displacement (Displacement and Bump); the normal "
                "map stays in the frame unlinked, as both carry the same relief",
            ),
            (
                "BUMP",
                "Bump",
                "Height drives a Bump node in place of the normal map (which stays in the frame unlinked)",
            ),
            ("NONE", "None", "The normal map alone shades the relief; no height map is made"),
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
    replace: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Replace Previous Maps",
        description=(
            "Remove the map nodes an earlier Generate Material made from the same Image Texture node "
            "(their files stay on disk; Undo brings them back)"
        ),
        default=True,
    )


class MLVFX_PG_exemplar(bpy.types.PropertyGroup):
    """One label colour and the texture that fills its regions."""

    color: bpy.props.FloatVectorProperty(  # type: ignore[valid-type]
        name="Label Colour",
        subtype="COLOR_GAMMA",
        size=3,
        min=0.0,
        max=1.0,
        default=(1.0, 0.0, 0.0),
        description="The flat colour of this label in the label image",
    )
    image: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Exemplar", type=bpy.types.Image, description="Texture that fills regions of this colour"
    )


class MLVFX_PG_texture(bpy.types.PropertyGroup):
    """Options of the texture tools."""

    equalize: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Equalize Lighting",
        description=(
            "Make Seamless first divides out large-scale lighting (falloff, vignetting) so the tile "
            "shows no bright-dark step; colour images only, and the whole image changes"
        ),
        default=False,
    )

    count: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Variations", description="How many variations to grow", default=4, min=1, max=64
    )
    width: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Width",
        description="Width of grown textures (pixels; a painted texture has its label image's size)",
        default=1024,
        min=16,
        max=16384,
    )
    height: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Height",
        description="Height of grown textures (pixels; a painted texture has its label image's size)",
        default=1024,
        min=16,
        max=16384,
    )
    seed: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Seed", description="Random seed; another seed gives another variation", default=0, min=0
    )
    tileable: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Tileable", description="Grown and painted textures wrap around seamlessly", default=True
    )
    label_image: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Label Image", type=bpy.types.Image, description="Flat-colour label map to paint from"
    )
    exemplars: bpy.props.CollectionProperty(type=MLVFX_PG_exemplar)  # type: ignore[valid-type]
    active_exemplar: bpy.props.IntProperty(name="Active Exemplar", default=0, min=0)  # type: ignore[valid-type]


classes = (MLVFX_PG_material, MLVFX_PG_exemplar, MLVFX_PG_texture)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.mlvfx_material = bpy.props.PointerProperty(type=MLVFX_PG_material)
    bpy.types.Scene.mlvfx_texture = bpy.props.PointerProperty(type=MLVFX_PG_texture)


def unregister() -> None:
    del bpy.types.Scene.mlvfx_texture
    del bpy.types.Scene.mlvfx_material
    _unregister_classes()
