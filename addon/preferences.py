"""Add-on preferences: model zoo, cache, offline mode, device and threads."""

from __future__ import annotations

import os

import bpy

_ENV_KEYS = (
    "MLVFX_ZOO_URL",
    "MLVFX_ZOO_MIRRORS",
    "MLVFX_CACHE_DIR",
    "MLVFX_OFFLINE",
    "MLVFX_DEVICE",
    "MLVFX_THREADS",
    "MLVFX_MATERIAL_MODEL",
    "MLVFX_SMOKE_MODELS",
)


def _device_items(self: bpy.types.AddonPreferences, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    items = [("AUTO", "Automatic", "CUDA when available, else CPU"), ("cpu", "CPU", "Run on the CPU")]
    try:
        import torch

        if torch.cuda.is_available():
            items.append(("cuda", "CUDA", "Run on the NVIDIA GPU"))
        if torch.backends.mps.is_available():
            items.append(("mps", "Metal (MPS)", "Run on the Apple GPU"))
    except ImportError:
        pass
    return items


class MLVFX_AP_preferences(bpy.types.AddonPreferences):
    """mlvfx settings shared by every .blend file."""

    bl_idname = __package__

    zoo_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Zoo URL", description="Base URL of the model zoo (empty: the manifest's URLs)", default=""
    )
    mirrors: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Mirrors", description="Local mirror folders, separated by the OS path separator", default=""
    )
    cache_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Cache Folder",
        description="Where models are cached (empty: the user cache folder)",
        default="",
        subtype="DIR_PATH",
    )
    offline: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Offline",
        description="Never use the network; models must be cached or on a mirror",
        default=False,
    )
    device: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Device", description="Where the models run", items=_device_items
    )
    threads: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Threads", description="CPU threads for the models (0: automatic)", default=0, min=0, max=256
    )
    material_model: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Material Model",
        description="Pin the learned material model's version for a show, e.g. material@0.7.0 (empty: "
        "the newest in the zoo; a newer model would change the maps)",
        default="",
    )
    smoke_models: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Smoke Models",
        description="Pin the learned smoke models' versions for a show, e.g. smoke3d@0.2.0, "
        "smoke3d_128@0.2.0 (empty: the newest in the zoo; a newer model would change a re-bake)",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "zoo_url")
        col.prop(self, "mirrors")
        col.prop(self, "cache_dir")
        row = col.row()
        row.prop(self, "offline")
        if not bpy.app.online_access:
            row.label(text="Blender's online access is off: downloads are disabled", icon="INFO")
        col.prop(self, "device")
        col.prop(self, "threads")
        col.prop(self, "material_model")
        col.prop(self, "smoke_models")
        layout.operator("mlvfx.download_models", icon="IMPORT")


def get(context: bpy.types.Context | None = None) -> MLVFX_AP_preferences | None:
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None  # type: ignore[return-value]


def apply_environment(context: bpy.types.Context | None = None) -> None:
    """Hand the preferences to the core through its environment variables (read at call time)."""
    prefs = get(context)
    values: dict[str, str] = {}
    if prefs is not None:
        if prefs.zoo_url:
            values["MLVFX_ZOO_URL"] = prefs.zoo_url
        if prefs.mirrors:
            values["MLVFX_ZOO_MIRRORS"] = prefs.mirrors
        if prefs.cache_dir:
            values["MLVFX_CACHE_DIR"] = bpy.path.abspath(prefs.cache_dir)
        if prefs.device and prefs.device != "AUTO":
            values["MLVFX_DEVICE"] = prefs.device
        if prefs.threads:
            values["MLVFX_THREADS"] = str(prefs.threads)
        if prefs.material_model.strip():
            values["MLVFX_MATERIAL_MODEL"] = prefs.material_model.strip()
        if prefs.smoke_models.strip():
            values["MLVFX_SMOKE_MODELS"] = prefs.smoke_models.strip()
    if (prefs is not None and prefs.offline) or not bpy.app.online_access:
        values["MLVFX_OFFLINE"] = "1"
    # Preferences override the environment Blender started with (a studio's MLVFX_CACHE_DIR, say);
    # a preference cleared again gives the original value back.
    for key in _ENV_KEYS:
        if key in values:
            os.environ[key] = values[key]
        elif _startup_env.get(key) is not None:
            os.environ[key] = _startup_env[key]
        else:
            os.environ.pop(key, None)


_startup_env: dict[str, str] = {k: v for k in _ENV_KEYS if (v := os.environ.get(k)) is not None}


def restore_environment() -> None:
    """Give the process the environment Blender started with. On unregister: a reinstall (an
    upgrade) imports this module again and reads ``_startup_env`` anew, which must not take the
    preferences' values for the studio's (cleared preferences then kept them, an audit)."""
    for key in _ENV_KEYS:
        if key in _startup_env:
            os.environ[key] = _startup_env[key]
        else:
            os.environ.pop(key, None)


classes = (MLVFX_AP_preferences,)


register, _unregister_classes = bpy.utils.register_classes_factory(classes)


def unregister() -> None:
    _unregister_classes()
    restore_environment()
