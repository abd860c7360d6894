"""Volume I/O: .npz frames and OpenVDB (through the openvdb module bundled with bpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlvfx.errors import ImageReadError, InvalidImageDataError, OutputExistsError
from mlvfx.io.volume import openvdb_module, read_volume_npz, to_vdb_index, write_vdb, write_volume_npz


@pytest.fixture
def fields() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((4, 5, 6), dtype=np.float32), rng.random((4, 5, 6, 3), dtype=np.float32)


def test_npz_round_trip_and_no_overwrite(tmp_path: Path, fields) -> None:
    density, velocity = fields
    path = write_volume_npz(tmp_path / "f0001.npz", density, velocity)
    back = read_volume_npz(path)
    np.testing.assert_array_equal(back["density"], density)
    np.testing.assert_array_equal(back["velocity"], velocity)
    with pytest.raises(OutputExistsError):
        write_volume_npz(path, density)
    bad = density.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidImageDataError, match="NaN"):
        write_volume_npz(tmp_path / "bad.npz", bad)
    with pytest.raises(InvalidImageDataError, match=r"\(Z, Y, X, 3\)"):
        write_volume_npz(tmp_path / "bad.npz", density, velocity[..., :2])
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ImageReadError, match=r"junk\.npz"):
        read_volume_npz(tmp_path / "junk.npz")


def test_vdb_axis_orders() -> None:
    a = np.zeros((2, 3, 4), np.float32)  # (Z, Y, X)
    a[1, 2, 3] = 1.0  # z=1, y=2 (up), x=3
    assert np.argwhere(to_vdb_index(a, "y")).tolist() == [[3, 2, 1]]  # [x][y][z]
    # Blender, the Y-up to Z-up rotation: [x][Y = -z][Z = up]; z = 1 of 0..1 is Blender Y index 0.
    assert np.argwhere(to_vdb_index(a, "z")).tolist() == [[3, 0, 2]]
    v = np.zeros((2, 3, 4, 3), np.float32)
    v[1, 2, 3] = (10.0, 20.0, 30.0)  # (vx, vy up, vz)
    assert to_vdb_index(v, "z")[3, 0, 2].tolist() == [10.0, -30.0, 20.0]
    # A rotation keeps handedness (a mirror, as written up to stop 24, flips it): x cross y = z
    # in the solver must come out as X cross Y = Z in Blender.
    ex, ey, ez = (np.zeros((2, 3, 4, 3), np.float32) for _ in range(3))
    ex[1, 2, 3, 0] = ey[1, 2, 3, 1] = ez[1, 2, 3, 2] = 1.0
    bx, by, bz = (to_vdb_index(e, "z")[3, 0, 2] for e in (ex, ey, ez))
    np.testing.assert_array_equal(np.cross(bx, by), bz)


def test_vdb_write_and_read_back(tmp_path: Path, fields) -> None:
    vdb = openvdb_module()
    if vdb is None:
        pytest.skip("no openvdb module (install the 'blender' extra)")
    density, velocity = fields
    path = write_vdb(tmp_path / "smoke.vdb", {"density": density, "vel": velocity}, voxel_size=0.25, up="z")
    grids, _ = vdb.readAll(str(path))
    by_name = {g.name: g for g in grids}
    assert set(by_name) == {"density", "vel"}
    back = np.zeros((6, 4, 5), np.float32)
    by_name["density"].copyToArray(back)
    np.testing.assert_allclose(back, to_vdb_index(density, "z"))
    assert by_name["density"].transform.voxelSize()[0] == pytest.approx(0.25)
    with pytest.raises(OutputExistsError):
        write_vdb(path, {"density": density}, voxel_size=0.25)
    assert [p.name for p in tmp_path.iterdir()] == ["smoke.vdb"]
