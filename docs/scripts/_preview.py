"""Shared set-up for the README's preview renders: the add-on registered from ./addon, a saved empty
scene (so outputs land beside it), and a Cycles CPU still render."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def preview_scene(name: str) -> Iterator[Any]:
    """Yield ``bpy`` with the extension registered and an empty, saved .blend; unregister after."""
    import bpy

    sys.path.insert(0, str(ROOT))
    import addon  # the extension's package, registered directly (no zip needed for a render)

    addon.register()
    try:
        bpy.ops.wm.read_homefile(use_empty=True)
        work = Path(tempfile.mkdtemp(prefix=f"mlvfx-{name}-"))
        bpy.ops.wm.save_as_mainfile(filepath=str(work / f"{name}.blend"))
        yield bpy
    finally:
        addon.unregister()


def render_still(bpy: Any, out: str, samples: int, width: int, height: int) -> None:
    """Render the scene's camera with Cycles on the CPU, neutral view transform, to ``out``."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)
