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
