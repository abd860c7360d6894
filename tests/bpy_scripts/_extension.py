"""What every add-on test script does first: install and enable the built extension as a user would.

from _extension import MODULE, install
zip_path, work = install()  # from sys.argv: EXTENSION_ZIP WORKDIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

MODULE = "bl_ext.user_default.mlvfx"


def install() -> tuple[Path, Path]:
    """Install ``sys.argv[1]`` (the extension zip) into the user repository under $HOME and enable it;
    returns ``(zip, work folder)`` from the command line."""
    zip_path, work = Path(sys.argv[1]), Path(sys.argv[2])
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    assert MODULE in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
    if os.environ.get("MLVFX_SHIPPED_ONLY"):  # the core under test is the wheel the zip carries
        import mlvfx

        where = Path(mlvfx.__file__).resolve()
        assert "extensions" in where.parts and ".local" in where.parts, f"mlvfx imported from {where}"
    return zip_path, work


def error_of(op: object, **kwargs: object) -> str:
    """The one-line error an operator reports (bpy raises it as RuntimeError in background mode);
    the operator must fail."""
    try:
        op(**kwargs)  # type: ignore[operator]
    except RuntimeError as exc:
        return str(exc).strip()
    raise AssertionError(f"{op} succeeded with {kwargs}")


def reference_plan(domain: str, cache: Path, frames: list[int]) -> dict[str, object]:
    """A bake plan as the Bake operator's ``_prepare`` makes it: the reference solver on a 16³ grid
    with a small emitter, for scripts that run ``MLVFX_OT_bake_smoke._compute`` in a job."""
    import numpy as np

    mask = np.zeros((16, 16, 16), np.float32)
    mask[2:5, 2:5, 2:5] = 1.0
    return {
        "domain": domain,
        "cache": cache,
        "model": "reference",
        "shape": (16, 16, 16),
        "mask": mask,
        "voxel": 0.1,
        "origin": (0, 0, 0),
        "frames": frames,
        "dt": 0.04,
        "substeps": 1,
        "buoyancy": 1.0,
        "dissipation": 0.0,
        "vorticity": 0.0,
        "emission": 1.0,
    }
