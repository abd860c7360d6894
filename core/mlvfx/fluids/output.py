"""Writing smoke frames: ``.npz`` always, OpenVDB where an ``openvdb`` Python module is available.

Frames are volumes in the layout of the API edge: density ``(Z, Y, X)`` and cell-centred
velocity ``(Z, Y, X, 3)`` with components (x, y, z), float32. 2D runs are written as one-voxel-
deep volumes ``(1, Y, X)`` / ``(1, Y, X, 3)``.

OpenVDB: ``import openvdb`` is tried first (a pip build, Houdini, or Blender after
``bpy.utils.expose_bundled_modules()``); failing that, the copy bundled inside the ``bpy`` wheel
is located on disk and imported without importing ``bpy`` itself (the core never imports host
modules). VDB voxel ``(i, j, k)`` is ``(x, y, z)``, so arrays are transposed on the way out, and
the grid transform carries the voxel size in domain units.
"""

from __future__ import annotations

import functools
import glob
import importlib
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.errors import ImageWriteError, InputError, OutputExistsError
from mlvfx.io.atomic import check_writable, write_bytes_atomic

Array = npt.NDArray[Any]

__all__ = ["openvdb_module", "write_npz", "write_vdb"]


def _check_frame(density: Array, velocity: Array) -> None:
    if density.ndim != 3 or velocity.shape != (*density.shape, 3):
        raise InputError(
            f"a smoke frame needs density (Z, Y, X) and velocity (Z, Y, X, 3), "
            f"got {density.shape} and {velocity.shape}"
        )


def write_npz(
    path: str | os.PathLike[str], density: Array, velocity: Array, *, overwrite: bool = False
) -> Path:
    """Write one frame as ``.npz``: ``density`` (Z, Y, X) and ``velocity`` (Z, Y, X, 3), atomically."""
    _check_frame(density, velocity)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, density=density.astype(np.float32, copy=False), velocity=velocity.astype(np.float32, copy=False)
    )
    return write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)


@functools.cache
def openvdb_module() -> ModuleType | None:
    """The ``openvdb`` module, or None when neither an installed nor bpy's bundled copy imports."""
    try:
        return importlib.import_module("openvdb")
    except ImportError:
        pass
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    root = os.path.dirname(spec.origin)
    pattern = os.path.join(root, "*", "python", "lib", "python3.*", "site-packages", "openvdb*")
    for candidate in sorted(glob.glob(pattern)):
        folder = os.path.dirname(candidate)
        sys.path.append(folder)
        try:
            return importlib.import_module("openvdb")
        except ImportError:
            sys.path.remove(folder)
    return None


def write_vdb(
    path: str | os.PathLike[str],
    density: Array,
    velocity: Array,
    *,
    voxel_size: float,
    overwrite: bool = False,
) -> Path:
    """Write one frame as OpenVDB with grids ``density`` (float) and ``vel`` (vec3), atomically.

    Raises:
        InputError: openvdb is not available, or the arrays have the wrong layout.
        OutputExistsError: the file exists and ``overwrite`` is false.
    """
    _check_frame(density, velocity)
    vdb = openvdb_module()
    if vdb is None:
        raise InputError("OpenVDB output needs the openvdb Python module (pip, Houdini or the bpy wheel)")
    target = Path(path)
    check_writable(target, overwrite)
    dens = vdb.FloatGrid()
    dens.copyFromArray(np.ascontiguousarray(density.transpose(2, 1, 0), dtype=np.float32))
    dens.name = "density"
    vel = vdb.Vec3SGrid()
    vel.copyFromArray(np.ascontiguousarray(velocity.transpose(2, 1, 0, 3), dtype=np.float32))
    vel.name = "vel"
    for grid in (dens, vel):
        grid.transform = vdb.createLinearTransform(voxelSize=float(voxel_size))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".vdb", dir=target.parent)
    os.close(fd)
    try:
        vdb.write(tmp_name, grids=[dens, vel])
        if not overwrite and target.exists():
            raise OutputExistsError("already exists (pass --overwrite to replace it)", target)
        os.replace(tmp_name, target)
    except OSError as exc:
        raise ImageWriteError(f"cannot write: {exc.strerror or exc}", target) from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
