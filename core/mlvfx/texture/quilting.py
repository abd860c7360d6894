"""Image Quilting (Efros & Freeman 2001), the reference baseline for texture synthesis.

Blocks are laid in raster order. Each new block is the exemplar block whose overlap with what is
already there (left strip, top strip, or both) has a sum of squared differences within
``tolerance`` of the best; the seam through the overlap is the minimum-error boundary cut (dynamic
programming over the per-pixel error).

The overlap search is what makes quilting slow, so it is done the fast way: the SSD of a masked
template against every exemplar position expands to ``sum(M*E^2) - 2*sum(M*T*E) + sum(M*T^2)``; the
first term depends only on the mask shape and is precomputed for the three shapes, and the cross
term is one ``cv2.matchTemplate`` correlation (FFT-based for large templates) per block. Arrays are
numpy float32 (H, W, C).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

FloatArray = npt.NDArray[np.float32]


def default_block(exemplar_side: int) -> tuple[int, int]:
    """A block size about 1/6 of the exemplar (at least 8 px) and an overlap of 1/6 of the block."""
    block = int(np.clip(exemplar_side // 6, 8, 96))
    return block, max(2, block // 6)


def _correlate(image: FloatArray, template: FloatArray) -> FloatArray:
    """Valid-mode cross-correlation summed over channels: (H-h+1, W-w+1)."""
    out: FloatArray | None = None
    for c0 in range(0, image.shape[2], 4):  # OpenCV handles up to 4 channels per call
        img = np.ascontiguousarray(image[:, :, c0 : c0 + 4])
        tpl = np.ascontiguousarray(template[:, :, c0 : c0 + 4])
        if img.shape[2] == 2:  # 2-channel correlation is not supported: pad to 3
            img = np.concatenate([img, np.zeros_like(img[:, :, :1])], 2)
            tpl = np.concatenate([tpl, np.zeros_like(tpl[:, :, :1])], 2)
        res = cv2.matchTemplate(img, tpl, cv2.TM_CCORR).astype(np.float32)
        out = res if out is None else out + res
    assert out is not None
    return out


def _min_cut_vertical(err: FloatArray) -> npt.NDArray[np.bool_]:
    """Minimum-error vertical cut through ``err`` (h, w): True left of the cut (keep old pixels)."""
    h, w = err.shape
    cost = err.astype(np.float64).copy()
    for i in range(1, h):
        prev = cost[i - 1]
        left = np.concatenate([[np.inf], prev[:-1]])
        right = np.concatenate([prev[1:], [np.inf]])
        cost[i] += np.minimum(np.minimum(left, prev), right)
    path = np.empty(h, dtype=np.int64)
    path[-1] = int(np.argmin(cost[-1]))
    for i in range(h - 2, -1, -1):
        j = path[i + 1]
        lo, hi = max(0, j - 1), min(w, j + 2)
        path[i] = lo + int(np.argmin(cost[i, lo:hi]))
    cols = np.arange(w)[None, :]
    return np.asarray(cols < path[:, None])


def quilt(
    exemplar: npt.ArrayLike,
    size: tuple[int, int],
    *,
    block: int | None = None,
    overlap: int | None = None,
    tolerance: float = 0.1,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FloatArray:
    """Synthesise a texture by Image Quilting.

    Args:
        exemplar: float (h, w, C) exemplar, any channel count (linear colour or data).
        size: output (H, W).
        block: block side in pixels (default: :func:`default_block`).
        overlap: overlap in pixels (default: block // 6).
        tolerance: blocks within (1 + tolerance) of the best overlap error are picked at random.
        seed: random seed.
        progress: called with (fraction, message).
        cancel: checked after every row of blocks.

    Returns:
        float32 (H, W, C).

    Raises:
        InputError: bad sizes (block larger than the exemplar, overlap not smaller than the block).
    """
    ex = np.asarray(exemplar, dtype=np.float32)
    if ex.ndim == 2:
        ex = ex[:, :, None]
    h, w, c = ex.shape
    out_h, out_w = size
    if out_h <= 0 or out_w <= 0:
        raise InputError(f"output size must be positive, got {out_w}x{out_h}")
    b0, o0 = default_block(min(h, w))
    b = block if block is not None else b0
    ov = overlap if overlap is not None else (o0 if block is None else max(1, b // 6))
    if b > min(h, w):
        raise InputError(f"quilting block {b} is larger than the exemplar {w}x{h}")
    if not 0 < ov < b:
        raise InputError(f"quilting overlap must be in 1..{b - 1}, got {ov}")
    rng = np.random.default_rng(seed)
    stride = b - ov
    ny = max(1, math.ceil((out_h - ov) / stride))
    nx = max(1, math.ceil((out_w - ov) / stride))
    canvas = np.zeros((ny * stride + ov, nx * stride + ov, c), np.float32)
    ex_sq = (ex**2).sum(2, keepdims=True).astype(np.float32)
    masks = {}
    for kind in ("left", "top", "both"):
        m = np.zeros((b, b, 1), np.float32)
        if kind in ("left", "both"):
            m[:, :ov] = 1
        if kind in ("top", "both"):
            m[:ov, :] = 1
        masks[kind] = m
    mask_energy = {kind: _correlate(ex_sq, m) for kind, m in masks.items()}
    nyv, nxv = h - b + 1, w - b + 1
    for iy in range(ny):
        check_cancel(cancel)
        for ix in range(nx):
            y, x = iy * stride, ix * stride
            if iy == 0 and ix == 0:
                sy, sx = int(rng.integers(nyv)), int(rng.integers(nxv))
                canvas[:b, :b] = ex[sy : sy + b, sx : sx + b]
                continue
            kind = "both" if iy > 0 and ix > 0 else ("top" if iy > 0 else "left")
            m = masks[kind]
            tpl = canvas[y : y + b, x : x + b] * m
            ssd = mask_energy[kind] - 2.0 * _correlate(ex, tpl) + float((tpl**2).sum())
            best = float(ssd.min())
            ok = np.flatnonzero(ssd.ravel() <= best + max(abs(best), 1e-6) * tolerance)
            pick = int(ok[rng.integers(ok.size)])
            sy, sx = divmod(pick, nxv)
            patch = ex[sy : sy + b, sx : sx + b]
            old = canvas[y : y + b, x : x + b]
            err = ((patch - old) ** 2).sum(2)
            keep_old = np.zeros((b, b), bool)
            if ix > 0:
                keep_old[:, :ov] |= _min_cut_vertical(err[:, :ov])
            if iy > 0:
                keep_old[:ov, :] |= _min_cut_vertical(err[:ov, :].T).T
            canvas[y : y + b, x : x + b] = np.where(keep_old[:, :, None], old, patch)
        report(progress, (iy + 1) / ny, "quilting")
    return np.ascontiguousarray(canvas[:out_h, :out_w])
