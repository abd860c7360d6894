"""Behaviours a mutation audit (stop 27) found unprotected by any test: texture operators."""

from __future__ import annotations

import numpy as np

from mlvfx.classical.filters import gaussian


def _periodic(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = gaussian(rng.random((h, w), dtype=np.float32), 4.0, True)
    return ((f - f.min()) / (f.max() - f.min())).astype(np.float32)


def test_equalize_leaves_alpha_alone() -> None:
    """equalize_lighting's docstring: 'Alpha passes through'."""
    from mlvfx.ops.texture import equalize_lighting

    h, w = 64, 96
    falloff = np.linspace(0.3, 1.0, w, dtype=np.float32)[None, :, None]
    rgb = (0.2 + 0.6 * _periodic(h, w, 1))[..., None] * falloff * np.array([0.9, 0.7, 0.5], np.float32)
    alpha = np.full((h, w, 1), 0.5, np.float32)
    alpha[:, :8] = 1.0
    img = np.concatenate([rgb, alpha], axis=2).astype(np.float32)
    out = equalize_lighting(img)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    assert not np.allclose(out[..., :3], img[..., :3])  # the colour was flattened


def test_paint_warps_the_guide_around_the_wrap_when_tileable() -> None:
    # A tileable paint's region borders must continue across the wrap: the guide's warp sampled
    # around it, but its random displacement field was not periodic (wrap step 0.11-0.14 against
    # 0.02 inside: a jump in the region borders at the tile's edge; the mutation audit, stop 27).
    from mlvfx.ops.texture import _warp

    for shape in ((64, 64), (48, 80)):
        f = _periodic(*shape, 3)[None]
        warped = _warp(f, 6.0, seed=2, tileable=True)[0]
        for axis in (0, 1):
            first, last = np.take(warped, 0, axis=axis), np.take(warped, -1, axis=axis)
            wrap = np.abs(first - last).mean()
            interior = np.abs(np.diff(warped, axis=axis)).mean()
            assert wrap < 2.0 * interior, (shape, axis, wrap, interior)
        assert float(np.abs(warped - f[0]).mean()) > 0.01  # it does warp


def test_a_tiny_transition_does_not_ask_for_a_huge_warp_grid() -> None:
    # The warp's grid of random points grew as (size / transition)²: 0.02 px on 512² took 0.7 GB,
    # and 0.001 px on 1024² ran out of memory (a review). It is capped at one point per pixel.
    import tracemalloc

    from mlvfx.ops.texture import _warp

    field = _periodic(256, 256, 4)[None]
    for tileable in (True, False):
        tracemalloc.start()
        out = _warp(field, 0.001, seed=1, tileable=tileable)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out.shape == field.shape and np.isfinite(out).all()
        assert peak < 64 * 2**20, peak
