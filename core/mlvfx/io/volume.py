"""Volume I/O: smoke frames as ``.npz`` (always) and OpenVDB (where an openvdb module is available).

Arrays at this edge are numpy ``(Z, Y, X)`` with x fastest and +Y up (the solver's and Houdini's
convention); velocity is cell-centred ``(Z, Y, X, 3)`` with components (x, y, z). OpenVDB files can be
written Y-up (Houdini) or Z-up (Blender). Z-up is the usual Y-up to Z-up rotation (a +90° turn
about X, as Blender's importers do): solver x stays Blender X, solver y (up) becomes Blender Z and
solver z becomes Blender -Y. Up to stop 24 it was a mirror (solver z became +Y): a shot written
Z-up was the mirror image of the same shot in Houdini.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlvfx.errors import ImageReadError, ImageWriteError, InvalidImageDataError
from mlvfx.io.atomic import check_writable, commit, make_temp, write_bytes_atomic

UpAxis = Literal["y", "z"]
Array = npt.NDArray[Any]


@functools.cache
def openvdb_module() -> ModuleType | None:
    """The ``openvdb`` Python module: installed directly, or the one bundled with the bpy module."""
    with contextlib.suppress(ImportError):
        return importlib.import_module("openvdb")
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    for site in sorted(Path(spec.origin).parent.glob("*/python/lib/python3.*/site-packages")):
        if (site / "openvdb").exists() or list(site.glob("openvdb*.so")) or list(site.glob("openvdb*.pyd")):
            sys.path.append(str(site))
            with contextlib.suppress(ImportError):
                return importlib.import_module("openvdb")
    return None


def _check_field(name: str, array: npt.ArrayLike, vector: bool) -> Array:
    a = np.asarray(array, dtype=np.float32)
    want = 4 if vector else 3
    if a.ndim != want or (vector and a.shape[-1] != 3):
        shape = "(Z, Y, X, 3)" if vector else "(Z, Y, X)"
        raise InvalidImageDataError(f"{name} must be {shape}, got shape {a.shape}", name)
    if not np.isfinite(a).all():
        raise InvalidImageDataError("contains NaN or inf values", name)
    return a


def write_volume_npz(
    path: str | os.PathLike[str],
    density: npt.ArrayLike,
    velocity: npt.ArrayLike | None = None,
    *,
    overwrite: bool = False,
    **extra: npt.ArrayLike,
) -> Path:
    """Write one frame atomically as ``.npz``: ``density`` (Z, Y, X) and ``velocity`` (Z, Y, X, 3)."""
    arrays: dict[str, Array] = {"density": _check_field("density", density, vector=False)}
    if velocity is not None:
        arrays["velocity"] = _check_field("velocity", velocity, vector=True)
    for key, value in extra.items():
        arrays[key] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getvalue(), overwrite=overwrite)


def read_volume_npz(path: str | os.PathLike[str]) -> dict[str, Array]:
    """Read a frame written by :func:`write_volume_npz` (never unpickles)."""
    p = Path(path)
    import zipfile
    import zlib

    try:
        data = np.load(p, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy
            raise ValueError("a .npy array, not an .npz frame")
        with data:
            out = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ImageReadError("no such file", p) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a fuzz audit
        said = " ".join(str(exc).split())[:160]
        raise ImageReadError(f"not a readable .npz volume: {said}", p) from None
    except MemoryError:
        raise ImageReadError("not a readable .npz volume: an array too large for memory", p) from None
    if "density" not in out:
        raise ImageReadError("no 'density' array in the file", p)
    return out


def to_vdb_index(array: Array, up: UpAxis) -> Array:
    """Reorder a (Z, Y, X[, 3]) solver array into OpenVDB's [x][y][z] index order for ``up``."""
    if up == "y":
        out = np.transpose(array, (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0))
    else:  # Blender, a rotation: solver x -> X, solver z -> -Y, solver y (up) -> Z
        out = np.transpose(array, (2, 0, 1, 3) if array.ndim == 4 else (2, 0, 1))[:, ::-1]
        if array.ndim == 4:
            out = out[..., [0, 2, 1]] * np.array([1.0, -1.0, 1.0], dtype=out.dtype)
    return np.ascontiguousarray(out)


def _check_written(vdb: Any, path: str, grids: list[Any], target: Path) -> None:
    """Read a just-written VDB back: OpenVDB's writer does not report a failed write, so a full
    disk left a truncated frame under its final name, and with ``--overwrite`` in place of a good
    one, with exit 0 (an audit). Each grid must come back with its voxels."""
    try:
        back = {g.name: g for g in vdb.readAll(path)[0]}
        whole = all(g.name in back and back[g.name].activeVoxelCount() == g.activeVoxelCount() for g in grids)
    except Exception:  # openvdb raises several types, with pages of garbage in their messages
        whole = False
    if not whole:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise ImageWriteError(
            f"cannot write OpenVDB: the file written ({size} bytes) does not read back whole (disk full?)",
            target,
        )


def write_vdb(
    path: str | os.PathLike[str],
    fields: Mapping[str, npt.ArrayLike],
    *,
    voxel_size: float,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    up: UpAxis = "y",
    overwrite: bool = False,
) -> Path:
    """Write grids to an OpenVDB file atomically.

    Args:
        path: the ``.vdb`` file.
        fields: grid name -> (Z, Y, X) scalar or (Z, Y, X, 3) vector array (solver layout, +Y up).
        voxel_size: world size of one voxel.
        origin: world position of voxel (0, 0, 0)'s centre, in the file's axes.
        up: "y" (Houdini) or "z" (Blender).
        overwrite: replace an existing file.

    Raises:
        ImageWriteError: no openvdb module, or the file cannot be written.
    """
    vdb = openvdb_module()
    target = Path(path)
    if vdb is None:
        raise ImageWriteError("OpenVDB output needs the openvdb module (install the 'blender' extra)", target)
    check_writable(target, overwrite)
    grids = []
    for name, value in fields.items():
        a = np.asarray(value, dtype=np.float32)
        vector = a.ndim == 4
        a = _check_field(name, a, vector)
        grid = vdb.Vec3SGrid() if vector else vdb.FloatGrid()
        grid.copyFromArray(to_vdb_index(a, up))
        grid.name = name
        transform = vdb.createLinearTransform(voxelSize=float(voxel_size))
        transform.postTranslate(tuple(float(v) for v in origin))
        grid.transform = transform
        if not vector:
            grid.gridClass = vdb.GridClass.FOG_VOLUME
        else:  # a velocity: a transform's rotation turns it (Houdini's type for a vector attribute)
            grid.vectorType = vdb.VectorType.CONTRAVARIANT_RELATIVE
        grids.append(grid)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = make_temp(target, ".tmp.vdb")
    os.close(fd)
    tmp_name = str(tmp_path)
    try:
        vdb.write(tmp_name, grids=grids)
        _check_written(vdb, tmp_name, grids, target)
        commit(Path(tmp_name), target, overwrite=overwrite)
    except OSError as exc:
        raise ImageWriteError(f"cannot write OpenVDB: {exc.strerror or exc}", target) from None
    except RuntimeError as exc:  # openvdb's own errors
        raise ImageWriteError(f"cannot write OpenVDB: {exc}", target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return target
