"""mlvfx.texture.metrics and the Image Quilting baseline."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from test_texture_support import bricks, noise_rgb, smooth_noise

from mlvfx.errors import InputError, InvalidImageDataError
from mlvfx.texture import metrics
from mlvfx.texture.quilting import default_block, quilt


def _periodic(size: int = 64) -> npt.NDArray[np.float32]:
    y, x = np.mgrid[:size, :size] / size * 2 * np.pi
    out: npt.NDArray[np.float32] = (0.5 + 0.25 * np.sin(3 * x) * np.cos(2 * y))[:, :, None].astype(np.float32)
    return out


def test_seam_score_periodic_vs_ramp() -> None:
    assert metrics.seam_score(_periodic()) == pytest.approx(1.0, abs=0.1)
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    assert metrics.seam_score(ramp) > 20  # the wrap jumps from 1 back to 0
    flat = np.zeros((16, 16), np.float32)
    assert metrics.seam_score(flat) == 1.0
    with pytest.raises(InputError):
        metrics.seam_score(np.zeros((2, 5), np.float32))


def test_look_distance_orders_by_similarity() -> None:
    ex = noise_rgb(64, seed=1)
    same = metrics.look_distance(ex, ex)
    other_crop = noise_rgb(64, seed=2)  # same process, other sample
    noise = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    assert same < 1e-6
    assert metrics.look_distance(other_crop, ex) < metrics.look_distance(noise, ex)
    assert metrics.look_distance(ex, ex, seed=3) == metrics.look_distance(ex, ex, seed=3)
    with pytest.raises(InputError, match="channels"):
        metrics.look_distance(ex[:, :, :1], ex)
    with pytest.raises(InvalidImageDataError):
        metrics.look_distance(np.full((8, 8, 3), np.nan, np.float32), ex)


def test_nearest_neighbour_field_finds_exact_copies() -> None:
    ex = noise_rgb(64, seed=4)
    crop = ex[10:50, 5:45]
    field = metrics.nearest_neighbour_field(crop, ex, seed=0)
    assert field.shape == (40, 40, 2)
    # interior pixels (patch fully inside the crop) map to where they came from
    inner = field[4:-4, 4:-4]
    yy, xx = np.mgrid[4:36, 4:36]
    hit = (inner[..., 0] == yy + 10) & (inner[..., 1] == xx + 5)
    assert hit.mean() > 0.95


def test_verbatim_share() -> None:
    ex = noise_rgb(64, seed=5)
    tiled = np.tile(ex, (2, 2, 1))
    assert metrics.verbatim_share(tiled, ex) > 0.8
    noise = np.random.default_rng(1).random((128, 128, 3)).astype(np.float32)
    assert metrics.verbatim_share(noise, ex) < 0.05
    # a precomputed field is used as is: one constant offset everywhere is one big copied region
    field = np.stack([*np.mgrid[:128, :128]], -1).astype(np.int64)
    assert metrics.verbatim_share(noise, ex, field=field) == 1.0
    # small copied regions (< 1/4 of the exemplar) do not count
    assert metrics.verbatim_share(noise, ex, field=field, min_fraction=5.0) == 0.0


def test_quilting_output_and_copies() -> None:
    ex = bricks(64, seed=1)
    out = quilt(ex, (100, 90), seed=0)
    assert out.shape == (100, 90, 3) and out.dtype == np.float32
    ex_pixels = {p.tobytes() for p in ex.reshape(-1, 3)}
    assert all(p.tobytes() in ex_pixels for p in out.reshape(-1, 3))
    np.testing.assert_array_equal(out, quilt(ex, (100, 90), seed=0))
    assert not np.array_equal(out, quilt(ex, (100, 90), seed=1))
    # the overlap search and the cut matter: quilting has fewer jumps than random block placement
    tex = noise_rgb(64, seed=6)
    q = quilt(tex, (128, 128), seed=0)
    b, _ = default_block(64)
    rng = np.random.default_rng(0)
    rand = np.zeros((128, 128, 3), np.float32)
    for y in range(0, 128, b):
        for x in range(0, 128, b):
            sy, sx = rng.integers(0, 64 - b, 2)
            rand[y : y + b, x : x + b] = tex[sy : sy + b, sx : sx + b][: 128 - y, : 128 - x]

    def jumps(a: npt.NDArray[np.float32]) -> float:
        return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())

    assert jumps(q) < jumps(rand)


def test_min_error_boundary_cut_follows_the_cheap_path() -> None:
    from mlvfx.texture.quilting import _min_cut_vertical

    err = np.ones((6, 5), np.float32)
    path = [1, 2, 3, 3, 2, 1]
    for i, j in enumerate(path):
        err[i, j] = 0.0
    keep_old = _min_cut_vertical(err)
    for i, j in enumerate(path):
        assert keep_old[i, :j].all() and not keep_old[i, j:].any()


def test_quilting_channels_and_errors() -> None:
    g = smooth_noise(48, seed=3)
    five = np.stack([g, 1 - g, g * 0.5, g**2, g], axis=2)  # > 4 channels goes through OpenCV in groups
    assert quilt(five, (64, 64), seed=0).shape == (64, 64, 5)
    assert quilt(g, (64, 64), seed=0).shape == (64, 64, 1)
    with pytest.raises(InputError, match="larger than the exemplar"):
        quilt(g, (64, 64), block=60)
    with pytest.raises(InputError, match="overlap"):
        quilt(g, (64, 64), block=16, overlap=16)
    with pytest.raises(InputError, match="positive"):
        quilt(g, (0, 64))


def test_nearest_neighbour_field_and_eval_score_report_progress() -> None:
    # `mlvfx eval texture` at 4096² spends minutes in this field; it now reports as it goes
    from mlvfx.texture.cli import score

    rng = np.random.default_rng(1)
    ex = rng.random((40, 40, 3), dtype=np.float32)
    out = rng.random((64, 48, 3), dtype=np.float32)
    seen: list[float] = []
    field = metrics.nearest_neighbour_field(out, ex, progress=lambda f, m: seen.append(f))
    assert field.shape == (64, 48, 2)
    assert len(seen) >= 4 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    stages: list[tuple[float, str]] = []
    r = score(out, ex, progress=lambda f, m: stages.append((f, m)))
    assert set(r) == {"seam_score", "look_distance", "verbatim_share"}
    fractions = [f for f, _ in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert stages[0][1] == "look distance"
