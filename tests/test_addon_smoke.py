"""Learned smoke in the built Blender extension (tests/bpy_scripts/addon_smoke.py in a fresh bpy)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bpy


def test_smoke_in_blender(run_in_blender: Callable[..., dict[str, Any]]) -> None:
    observed = run_in_blender("addon_smoke.py", timeout=300)
    # The Volume plays a shot that starts at 1001 at its own frames, and nothing outside them.
    assert observed["sequence"] == [True, 1001, 1000, 3, "CLIP"]
    assert observed["shot_frames"]["1002"] == [1, "density_1002.vdb"]
    assert observed["shot_frames"]["1000"][0] == observed["shot_frames"]["1004"][0] == 0
    # One baked frame shows at that frame only.
    assert observed["single_frame"] == {"1": 0, "9": 0, "10": 1, "11": 0, "200": 0}
    # A moving emitter drags the smoke with it.
    xs = observed["moving_smoke_x"]
    assert xs[0] < -0.3 and xs[-1] > xs[0] + 0.25
    assert observed["animated_emitter"] == "voxelized per frame"
    # A Shift+D copy of a baked domain is refused its cache, naming the owner; the Volume follows its
    # domain through a rename.
    assert "choose another Cache folder" in observed["duplicate_refused"]
    assert observed["volume_owner"] == "pointer"
    assert observed["new_default_cache"].endswith("_2")
    # Unwritable folders are one-line errors, as in the material tools.
    assert "cannot create output: Permission denied" in observed["read_only"]
    assert "cannot replace the smoke cache" in observed["swap_refused"]
    assert all("domain" in m for m in observed["domain_as_emitter"])


def test_quitting_mid_bake_leaves_no_staging_folder(
    run_in_blender: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    # Python exiting mid-bake stops the worker, which removes its staging folder (the add-on's
    # unregister in module mode, and its atexit hook where Blender exits without unregistering).
    # A crash leaves the folder; the next Bake or Free Bake removes it (addon_smoke.py, section 8).
    observed = run_in_blender("addon_quit.py", timeout=300)
    assert observed["staging"] and all(".cache.baking-" in p for p in observed["staging"])
    left = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert not any(".baking-" in name for name in left), left
