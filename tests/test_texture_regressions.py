"""Regressions found by the Blender end-to-end test."""

from __future__ import annotations

import numpy as np

from mlvfx.ops.texture import paint


def test_tileable_paint_runs_and_wraps() -> None:
    """paint(tileable=True) used OpenCV's BORDER_WRAP, which GaussianBlur rejects."""
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 48), np.int64)
    labels[:, 24:] = 1
    dark = (0.05 + 0.02 * rng.random((24, 24, 3))).astype(np.float32)
    bright = (0.8 + 0.02 * rng.random((24, 24, 3))).astype(np.float32)
    out = paint(labels, {0: dark, 1: bright}, seed=1, tileable=True)
    assert out.shape == (48, 48, 3)
    assert out[:, 4:18].mean() < 0.3 < 0.6 < out[:, 30:44].mean()
