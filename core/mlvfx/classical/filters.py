"""Border-aware filters shared by the classical methods.

Every filter takes ``tileable``: True wraps around the image edges (so a tileable input stays
tileable), False mirrors at the edges.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

Float2D = npt.NDArray[np.float32]


def pad(a: Float2D, width: int, tileable: bool) -> Float2D:
    """Pad a 2-D array by ``width`` on every side, wrapping or mirroring (any width, even > size)."""
    if tileable:
        return np.asarray(np.pad(a, width, mode="wrap"), dtype=np.float32)
    return np.asarray(np.pad(a, width, mode="symmetric"), dtype=np.float32)


def gaussian(a: Float2D, sigma: float, tileable: bool) -> Float2D:
    """Gaussian blur of a 2-D float array.

    Large sigmas are computed on a downsampled copy (the result is smooth at that scale anyway),
    which keeps the cost linear in pixels instead of growing with sigma.
    """
    if sigma <= 0:
        return a.astype(np.float32, copy=True)
    h, w = a.shape
    factor = max(1, int(sigma // 4))
    factor = min(factor, max(1, min(h, w) // 4))
    if factor > 1:
        small_h, small_w = max(1, round(h / factor)), max(1, round(w / factor))
        small = np.asarray(cv2.resize(a, (small_w, small_h), interpolation=cv2.INTER_AREA), np.float32)
        blurred = gaussian(small, sigma / factor, tileable)
        # Resize back with the same border logic: pad one pixel, resize with aligned centres, crop.
        border = 2
        padded = pad(blurred, border, tileable)
        scale_y, scale_x = h / small_h, w / small_w
        out_h = round((small_h + 2 * border) * scale_y)
        out_w = round((small_w + 2 * border) * scale_x)
        up = np.asarray(cv2.resize(padded, (out_w, out_h), interpolation=cv2.INTER_LINEAR), np.float32)
        oy, ox = round(border * scale_y), round(border * scale_x)
        return np.ascontiguousarray(up[oy : oy + h, ox : ox + w], dtype=np.float32)
    radius = math.ceil(3 * sigma)
    source = pad(a.astype(np.float32, copy=False), radius, tileable)
    size = 2 * radius + 1
    full = cv2.GaussianBlur(source, (size, size), sigma, borderType=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(full[radius : radius + h, radius : radius + w], dtype=np.float32)


def sobel(a: Float2D, tileable: bool) -> tuple[Float2D, Float2D]:
    """Sobel derivatives (d/dcol, d/drow), normalised so a unit slope gives 1."""
    padded = pad(a.astype(np.float32, copy=False), 1, tileable)
    gx = cv2.Sobel(padded, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)[1:-1, 1:-1]
    gy = cv2.Sobel(padded, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)[1:-1, 1:-1]
    return np.ascontiguousarray(gx), np.ascontiguousarray(gy)


def normalize_range(a: Float2D, low_pct: float = 0.5, high_pct: float = 99.5) -> Float2D:
    """Map the [low, high] percentiles of ``a`` to [0, 1] and clip; a flat input gives 0.5."""
    lo, hi = np.percentile(a, [low_pct, high_pct])
    if hi - lo < 1e-12:
        return np.full_like(a, 0.5, dtype=np.float32)
    return np.asarray(np.clip((a - lo) / (hi - lo), 0.0, 1.0), dtype=np.float32)
