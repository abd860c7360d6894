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


def fill_transparent(image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``image`` (H, W, 2 or 4: colour + straight alpha) with the colour of fully transparent pixels
    replaced by a smooth extension of the visible colour; other images are returned as they are.

    Straight-alpha files keep arbitrary colour under alpha 0 (black, white, a key colour), and
    every filter that looks at neighbours would read it into the visible pixels beside it: two
    files that look the same would give different maps, with a cliff along the alpha edge. A
    push-pull fill (alpha-weighted averages down an image pyramid, then back up into the holes)
    makes the result depend on the visible pixels only. Partly transparent pixels keep their
    colour, and alpha is unchanged.
    """
    channels = image.shape[2] if image.ndim == 3 else 1
    if channels not in (2, 4):
        return image
    alpha = image[..., -1]
    hole = alpha <= 0.0
    if not hole.any() or hole.all():
        return image
    colour = image[..., :-1]
    weight = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    levels: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = []
    c: npt.NDArray[np.float32] = colour * weight[..., None]
    w = weight
    while True:
        levels.append((c, w))
        h, wd = w.shape
        if h == 1 and wd == 1:
            break
        size = (max(1, (wd + 1) // 2), max(1, (h + 1) // 2))
        c = np.asarray(cv2.resize(c, size, interpolation=cv2.INTER_AREA), np.float32).reshape(
            size[1], size[0], -1
        )
        w = np.asarray(cv2.resize(w, size, interpolation=cv2.INTER_AREA), np.float32).reshape(
            size[1], size[0]
        )
    filled: npt.NDArray[np.float32] | None = None
    for lc, lw in reversed(levels):
        mean = lc / np.maximum(lw, 1e-12)[..., None]
        if filled is not None:
            up = np.asarray(cv2.resize(filled, (lw.shape[1], lw.shape[0]), interpolation=cv2.INTER_LINEAR))
            up = up.reshape(lw.shape[0], lw.shape[1], -1)
            mean = np.where((lw > 0)[..., None], mean, up)
        filled = mean.astype(np.float32)
    assert filled is not None
    out = image.copy()
    out[..., :-1] = np.where(hole[..., None], filled, colour)
    return out
