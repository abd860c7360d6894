"""Texture tools on the selected Image Texture: Make Seamless, Grow Variations, Paint from Labels."""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from . import bridge, preferences
from .operators import BackgroundJobOperator, SelectedImageMixin


class SourceImageMixin(SelectedImageMixin):
    """Reads the selected image for the texture tools and places their results beside it."""

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        from mlvfx.texture.maps import check_maps

        preferences.apply_environment(context)
        material, node = bridge.resolve_image_node(context, self.material, self.node)
        kind = bridge.image_kind(node.image)
        read = bridge.image_to_array if kind == "color" else bridge.data_array
        pixels = read(node.image)
        check_maps(pixels, name=node.image.name)  # a too-small image is named in the error
        return {
            "material": material.name,
            "node": node.name,
            "label": bridge.source_label(node.image),
            "kind": kind,
            "pixels": pixels,
            "float": bool(node.image.is_float),
            "settings": _settings(context),
        }

    def _place(self, plan: dict[str, Any], arrays: dict[str, Any], title: str) -> int:
        images = bridge.save_new_images(arrays, f"{plan['label']}_{title}", plan["kind"], hdr=plan["float"])
        material = bpy.data.materials.get(plan["material"])
        if material is not None and material.node_tree is not None:
            near = material.node_tree.nodes.get(plan["node"])
            bridge.add_image_nodes(material.node_tree, list(images.values()), near, f"mlvfx: {title}")
        return len(images)


def _settings(context: bpy.types.Context) -> dict[str, Any]:
    s = context.scene.mlvfx_texture
    return {
        "count": s.count,
        "size": (s.height, s.width),
        "seed": s.seed,
        "tileable": s.tileable,
        "equalize": s.equalize,
    }


class MLVFX_OT_make_seamless(SourceImageMixin, BackgroundJobOperator, bpy.types.Operator):
    """Make the selected texture tile seamlessly (a new image; the original is kept)"""

    bl_idname = "mlvfx.make_seamless"
    bl_label = "Make Seamless"
    job_name = "make seamless"

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.ops.texture import make_tileable

        settings = plan["settings"]
        # Lighting is a colour image's: a Non-Color height or roughness map is tiled as it is.
        equalize = bool(settings.get("equalize")) and plan["kind"] == "color"
        return make_tileable(
            plan["pixels"], seed=settings["seed"], equalize=equalize, progress=progress, cancel=cancel
        )

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        self._place(plan, {f"{plan['label']}_seamless": result}, "seamless")
        self.report({"INFO"}, f"mlvfx: seamless version of {plan['label']!r} added")
        return {"FINISHED"}


class MLVFX_OT_grow_variations(SourceImageMixin, BackgroundJobOperator, bpy.types.Operator):
    """Grow new non-repeating variations of the selected texture at the chosen size"""

    bl_idname = "mlvfx.grow_variations"
    bl_label = "Grow Variations"
    job_name = "grow variations"

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.ops.texture import grow
        from mlvfx.progress import scaled

        s = plan["settings"]
        out = {}
        for i in range(s["count"]):
            step = scaled(progress, i / s["count"], (i + 1) / s["count"])
            out[f"{plan['label']}_var{s['seed'] + i:03d}"] = grow(
                plan["pixels"],
                s["size"],
                seed=s["seed"] + i,
                tileable=s["tileable"],
                progress=step,
                cancel=cancel,
            )
        return out

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        n = self._place(plan, result, "variations")
        self.report({"INFO"}, f"mlvfx: {n} variation(s) of {plan['label']!r} added")
        return {"FINISHED"}


def same_channels(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Exemplars brought to one channel layout: grey ones repeated to RGB when any is colour, and an
    opaque alpha added when any has alpha (an RGB slot beside an RGBA one is not an error)."""
    colour = any(a.shape[2] >= 3 for a in arrays)
    alpha = any(a.shape[2] in (2, 4) for a in arrays)
    out = []
    for a in arrays:
        has_alpha = a.shape[2] in (2, 4)
        body = a[..., : a.shape[2] - 1] if has_alpha else a
        if colour and body.shape[2] == 1:
            body = np.repeat(body, 3, axis=2)
        if alpha:
            body = np.concatenate([body, a[..., -1:] if has_alpha else np.ones_like(a[..., :1])], axis=2)
        out.append(np.ascontiguousarray(body, dtype=np.float32))
    return out


class MLVFX_OT_paint_texture(BackgroundJobOperator, bpy.types.Operator):
    """Fill each colour region of the label image with texture from its exemplar slot"""

    bl_idname = "mlvfx.paint_texture"
    bl_label = "Paint from Labels"
    job_name = "paint texture"

    def _prepare(self, context: bpy.types.Context) -> dict[str, Any]:
        from mlvfx.errors import InputError
        from mlvfx.texture.maps import check_maps

        preferences.apply_environment(context)
        s = context.scene.mlvfx_texture
        if s.label_image is None:
            raise InputError("choose a label image first")
        if not len(s.exemplars):
            raise InputError("add at least one exemplar slot with an image")
        seen: dict[tuple[int, ...], int] = {}
        for number, slot in enumerate(s.exemplars, start=1):  # slots as the list shows them, from 1
            colour = tuple(round(c * 255) for c in slot.color)
            hex_colour = "#" + "".join(f"{c:02x}" for c in colour)
            if slot.image is None:
                raise InputError(
                    f"exemplar slot {number} ({hex_colour}) has no image; choose one or remove the slot"
                )
            if colour in seen:
                raise InputError(
                    f"exemplar slots {seen[colour]} and {number} both use label colour {hex_colour}; "
                    "give each colour of the label image one slot"
                )
            seen[colour] = number
        slots = list(s.exemplars)
        kinds = {bridge.image_kind(slot.image) for slot in slots}
        if len(kinds) > 1:
            raise InputError("exemplars mix colour and Non-Color images; use one kind")
        kind = kinds.pop()
        read = bridge.image_to_array if kind == "color" else bridge.data_array
        exemplars = [read(slot.image) for slot in slots]
        exemplars = same_channels(exemplars)
        for slot, pixels in zip(slots, exemplars, strict=True):
            check_maps(pixels, name=slot.image.name)
        from mlvfx.ops.texture import THIN_LABEL_PX, labels_from_colors, thin_labels

        label_rgb = bridge.label_array(s.label_image)
        colours = [tuple(round(c * 255) for c in slot.color) for slot in slots]
        # The file's path names it in errors (and tells a JPEG, whose compression breaks flat colours).
        where = bpy.path.abspath(s.label_image.filepath) if s.label_image.filepath else s.label_image.name
        index = labels_from_colors(label_rgb, colours, name=where)  # errors before the job starts
        thin = thin_labels(index, tileable=s.tileable)
        if thin:
            names = ", ".join(f"slot {v + 1}" for v in thin)
            self.report(
                {"WARNING"},
                f"mlvfx: the label colour of {names} in {s.label_image.name!r} has no region "
                f"{THIN_LABEL_PX} px wide; regions this thin may take their neighbours' texture",
            )
        return {
            "label": bridge.source_label(s.label_image),
            "labels": label_rgb,
            "index": index,
            "colors": colours,
            "exemplars": exemplars,
            "float": any(bool(slot.image.is_float) for slot in slots),
            "kind": kind,
            "settings": _settings(context),
        }

    @staticmethod
    def _compute(plan: dict[str, Any], progress: Any, cancel: Any) -> Any:
        from mlvfx.ops.texture import labels_from_colors, paint

        if "index" in plan:  # matched on the main thread already, where its errors are reported
            labels = plan["index"]
        else:
            labels = labels_from_colors(plan["labels"], plan["colors"], name=plan["label"])
        exemplars = dict(enumerate(plan["exemplars"]))
        s = plan["settings"]
        return paint(
            labels, exemplars, seed=s["seed"], tileable=s["tileable"], progress=progress, cancel=cancel
        )

    def _apply(self, context: bpy.types.Context, plan: dict[str, Any], result: Any) -> set[str]:
        name = f"{plan['label']}_painted"
        image = bridge.save_new_images({name: result}, name, plan["kind"], hdr=plan["float"])[name]
        self.report({"INFO"}, f"mlvfx: painted texture from {plan['label']!r} added as image {image.name!r}")
        return {"FINISHED"}


class MLVFX_OT_exemplar_add(bpy.types.Operator):
    """Add an exemplar slot (a label colour and its texture)"""

    bl_idname = "mlvfx.exemplar_add"
    bl_label = "Add Exemplar"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = context.scene.mlvfx_texture
        s.exemplars.add()
        s.active_exemplar = len(s.exemplars) - 1
        return {"FINISHED"}


class MLVFX_OT_exemplar_remove(bpy.types.Operator):
    """Remove the active exemplar slot"""

    bl_idname = "mlvfx.exemplar_remove"
    bl_label = "Remove Exemplar"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.mlvfx_texture.exemplars) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        s = context.scene.mlvfx_texture
        if not 0 <= s.active_exemplar < len(s.exemplars):
            self.report({"ERROR"}, f"no exemplar slot {s.active_exemplar + 1} (there are {len(s.exemplars)})")
            return {"CANCELLED"}
        s.exemplars.remove(s.active_exemplar)
        s.active_exemplar = max(0, min(s.active_exemplar, len(s.exemplars) - 1))
        return {"FINISHED"}


classes = (
    MLVFX_OT_make_seamless,
    MLVFX_OT_grow_variations,
    MLVFX_OT_paint_texture,
    MLVFX_OT_exemplar_add,
    MLVFX_OT_exemplar_remove,
)


register, unregister = bpy.utils.register_classes_factory(classes)
