"""Houdini volumes as numpy grids: voxel order, bounds, resampling and point splatting.

Pure numpy, no ``hou``: everything here is unit-tested without Houdini.

Conventions:

* A Houdini volume of resolution ``(nx, ny, nz)`` returns ``allVoxels()`` as a flat sequence with
  **x fastest**, then y, then z. That is exactly a C-order numpy array of shape ``(Z, Y, X)``, the
  layout of :mod:`mlvfx.fluids` (``grid[z, y, x]``).
* Velocity at the core API is ``(Z, Y, X, 3)`` with components in the order (x, y, z); in
  Houdini it is three scalar volumes named ``vel.x``, ``vel.y`` and ``vel.z``.
* Bounds are the outer box of the voxels, ``minimum``/``maximum`` in world units (x, y, z). Voxel
  ``(i, j, k)`` has its centre at ``minimum + (index + 0.5) * voxel_size``, as
  ``hou.Volume.indexToPos`` reports for an unrotated volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError

FloatGrid = npt.NDArray[np.float32]
Vec3 = tuple[float, float, float]

__all__ = [
    "Bounds",
    "bounds_from_centres",
    "cubic_cell_size",
    "grid_to_voxels",
    "resample_nearest",
    "splat_spheres",
    "split_velocity",
    "stack_velocity",
    "voxels_to_grid",
]


@dataclass(frozen=True)
class Bounds:
    """An axis-aligned box in world units, (x, y, z) order."""

    minimum: Vec3
    maximum: Vec3

    def __post_init__(self) -> None:
        for lo, hi in zip(self.minimum, self.maximum, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
                raise InputError(f"volume bounds {self.minimum} -> {self.maximum} are empty or not finite")

    @property
    def size(self) -> Vec3:
        """Edge lengths (x, y, z)."""
        return (
            self.maximum[0] - self.minimum[0],
            self.maximum[1] - self.minimum[1],
            self.maximum[2] - self.minimum[2],
        )

    @property
    def centre(self) -> Vec3:
        """The box centre (x, y, z)."""
        return (
            0.5 * (self.minimum[0] + self.maximum[0]),
            0.5 * (self.minimum[1] + self.maximum[1]),
            0.5 * (self.minimum[2] + self.maximum[2]),
        )

    @staticmethod
    def from_centre_size(centre: Sequence[float], size: Sequence[float]) -> Bounds:
        """A box from its centre and edge lengths, both (x, y, z)."""
        c = [float(v) for v in centre]
        s = [float(v) for v in size]
        if len(c) != 3 or len(s) != 3:
            raise InputError(f"centre and size need 3 components, got {len(c)} and {len(s)}")
        return Bounds(
            (c[0] - s[0] / 2, c[1] - s[1] / 2, c[2] - s[2] / 2),
            (c[0] + s[0] / 2, c[1] + s[1] / 2, c[2] + s[2] / 2),
        )

    def close_to(self, other: Bounds, tolerance: float) -> bool:
        """Whether every corner coordinate differs by at most ``tolerance``."""
        mine = (*self.minimum, *self.maximum)
        theirs = (*other.minimum, *other.maximum)
        return all(abs(a - b) <= tolerance for a, b in zip(mine, theirs, strict=True))


def _resolution(resolution: Sequence[int], what: str) -> tuple[int, int, int]:
    res = tuple(int(n) for n in resolution)
    if len(res) != 3 or any(n < 1 for n in res):
        raise InputError(f"{what}: resolution must be 3 positive integers (x, y, z), got {tuple(resolution)}")
    return res[0], res[1], res[2]


def voxels_to_grid(values: npt.ArrayLike, resolution: Sequence[int], what: str = "volume") -> FloatGrid:
    """Reshape Houdini's flat voxel values (x fastest) into a ``(Z, Y, X)`` float32 grid.

    Args:
        values: ``hou.Volume.allVoxels()`` (or its bytes decoded as float32), length nx*ny*nz.
        resolution: ``hou.Volume.resolution()``, i.e. (nx, ny, nz).
        what: the volume's name, for error messages.

    Returns:
        float32 array of shape (nz, ny, nx); ``grid[z, y, x]`` is voxel (x, y, z).

    Raises:
        InputError: the count does not match the resolution, or values are NaN/inf.

    Example:
        >>> voxels_to_grid([0, 1, 2, 3, 4, 5], (3, 2, 1))[0, 1, 2]  # voxel x=2, y=1, z=0
        5.0
    """
    nx, ny, nz = _resolution(resolution, what)
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size != nx * ny * nz:
        raise InputError(f"{what}: {flat.size} voxel values do not match resolution {(nx, ny, nz)}")
    if not np.isfinite(flat).all():
        raise InputError(f"{what}: voxel values contain NaN or infinite numbers")
    return flat.reshape(nz, ny, nx).copy()


def grid_to_voxels(grid: npt.ArrayLike) -> FloatGrid:
    """Flatten a ``(Z, Y, X)`` grid into Houdini's voxel order (x fastest), float32, contiguous.

    The inverse of :func:`voxels_to_grid`; pass the result to ``hou.Volume.setAllVoxels`` (or its
    ``tobytes()`` to ``setAllVoxelsFromString``).
    """
    a = np.asarray(grid, dtype=np.float32)
    if a.ndim != 3:
        raise InputError(f"a volume grid must be (Z, Y, X), got shape {a.shape}")
    return np.ascontiguousarray(a).reshape(-1)


def bounds_from_centres(
    first_centre: Sequence[float], voxel_size: Sequence[float], resolution: Sequence[int]
) -> Bounds:
    """The outer box of a volume from its first voxel centre, voxel size and resolution.

    ``first_centre`` is ``hou.Volume.indexToPos((0, 0, 0))`` and ``voxel_size`` is
    ``hou.Volume.voxelSize()``, all in (x, y, z).
    """
    res = _resolution(resolution, "volume")
    c = [float(v) for v in first_centre]
    d = [float(v) for v in voxel_size]
    if any(not math.isfinite(v) or v <= 0 for v in d):
        raise InputError(f"voxel size must be positive, got {tuple(d)}")
    lo = (c[0] - d[0] / 2, c[1] - d[1] / 2, c[2] - d[2] / 2)
    hi = (lo[0] + d[0] * res[0], lo[1] + d[1] * res[1], lo[2] + d[2] * res[2])
    return Bounds(lo, hi)


def cubic_cell_size(
    bounds: Bounds, resolution: Sequence[int], what: str = "volume", rtol: float = 1e-3
) -> float:
    """The voxel edge length, checking that voxels are cubes (the solver needs one cell size).

    Raises:
        InputError: voxels are not cubic within ``rtol``; the message gives the three sizes.
    """
    res = _resolution(resolution, what)
    sizes = [bounds.size[i] / res[i] for i in range(3)]
    dx = sizes[0]
    if any(abs(s - dx) > rtol * dx for s in sizes):
        raise InputError(
            f"{what}: voxels must be cubes, got size {sizes[0]:.6g} x {sizes[1]:.6g} x {sizes[2]:.6g}; "
            "make the box size proportional to the resolution"
        )
    return dx


def _centres(bounds: Bounds, resolution: tuple[int, int, int]) -> list[npt.NDArray[np.float64]]:
    return [
        bounds.minimum[a]
        + (np.arange(resolution[a], dtype=np.float64) + 0.5) * (bounds.size[a] / resolution[a])
        for a in range(3)
    ]


def resample_nearest(
    grid: npt.ArrayLike,
    source: Bounds,
    target: Bounds,
    target_resolution: Sequence[int],
    fill: float = 0.0,
) -> FloatGrid:
    """Sample a ``(Z, Y, X)`` grid at the voxel centres of another box (nearest voxel).

    Used to bring a collision SDF or an emitter onto the smoke grid when they were built on a
    different box. Target voxels whose centre lies outside ``source`` get ``fill``.

    Args:
        grid: source values, shape (nz, ny, nx) of the source volume.
        source: bounds of ``grid``.
        target: bounds of the output.
        target_resolution: (nx, ny, nz) of the output.
        fill: value outside the source box (e.g. a large positive distance for an SDF).

    Returns:
        float32 grid of shape (target nz, ny, nx).
    """
    src = np.asarray(grid, dtype=np.float32)
    if src.ndim != 3:
        raise InputError(f"a volume grid must be (Z, Y, X), got shape {src.shape}")
    src_res = (src.shape[2], src.shape[1], src.shape[0])
    res = _resolution(target_resolution, "target volume")
    index: list[npt.NDArray[np.intp]] = []
    inside: list[npt.NDArray[np.bool_]] = []
    for axis, centres in enumerate(_centres(target, res)):
        step = source.size[axis] / src_res[axis]
        f = np.floor((centres - source.minimum[axis]) / step)
        inside.append((f >= 0) & (f < src_res[axis]))
        index.append(np.clip(f, 0, src_res[axis] - 1).astype(np.intp))
    out = src[np.ix_(index[2], index[1], index[0])]
    mask = inside[2][:, None, None] & inside[1][None, :, None] & inside[0][None, None, :]
    result: FloatGrid = np.where(mask, out, np.float32(fill)).astype(np.float32)
    return result


def splat_spheres(
    positions: npt.ArrayLike,
    radii: npt.ArrayLike,
    bounds: Bounds,
    resolution: Sequence[int],
) -> FloatGrid:
    """A soft [0, 1] coverage mask of spheres (emitter points with ``pscale``) on a grid.

    Args:
        positions: (N, 3) world positions (x, y, z).
        radii: (N,) radii in world units, or one radius for all.
        bounds: the grid's box.
        resolution: (nx, ny, nz).

    Returns:
        float32 (Z, Y, X) mask: 1 inside a sphere, 0 outside, a one-voxel ramp at the surface.
    """
    res = _resolution(resolution, "emitter grid")
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    r = np.broadcast_to(np.asarray(radii, dtype=np.float64), (p.shape[0],))
    if not (np.isfinite(p).all() and np.isfinite(r).all()) or (r < 0).any():
        raise InputError("emitter points need finite positions and non-negative radii (pscale)")
    xs, ys, zs = _centres(bounds, res)
    dx = min(bounds.size[a] / res[a] for a in range(3))
    mask = np.zeros((res[2], res[1], res[0]), dtype=np.float32)
    for (px, py, pz), radius in zip(p, r, strict=True):
        reach = radius + dx
        sel = [np.nonzero(np.abs(c - v) <= reach)[0] for c, v in ((xs, px), (ys, py), (zs, pz))]
        if any(s.size == 0 for s in sel):
            continue
        d = np.sqrt(
            (zs[sel[2]][:, None, None] - pz) ** 2
            + (ys[sel[1]][None, :, None] - py) ** 2
            + (xs[sel[0]][None, None, :] - px) ** 2
        )
        cover = np.clip(0.5 - (d - radius) / dx, 0.0, 1.0).astype(np.float32)
        block = np.ix_(sel[2], sel[1], sel[0])
        mask[block] = np.maximum(mask[block], cover)
    return mask


def stack_velocity(vx: npt.ArrayLike, vy: npt.ArrayLike, vz: npt.ArrayLike) -> FloatGrid:
    """Three ``(Z, Y, X)`` component grids (vel.x, vel.y, vel.z) -> ``(Z, Y, X, 3)`` (x, y, z)."""
    parts = [np.asarray(v, dtype=np.float32) for v in (vx, vy, vz)]
    if parts[0].ndim != 3 or any(p.shape != parts[0].shape for p in parts):
        raise InputError(
            f"vel.x, vel.y and vel.z must be volumes of one resolution, got {[p.shape for p in parts]}"
        )
    return np.stack(parts, axis=-1)


def split_velocity(velocity: npt.ArrayLike) -> tuple[FloatGrid, FloatGrid, FloatGrid]:
    """``(Z, Y, X, 3)`` velocity -> its (x, y, z) component grids, each contiguous (Z, Y, X)."""
    v: npt.NDArray[Any] = np.asarray(velocity, dtype=np.float32)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise InputError(f"velocity must be (Z, Y, X, 3), got shape {v.shape}")
    return (
        np.ascontiguousarray(v[..., 0]),
        np.ascontiguousarray(v[..., 1]),
        np.ascontiguousarray(v[..., 2]),
    )
