"""Classical material maps checked against analytic surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from mlvfx.classical import (
    ao_from_height,
    delight_blur_divide,
    height_from_photo,
    height_to_normal,
    normal_to_height,
    roughness_heuristic,
)
from mlvfx.classical.filters import gaussian
from mlvfx.errors import InputError


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.clip((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1), -1, 1)
    return np.degrees(np.arccos(cos))


def analytic_normal(d_col: np.ndarray, d_row: np.ndarray) -> np.ndarray:
    n = np.stack([-d_col, d_row, np.ones_like(d_col)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def sine_field(size: int = 128, wavelength: float = 32.0, amp: float = 4.0):
    r, c = np.mgrid[0:size, 0:size].astype(np.float64)
    k = 2 * np.pi / wavelength
    h = amp * np.sin(k * c) * np.cos(k * r)
    d_col = amp * k * np.cos(k * c) * np.cos(k * r)
    d_row = -amp * k * np.sin(k * c) * np.sin(k * r)
    return h.astype(np.float32), analytic_normal(d_col, d_row)


def test_height_to_normal_on_a_sine_field() -> None:
    h, truth = sine_field()
    n = height_to_normal(h, tileable=True)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-5)
    err = angular_error_deg(n, truth)
    assert err.mean() < 0.5 and err.max() < 1.5


def test_height_to_normal_on_a_sphere_cap() -> None:
    size, radius, cap = 96, 60.0, 40.0
    r, c = np.mgrid[0:size, 0:size].astype(np.float64) - size / 2
    rho2 = r**2 + c**2
    inside = rho2 < cap**2
    h = np.where(inside, np.sqrt(np.maximum(radius**2 - rho2, 0)) - np.sqrt(radius**2 - cap**2), 0)
    z = np.sqrt(np.maximum(radius**2 - rho2, 1e-9))
    truth = analytic_normal(-c / z, -r / z)
    n = height_to_normal(h.astype(np.float32))
    interior = rho2 < (cap - 3) ** 2
    err = angular_error_deg(n, truth)[interior]
    assert err.mean() < 0.5 and err.max() < 2.0
    # The sphere's normals point away from its centre: right half +X, top half (+Y up) +Y.
    assert n[48, 70, 0] > 0.2 and n[30, 48, 1] > 0.2


def test_directx_flips_y_only() -> None:
    h, _ = sine_field()
    gl = height_to_normal(h, tileable=True)
    dx = height_to_normal(h, tileable=True, convention="directx")
    np.testing.assert_allclose(dx[..., 1], -gl[..., 1])
    np.testing.assert_allclose(dx[..., [0, 2]], gl[..., [0, 2]])
    with pytest.raises(InputError, match="convention"):
        height_to_normal(h, convention="metal")  # type: ignore[arg-type]


def test_normal_to_height_recovers_a_periodic_field() -> None:
    h, truth_normals = sine_field()
    recovered = normal_to_height(truth_normals.astype(np.float32), tileable=True)
    err = (recovered - recovered.mean()) - (h - h.mean())
    assert np.sqrt((err**2).mean()) < 0.03 * (h.max() - h.min())


def test_normal_to_height_mirror_pads_a_non_periodic_field() -> None:
    size = 96
    r, c = np.mgrid[0:size, 0:size].astype(np.float64)
    h = 0.02 * (c - 20) ** 2 + 0.01 * r * c  # neither periodic nor symmetric
    d_col = 0.04 * (c - 20) + 0.01 * r
    d_row = 0.01 * c
    normals = analytic_normal(d_col, d_row).astype(np.float32)
    recovered = normal_to_height(normals)
    err = (recovered - recovered.mean()) - (h - h.mean())
    rel = np.sqrt((err**2).mean()) / (h.max() - h.min())
    naive = normal_to_height(normals, tileable=True)
    naive_err = (naive - naive.mean()) - (h - h.mean())
    assert rel < 0.02
    assert np.sqrt((naive_err**2).mean()) > 5 * np.sqrt((err**2).mean())


def test_height_normal_round_trip_consistency() -> None:
    rng = np.random.default_rng(0)
    h = gaussian(rng.random((128, 128), dtype=np.float32), 3.0, True) * 40
    n = height_to_normal(h, tileable=True)
    back = normal_to_height(n, tileable=True)
    corr = np.corrcoef(back.ravel(), h.ravel())[0, 1]
    assert corr > 0.98


def test_delight_removes_large_scale_shading() -> None:
    rng = np.random.default_rng(1)
    size = 128
    albedo = 0.2 + 0.6 * gaussian(rng.random((size, size), dtype=np.float32), 1.5, False)[..., None]
    albedo = np.repeat(albedo, 3, axis=2) * np.array([1.0, 0.8, 0.6], np.float32)
    r, c = np.mgrid[0:size, 0:size] / size
    shading = (0.3 + 1.2 * c * (1 - 0.5 * r)).astype(np.float32)[..., None]
    photo = albedo * shading

    def si_rmse(pred: np.ndarray, truth: np.ndarray) -> float:
        scale = (pred * truth).sum() / (pred * pred).sum()
        return float(np.sqrt(((scale * pred - truth) ** 2).mean()))

    delit = delight_blur_divide(photo)
    assert delit.shape == photo.shape and np.isfinite(delit).all()
    assert si_rmse(delit, albedo) < 0.4 * si_rmse(photo, albedo)


def test_height_from_photo_finds_bright_bumps_and_respects_wrap() -> None:
    rng = np.random.default_rng(2)
    bumps = gaussian((rng.random((128, 128)) > 0.97).astype(np.float32), 3.0, True)
    photo = np.repeat((0.05 + bumps / bumps.max() * 0.8)[..., None], 3, axis=2)
    h = height_from_photo(photo, tileable=True)
    assert h.shape == (128, 128) and h.min() >= 0 and h.max() <= 1
    assert np.corrcoef(h.ravel(), bumps.ravel())[0, 1] > 0.6
    rolled = height_from_photo(np.roll(photo, (64, 32), axis=(0, 1)), tileable=True)
    np.testing.assert_allclose(rolled, np.roll(h, (64, 32), axis=(0, 1)), atol=2e-3)


def test_ao_is_one_on_flat_ground_and_darker_in_a_pit() -> None:
    flat = np.zeros((64, 64), np.float32)
    np.testing.assert_allclose(ao_from_height(flat), 1.0)
    r, c = np.mgrid[0:64, 0:64] - 32
    pit = np.where(r**2 + c**2 < 8**2, -12.0, 0.0).astype(np.float32)
    ao = ao_from_height(pit, radius=16)
    assert ao[32, 32] < 0.7 and ao[2, 2] > 0.99
    assert ao.min() >= 0 and ao.max() <= 1


def test_roughness_is_higher_on_busy_texture() -> None:
    rng = np.random.default_rng(3)
    img = np.full((64, 128, 3), 0.3, np.float32)
    img[:, 64:] += 0.2 * rng.standard_normal((64, 64, 1)).astype(np.float32)
    img = np.clip(img, 0, 1)
    rough = roughness_heuristic(img)
    assert rough.min() >= 0 and rough.max() <= 1
    assert rough[:, 80:120].mean() > rough[:, 8:48].mean() + 0.2


def test_fill_transparent_extends_the_visible_colour_and_wraps_when_tileable() -> None:
    from mlvfx.classical.filters import fill_transparent

    # A tileable ramp 0.2 -> 0.8 with its first 16 columns transparent: beside the wrap the fill
    # should lean towards the far edge's 0.8 when tileable, not only towards the near 0.39.
    x = np.linspace(0.2, 0.8, 64, dtype=np.float32)
    ramp = np.zeros((32, 64, 2), np.float32)
    ramp[..., 0] = x[None, :]
    ramp[..., 1] = 1.0
    ramp[:, :16, 1] = 0.0
    ramp[:, :16, 0] = 7.0  # garbage under alpha 0
    plain, wrapped = fill_transparent(ramp), fill_transparent(ramp, tileable=True)
    for filled in (plain, wrapped):
        np.testing.assert_array_equal(filled[:, 16:], ramp[:, 16:])  # visible pixels and alpha untouched
        assert 0.35 <= filled[..., 0].min() and filled[..., 0].max() <= 0.8 + 1e-6  # only visible colours
    assert wrapped[0, 0, 0] > 0.6 > plain[0, 0, 0]
    # Odd sizes, 4 channels, a hole in the middle: a flat colour is filled flat.
    odd = np.full((37, 29, 4), 0.5, np.float32)
    odd[..., 3] = 1.0
    odd[10:20, 5:9] = (9.0, 9.0, 9.0, 0.0)
    for tileable in (False, True):
        np.testing.assert_allclose(fill_transparent(odd, tileable)[..., :3], 0.5, atol=1e-6)
    # Taller than one band of rows (FILL_BAND) and odd: the banded passes meet without a seam.
    tall = np.full((515, 33, 2), 0.25, np.float32)
    tall[..., 1] = 1.0
    tall[200:400, 10:20] = (5.0, 0.0)
    for tileable in (False, True):
        np.testing.assert_allclose(fill_transparent(tall, tileable)[..., 0], 0.25, atol=1e-6)
