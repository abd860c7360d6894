"""mlvfx_houdini.volumes: Houdini voxel order, bounds, resampling and splatting (no Houdini)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hda" / "python3.11libs"))

from mlvfx.errors import InputError
from mlvfx_houdini.volumes import (
    Bounds,
    bounds_from_centres,
    cubic_cell_size,
    grid_to_voxels,
    resample_nearest,
    splat_spheres,
    split_velocity,
    stack_velocity,
    voxels_to_grid,
)


def houdini_all_voxels(values_at, resolution):
    """allVoxels() as SideFX documents it: loops z, then y, then x (x fastest)."""
    nx, ny, nz = resolution
    return tuple(values_at(x, y, z) for z in range(nz) for y in range(ny) for x in range(nx))


def test_voxel_order_is_x_fastest_and_matches_zyx_indexing():
    res = (4, 3, 2)
    flat = houdini_all_voxels(lambda x, y, z: 100 * z + 10 * y + x, res)
    grid = voxels_to_grid(flat, res)
    assert grid.shape == (2, 3, 4)
    assert grid.dtype == np.float32
    for z, y, x in [(0, 0, 0), (1, 2, 3), (0, 1, 2), (1, 0, 3)]:
        assert grid[z, y, x] == 100 * z + 10 * y + x
    # setAllVoxels expects the same order back.
    assert np.array_equal(grid_to_voxels(grid), np.asarray(flat, np.float32))


def test_voxels_round_trip_bit_exact():
    rng = np.random.default_rng(0)
    grid = rng.standard_normal((5, 6, 7)).astype(np.float32)
    flat = grid_to_voxels(grid)
    assert flat.flags["C_CONTIGUOUS"] and flat.ndim == 1
    back = voxels_to_grid(np.frombuffer(flat.tobytes(), np.float32), (7, 6, 5))
    assert np.array_equal(back, grid)


def test_voxels_to_grid_rejects_wrong_count_and_nan():
    with pytest.raises(InputError, match="do not match resolution"):
        voxels_to_grid(np.zeros(10), (2, 2, 2), "density")
    with pytest.raises(InputError, match="density: voxel values contain NaN"):
        voxels_to_grid([0, 1, np.nan, 3, 4, 5, 6, 7], (2, 2, 2), "density")
    with pytest.raises(InputError, match="resolution"):
        voxels_to_grid([1.0], (1, 1, 0))


def test_bounds_from_first_voxel_centre():
    # A Houdini volume with box [-1, 1] x [0, 1] x [2, 2.5] at 4 x 2 x 1 voxels of 0.5.
    b = bounds_from_centres((-0.75, 0.25, 2.25), (0.5, 0.5, 0.5), (4, 2, 1))
    assert b.minimum == pytest.approx((-1.0, 0.0, 2.0))
    assert b.maximum == pytest.approx((1.0, 1.0, 2.5))
    assert b.size == pytest.approx((2.0, 1.0, 0.5))
    assert cubic_cell_size(b, (4, 2, 1)) == pytest.approx(0.5)


def test_non_cubic_voxels_are_refused_with_sizes_in_message():
    b = Bounds((0, 0, 0), (1, 2, 1))
    with pytest.raises(InputError, match="voxels must be cubes"):
        cubic_cell_size(b, (10, 10, 10), "density")


def test_empty_bounds_refused():
    with pytest.raises(InputError, match="empty or not finite"):
        Bounds((0, 0, 0), (1, 0, 1))


def test_resample_nearest_identity_and_shift():
    rng = np.random.default_rng(1)
    grid = rng.random((4, 4, 4)).astype(np.float32)
    b = Bounds((0, 0, 0), (1, 1, 1))
    assert np.array_equal(resample_nearest(grid, b, b, (4, 4, 4)), grid)
    # Target shifted by one voxel along +x: column x of target = column x+1 of the source.
    shifted = Bounds((0.25, 0, 0), (1.25, 1, 1))
    out = resample_nearest(grid, b, shifted, (4, 4, 4), fill=-7.0)
    assert np.array_equal(out[..., :3], grid[..., 1:])
    assert np.all(out[..., 3] == -7.0)


def test_resample_nearest_upsamples_by_repetition():
    grid = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    b = Bounds((0, 0, 0), (1, 1, 1))
    out = resample_nearest(grid, b, b, (4, 4, 4))
    assert out.shape == (4, 4, 4)
    assert np.array_equal(out[::2, ::2, ::2], grid)
    assert np.array_equal(out[1::2, 1::2, 1::2], grid)


def test_splat_spheres_covers_inside_not_outside():
    b = Bounds((0, 0, 0), (1, 1, 1))
    mask = splat_spheres([[0.5, 0.5, 0.5]], [0.25], b, (16, 16, 16))
    assert mask.shape == (16, 16, 16)
    assert mask[8, 8, 8] == 1.0  # centre
    assert mask[0, 0, 0] == 0.0  # corner
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    # Volume of the covered region is close to the sphere's (4/3 pi r^3 = 0.0654 of the box).
    assert mask.sum() / mask.size == pytest.approx(4 / 3 * np.pi * 0.25**3, rel=0.1)
    # Order (Z, Y, X): a sphere offset along +x shows up in the last axis.
    off = splat_spheres([[0.8, 0.5, 0.5]], [0.1], b, (16, 16, 16))
    assert off[8, 8, 12] == 1.0 and off[8, 8, 3] == 0.0
    assert off[12, 8, 8] == 0.0


def test_splat_spheres_rejects_bad_points():
    b = Bounds((0, 0, 0), (1, 1, 1))
    with pytest.raises(InputError, match="pscale"):
        splat_spheres([[0, 0, np.inf]], [0.1], b, (4, 4, 4))
    with pytest.raises(InputError, match="pscale"):
        splat_spheres([[0, 0, 0]], [-1.0], b, (4, 4, 4))


def test_velocity_stack_and_split_are_inverse_and_component_ordered():
    vx = np.full((2, 3, 4), 1.0)
    vy = np.full((2, 3, 4), 2.0)
    vz = np.full((2, 3, 4), 3.0)
    v = stack_velocity(vx, vy, vz)
    assert v.shape == (2, 3, 4, 3)
    assert tuple(v[1, 2, 3]) == (1.0, 2.0, 3.0)
    x, y, z = split_velocity(v)
    assert np.all(x == 1) and np.all(y == 2) and np.all(z == 3)
    assert x.flags["C_CONTIGUOUS"]
    with pytest.raises(InputError, match="one resolution"):
        stack_velocity(vx, vy, np.zeros((2, 3, 5)))
    with pytest.raises(InputError, match=r"\(Z, Y, X, 3\)"):
        split_velocity(np.zeros((2, 3, 4, 2)))
