"""The add-on on awkward images and materials, in the real bpy module (stop 24's Blender audit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.bpy


def test_images_and_materials_an_artist_brings(run_in_blender: Callable[..., dict[str, Any]]) -> None:
    observed = run_in_blender("addon_images.py")
    # Each check is asserted inside the script too; these are the headline ones.
    assert "is linked from" in observed["linked"]  # a linked material: edits would be lost on reload
    assert observed["decal_rgb"] == pytest.approx([0.5, 0.5], abs=2e-3)  # was 0.25, then 0.125
    assert observed["hdr_round_trip"] == pytest.approx(2.0, abs=1e-3)
    assert observed["packed_maps"] >= 4 and observed["unsaved_temp_folders_left"] == 0
    assert any("no Principled BSDF behind it" in w for w in observed["non_principled_warning"])
    assert observed["mix_shader_principled_used"]  # a decal's Principled + Transparent mix: no false warning
    assert observed["working_space_red"] == pytest.approx([1.0, 0.0, 0.0], abs=5e-3)
    assert observed["display_p3_red"][0] > 1.15  # converted by colour management, not read as sRGB
    assert "'Display P3' colour profile, which Blender does not read" in observed["profile_note"]
    assert "image sequence" in observed["sequence"]
    assert "tiny.png" in observed["tiny"] and "no exemplar slot" in observed["exemplar_remove"]
