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


def fill_transparent(image: npt.NDArray[np.float32], tileable: bool = False) -> npt.NDArray[np.float32]:
    """``image`` (H, W, 2 or 4: colour + straight alpha) with the colour of fully transparent pixels
    replaced by a smooth extension of the visible colour; other images are returned as they are.

    Straight-alpha files keep arbitrary colour under alpha 0 (black, white, a key colour), and
    every filter that looks at neighbours would read it into the visible pixels beside it: two
    files that look the same would give different maps, with a cliff along the alpha edge. A
    push-pull fill (alpha-weighted 2x2 averages down a pyramid, then bilinear back up into the
    holes; across the edges when ``tileable``) makes the result depend on the visible pixels
    only. Partly transparent pixels keep their colour, and alpha is unchanged. Beyond the copy it
    returns, it needs about a third of the image's size (the pyramid) and works in bands of rows.
    """
    channels = image.shape[2] if image.ndim == 3 else 1
    if channels not in (2, 4):
        return image
    alpha = image[..., -1]
    hole = alpha <= 0.0
    if not hole.any() or hole.all():
        return image
    height, width = alpha.shape
    # Level 1 straight from the image, a band of rows at a time (no full-size temporaries).
    sums, weights = [], []
    for r0 in range(0, height, FILL_BAND):
        rows = image[r0 : r0 + FILL_BAND]
        w = np.clip(rows[..., -1], 0.0, 1.0)
        c, w = _pad_even(rows[..., :-1] * w[..., None], w, tileable, image[:2] if tileable else None)
        sums.append(_block_sum(c))
        weights.append(_block_sum(w[..., None])[..., 0])
    levels = [(np.concatenate(sums), np.concatenate(weights))]
    while levels[-1][1].size > 1:
        c, w = _pad_even(*levels[-1], tileable)
        levels.append((_block_sum(c), _block_sum(w[..., None])[..., 0]))
    filled: npt.NDArray[np.float32] | None = None
    for c, w in reversed(levels):
        mean = c / np.maximum(w, 1e-12)[..., None]
        if filled is not None:
            up = _upsample(filled, np.arange(w.shape[0]), w.shape[1], tileable)
            mean = np.where((w > 0)[..., None], mean, up)
        filled = mean.astype(np.float32, copy=False)
    assert filled is not None
    out = image.copy()
    for r0 in range(0, height, FILL_BAND):
        band_hole = hole[r0 : r0 + FILL_BAND]
        if band_hole.any():
            up = _upsample(filled, np.arange(r0, min(r0 + FILL_BAND, height)), width, tileable)
            out[r0 : r0 + FILL_BAND, :, :-1][band_hole] = up[band_hole]
    return out


FILL_BAND = 256  # rows per band of fill_transparent's full-resolution passes (even)


def _pad_even(
    c: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    tileable: bool,
    first_rows: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Pad colour sums and weights to even height and width: wrapped when ``tileable``, else with
    zero weight (so the padding adds nothing). ``first_rows``: the image's top rows, when ``c`` is
    a band of it whose odd last row must wrap to the image's first (level 1, tileable)."""
    if c.shape[0] % 2:
        if tileable:
            top = (
                c[:1]
                if first_rows is None
                else first_rows[:1, :, :-1] * np.clip(first_rows[:1, :, -1:], 0, 1)
            )
            wtop = w[:1] if first_rows is None else np.clip(first_rows[:1, :, -1], 0, 1)
            c, w = np.concatenate([c, top]), np.concatenate([w, wtop])
        else:
            c = np.concatenate([c, np.zeros_like(c[:1])])
            w = np.concatenate([w, np.zeros_like(w[:1])])
    if c.shape[1] % 2:
        if tileable:
            c, w = np.concatenate([c, c[:, :1]], axis=1), np.concatenate([w, w[:, :1]], axis=1)
        else:
            c = np.concatenate([c, np.zeros_like(c[:, :1])], axis=1)
            w = np.concatenate([w, np.zeros_like(w[:, :1])], axis=1)
    return c, w


def _block_sum(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Sums of 2x2 blocks of an (even H, even W, C) array."""
    return np.asarray(a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2], np.float32)


def _upsample(
    coarse: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], width: int, tileable: bool
) -> npt.NDArray[np.float32]:
    """Rows ``rows`` of ``coarse`` (Hc, Wc, C) brought up 2x bilinearly, ``width`` columns wide;
    neighbours beyond an edge wrap when ``tileable``, else repeat the edge."""

    def taps(fine: npt.NDArray[np.int64], n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        i = np.minimum(fine // 2, n - 1)
        j = np.where(fine % 2 == 0, i - 1, i + 1)
        return i, (j % n if tileable else np.clip(j, 0, n - 1))

    i, j = taps(rows, coarse.shape[0])
    band = 0.75 * coarse[i] + 0.25 * coarse[j]
    i, j = taps(np.arange(width), coarse.shape[1])
    return np.asarray(0.75 * band[:, i] + 0.25 * band[:, j], np.float32)
