"""Generate Material run again, Paint from Labels slots and the job machinery, in the real bpy
module (stop 25's Blender audit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.bpy


def test_rerun_slots_and_jobs(run_in_blender: Callable[..., dict[str, Any]]) -> None:
    observed = run_in_blender("addon_rerun.py")
    # Each check is asserted inside the script too; these are the headline ones.
    one_run, after_two, frames = observed["nodes_after_two_runs"]
    assert after_two == one_run and frames == 1  # a re-run replaces, it does not pile up
    linked, method, original = observed["displacement_after_none"]
    assert not linked and method == original  # the old displacement no longer drives the render
    assert "exemplar slot 1 (#ff0000) has no image" in observed["empty_slot"]
    assert observed["painted_channels"] == 4  # RGB beside RGBA exemplars
    assert observed["job_left_running"] is False
    assert observed["released"] == ["remove timer", "progress end", "status None"]  # unregister mid-job
    assert observed["artist_method_kept"] == "DISPLACEMENT"
    assert "not downloaded" in observed["offline_note"]
