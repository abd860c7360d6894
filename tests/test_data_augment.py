"""Augmentation: dihedral transforms keep normals consistent with height; jitter touches the photo only."""

from __future__ import annotations

import numpy as np
import pytest

from mlvfx.data.augment import (
    MaterialSample,
    augment,
    color_jitter,
    crop,
    dihedral,
    normals_from_height,
    rotate_normals,
)
from mlvfx.errors import InputError


def _sample(h: int = 40, w: int = 48) -> MaterialSample:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # An asymmetric height field: a tilted bump plus a ramp, so every transform changes it.
    bump = np.exp(-((xx - 30) ** 2 + (yy - 12) ** 2) / 60.0) * 5
    height = (bump + 0.05 * xx + 0.02 * yy**1.5).astype(np.float32)
    rng = np.random.default_rng(0)
    return MaterialSample(
        lit=rng.random((h, w, 3), dtype=np.float32),
        albedo=rng.random((h, w, 3), dtype=np.float32),
        normal=normals_from_height(height),
        height=height,
        roughness=rng.random((h, w), dtype=np.float32),
    )


def test_normals_from_height_opengl_convention() -> None:
    ramp_right = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    n = normals_from_height(ramp_right)
    assert n[4, 4, 0] < 0 and abs(n[4, 4, 1]) < 1e-6  # rises to the right -> faces left (-X)
    rises_up = np.tile(np.arange(8, dtype=np.float32)[::-1, None], (1, 8))  # row 0 (top) highest
    n = normals_from_height(rises_up)
    assert n[4, 4, 1] < 0 and abs(n[4, 4, 0]) < 1e-6  # rises toward the top -> faces down (-Y)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("mirror", [False, True])
def test_dihedral_normals_match_recomputed_normals(k: int, mirror: bool) -> None:
    s = _sample()
    t = dihedral(s, k, mirror)
    recomputed = normals_from_height(t.height)
    inner = (slice(1, -1), slice(1, -1))  # np.gradient's one-sided edges are not rotation-equivariant
    assert np.allclose(t.normal[inner], recomputed[inner], atol=1e-5)
    assert t.lit.shape[:2] == t.height.shape == t.normal.shape[:2]
    if k % 2:
        assert t.height.shape == (s.height.shape[1], s.height.shape[0])


def test_rotate_normals_quarter_turn_maps_right_to_up() -> None:
    right = np.array([[1.0, 0.0, 0.0]], np.float32)
    assert np.allclose(rotate_normals(right, 1), [[0.0, 1.0, 0.0]])
    assert np.allclose(rotate_normals(right, 0, mirror=True), [[-1.0, 0.0, 0.0]])
    assert np.allclose(rotate_normals(right, 4), right)


def test_crop_and_augment_keep_maps_aligned() -> None:
    s = _sample()
    c = crop(s, 5, 7, 16)
    assert np.array_equal(c.height, s.height[5:21, 7:23])
    with pytest.raises(InputError):
        crop(s, 30, 0, 16)
    out = augment(s, np.random.default_rng(3), crop_size=24)
    assert out.lit.shape == (24, 24, 3) and out.normal.shape == (24, 24, 3)
    inner = (slice(1, -1), slice(1, -1))
    assert np.allclose(out.normal[inner], normals_from_height(out.height)[inner], atol=1e-5)
    # Ground truth is moved, never recoloured: albedo values are a permutation of a crop of the input.
    assert np.isin(out.albedo.ravel(), s.albedo.ravel()).all()
    with pytest.raises(InputError):
        augment(s, np.random.default_rng(0), crop_size=100)


def test_augment_is_reproducible_by_seed() -> None:
    s = _sample()
    a = augment(s, np.random.default_rng(9), crop_size=20)
    b = augment(s, np.random.default_rng(9), crop_size=20)
    assert np.array_equal(a.lit, b.lit) and np.array_equal(a.normal, b.normal)


def test_color_jitter_changes_photo_within_range() -> None:
    lit = np.full((4, 4, 3), 0.3, np.float32)
    out = color_jitter(lit, np.random.default_rng(1))
    assert out.shape == lit.shape and out.dtype == np.float32
    assert not np.allclose(out, lit)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_illumination_field_is_a_smooth_gain_of_bounded_span() -> None:
    from mlvfx.data.augment import illumination_field

    for seed in range(20):
        field = np.log(illumination_field((64, 80), np.random.default_rng(seed), 0.7))
        assert abs(float(field.mean())) < 1e-4
        assert 0.0 <= float(np.ptp(field)) <= 0.7 + 1e-5
        # Smooth: a ramp plus a bowl has a constant second difference along each axis.
        assert np.abs(np.diff(field, n=3, axis=1)).max() < 1e-4
        assert np.abs(np.diff(field, n=3, axis=0)).max() < 1e-4
    spans = [np.ptp(np.log(illumination_field((32, 32), np.random.default_rng(s), 0.7))) for s in range(50)]
    assert max(spans) > 0.5  # the span is drawn up to the amplitude


def test_augment_illumination_touches_the_photo_only_and_is_off_by_default() -> None:
    from dataclasses import replace

    s = _sample(48, 48)
    plain = augment(s, np.random.default_rng(3), crop_size=32)
    off = augment(s, np.random.default_rng(3), crop_size=32, illumination=0.0)
    for name in ("lit", "albedo", "normal", "height", "roughness"):
        assert np.array_equal(getattr(plain, name), getattr(off, name))
    # With the photo = half the albedo, photo / (albedo / 2) after augmentation is the light field:
    # the albedo (and with it the other maps, moved alike) is untouched.
    s = replace(s, lit=(0.5 * s.albedo).astype(np.float32))
    relit = 0
    for seed in range(12):
        a = augment(s, np.random.default_rng(seed), crop_size=40, jitter=False, illumination=0.6)
        ratio = np.log(a.lit / np.maximum(0.5 * a.albedo, 1e-6))[a.albedo.min(axis=-1) > 0.05]
        assert float(np.ptp(ratio)) <= 0.6 + 1e-3
        relit += int(float(np.ptp(ratio)) > 1e-3)
    assert 0 < relit < 12  # half the photos, on average
