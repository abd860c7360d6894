"""A seamless band for ``make_tileable``: exemplar blocks stitched in by minimum-error cuts.

The texture's own pixels tile everywhere except across the wrap, where its right edge meets its
left edge (and bottom meets top). Working on the texture rolled by half its size, those two seams
are a cross through the middle. Each arm of the cross is a ring (it wraps around the torus) of
width ``2 * band``; it is covered by blocks copied from the texture itself, as in Image Quilting
(Efros & Freeman 2001): every block is the exemplar block whose overlap with what is already
there has the least squared error: the original on both long sides, and at its top what the ring
covers (for the first block the original or the other ring, then the block before); the last
block also overlaps the first. The block is stitched in along a minimum-error boundary cut
through each overlap.

So the seam between the kept original and the new band follows a path where the two agree, in
the band, instead of the straight line where the original's continuation from both sides runs
into the exemplar's edge (which is what a coordinate-map synthesis seeded with the original
does: continuing the original costs nothing right up to that edge).

Arrays are numpy float32 (H, W, C) in the matching space (``Stack.match``); the result is a
coordinate map (flat ``y * W + x`` indices into the texture), so every map of a material set is
gathered at the same coordinates.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report, scaled
from mlvfx.texture.quilting import _correlate, _min_cut_vertical

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
CoordArray = npt.NDArray[np.int32]

COARSE_BLOCK = 192
"""Blocks this many pixels across or more are searched coarse to fine (see :class:`_Search`)."""

MANY_POSITIONS = 64
"""Blocks of 48 px or more are also searched coarse to fine when the exemplar holds this many
times their area (a 4096x256 trim's long ring: 76 px blocks)."""

MIN_BAND = 6
"""Narrower bands (pixels per side) leave no room for a cut; ``make_tileable`` synthesises them."""


def band_fits(shape: tuple[int, int], band: tuple[int, int]) -> bool:
    """Whether :func:`tile_coords` can work with this size and band (pixels per side, (y, x))."""
    h, w = shape
    by, bx = band
    return min(by, bx) >= MIN_BAND and 2 * bx < w and 2 * by < h


def _block_variance(ex: FloatArray, bh: int, bw: int) -> npt.NDArray[np.float32]:
    """Per top-left position, the mean squared deviation of the ``bh`` x ``bw`` block from its mean."""
    h, w, c = ex.shape
    ny, nx = h - bh + 1, w - bw + 1

    def mean(a: FloatArray) -> FloatArray:
        # box mean with the block's top-left as anchor, valid positions only
        out = cv2.boxFilter(a, -1, (bw, bh), anchor=(0, 0), normalize=True, borderType=cv2.BORDER_REPLICATE)
        return np.asarray(out[:ny, :nx], dtype=np.float32)

    var = mean(np.ascontiguousarray((ex**2).sum(2)))
    for k in range(c):
        var -= mean(np.ascontiguousarray(ex[:, :, k])) ** 2
    return var


def _ssd_map(
    ex: FloatArray, ex_sq: FloatArray, canvas: FloatArray, known: npt.NDArray[np.bool_]
) -> tuple[FloatArray, float]:
    """Masked squared error of ``canvas`` against the exemplar block at every position; the mask's size."""
    m = known[:, :, None].astype(np.float32)
    tpl = canvas * m
    ssd: FloatArray = _correlate(ex_sq, m) - 2.0 * _correlate(ex, tpl) + float((tpl**2).sum())
    return ssd, float(m.sum())


class _Search:
    """Finds blocks in one exemplar: overlap error plus a variance cost, coarse to fine for big blocks.

    The overlap error alone favours flat, low-contrast blocks (they are close to anything), which
    shows as a band duller than the texture; ``variance_weight`` adds a cost, per overlap pixel,
    for a block's variance differing from the typical block's.

    Blocks of :data:`COARSE_BLOCK` pixels or more are first searched, variance cost included, on
    the exemplar shrunk by an integer factor (the correlations cost about the exemplar's area times
    a log). The coarse pick is then refined by overlap error alone at full resolution, among the
    positions within one coarse cell of it.
    """

    def __init__(self, ex: FloatArray, variance_weight: float, block: int) -> None:
        self.ex = ex
        self.ex_sq = np.ascontiguousarray((ex**2).sum(2, keepdims=True), dtype=np.float32)
        self.variance_weight = variance_weight
        if block >= COARSE_BLOCK:
            self.factor = max(1, block // (COARSE_BLOCK // 2))
        elif block >= 48 and ex.shape[0] * ex.shape[1] >= MANY_POSITIONS * block * block:
            # small blocks in a big exemplar (a long ring: trims, strips): every block would
            # correlate with the whole exemplar, so search it at half resolution
            self.factor = 2
        else:
            self.factor = 1
        self.coarse: FloatArray | None = None
        self.coarse_sq: FloatArray | None = None
        if self.factor > 1:
            f = self.factor
            h, w = ex.shape[0] // f, ex.shape[1] // f
            c = _shrink(ex[: h * f, : w * f], f)
            self.coarse = c
            self.coarse_sq = np.ascontiguousarray((c**2).sum(2, keepdims=True), dtype=np.float32)
        self._variances: dict[tuple[int, ...], npt.NDArray[np.float32]] = {}

    def _variance(self, ex: FloatArray, bh: int, bw: int) -> npt.NDArray[np.float32]:
        key = (id(ex), bh, bw)  # a ring's blocks come in one or two shapes
        if key not in self._variances:
            self._variances[key] = _block_variance(ex, bh, bw)
        return self._variances[key]

    def _pick(
        self,
        ex: FloatArray,
        ex_sq: FloatArray,
        canvas: FloatArray,
        known: npt.NDArray[np.bool_],
        rng: np.random.Generator,
        tolerance: float,
    ) -> tuple[int, int]:
        ssd, area = _ssd_map(ex, ex_sq, canvas, known)
        if self.variance_weight > 0:
            var = self._variance(ex, canvas.shape[0], canvas.shape[1])
            ssd = ssd + (self.variance_weight * area) * np.abs(var - float(var.mean()))
        best = float(ssd.min())
        ok = np.flatnonzero(ssd.ravel() <= best + max(abs(best), 1e-6) * tolerance)
        pick = int(ok[rng.integers(ok.size)])
        sy, sx = divmod(pick, ssd.shape[1])
        return sy, sx

    def __call__(
        self,
        canvas: FloatArray,
        known: npt.NDArray[np.bool_],
        rng: np.random.Generator,
        tolerance: float,
    ) -> tuple[int, int]:
        """Top-left of an exemplar block whose known pixels match ``canvas`` within tolerance of the best."""
        if self.coarse is None or self.coarse_sq is None:
            return self._pick(self.ex, self.ex_sq, canvas, known, rng, tolerance)
        f = self.factor
        bh, bw = known.shape
        ch, cw = bh // f, bw // f
        coarse_canvas = _shrink(canvas[: ch * f, : cw * f], f)
        # a coarse cell is known only if all its pixels are
        coarse_known = _shrink(known[: ch * f, : cw * f, None].astype(np.float32), f)[:, :, 0] > 0.999
        cy, cx = self._pick(self.coarse, self.coarse_sq, coarse_canvas, coarse_known, rng, tolerance)
        # refine among the full-resolution positions the coarse cell stands for, and its neighbours'
        y0, x0 = max(0, cy * f - f + 1), max(0, cx * f - f + 1)
        y1 = min(self.ex.shape[0] - bh, cy * f + f - 1) + bh
        x1 = min(self.ex.shape[1] - bw, cx * f + f - 1) + bw
        ssd, _ = _ssd_map(
            np.ascontiguousarray(self.ex[y0:y1, x0:x1]),
            np.ascontiguousarray(self.ex_sq[y0:y1, x0:x1]),
            canvas,
            known,
        )
        dy, dx = divmod(int(np.argmin(ssd)), ssd.shape[1])
        return y0 + dy, x0 + dx


def _shrink(a: FloatArray, f: int) -> FloatArray:
    """Mean over ``f`` x ``f`` blocks of (H, W, C), H and W multiples of ``f``."""
    h, w, c = a.shape
    out: FloatArray = np.ascontiguousarray(a.reshape(h // f, f, w // f, f, c).mean((1, 3)), dtype=np.float32)
    return out


def _keep_mask(err: FloatArray, sides: dict[str, int]) -> npt.NDArray[np.bool_]:
    """Where a block keeps what is there: behind a minimum-error cut through each overlap side."""
    bh, bw = err.shape
    keep = np.zeros((bh, bw), bool)
    if "left" in sides:
        o = sides["left"]
        keep[:, :o] |= _min_cut_vertical(err[:, :o])
    if "right" in sides:
        o = sides["right"]
        keep[:, bw - o :] |= _min_cut_vertical(err[:, bw - o :][:, ::-1])[:, ::-1]
    if "top" in sides:
        o = sides["top"]
        keep[:o, :] |= _min_cut_vertical(err[:o, :].T).T
    if "bottom" in sides:
        o = sides["bottom"]
        keep[bh - o :, :] |= _min_cut_vertical(err[bh - o :, :][::-1].T).T[::-1]
    return keep


def _ring(
    ex: FloatArray,
    canvas: FloatArray,
    src: CoordArray,
    cols: tuple[int, int],
    start: int,
    side_overlap: int,
    rng: np.random.Generator,
    tolerance: float,
    variance_weight: float,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> None:
    """Cover the vertical ring ``canvas[:, cols[0]:cols[1]]`` with blocks, in place.

    ``canvas`` (H, W, C) holds the values and ``src`` (H, W, 2) the exemplar (y, x) each pixel
    copies. Blocks run down the ring from row ``start`` and wrap. Every block, the first one too,
    is cut in at its top against what is there; the last one also overlaps the first. The ring's
    own columns are rebuilt; ``side_overlap`` columns on each side inside it are where the cut
    against the original may run.
    """
    h = canvas.shape[0]
    x0, x1 = cols
    bw = x1 - x0
    eh = ex.shape[0]
    # block height about the ring's width, overlap a quarter of it; strides that close the ring
    target = min(bw, eh)
    top = max(2, target // 4)
    count = max(2, math.ceil(h / max(1, target - top)))
    bounds = [start + round(k * h / count) for k in range(count + 1)]
    search = _Search(ex, variance_weight, min(bw, target))
    for k in range(count):
        check_cancel(cancel)
        y0 = bounds[k]
        y1 = bounds[k + 1] + top  # overlaps the next block (the last one overlaps the first)
        bh = y1 - y0
        if bh > eh:
            raise ValueError(f"block height {bh} exceeds the exemplar's {eh}")
        rows = np.arange(y0, y1) % h
        # Every block is cut in at its top, the first one too (against what the ring covers: the
        # original or the other ring). A first block pasted with a hard top edge shows that edge
        # wherever the last block's side cuts leave the first block's corner next to older content
        # (a straight seam on the wrap, found at 2048² and 4096²).
        sides = {"left": side_overlap, "right": side_overlap, "top": top}
        if k == count - 1:
            sides["bottom"] = top
        known = np.zeros((bh, bw), bool)
        known[:, :side_overlap] = True
        known[:, bw - side_overlap :] = True
        known[:top, :] = True
        if "bottom" in sides:
            known[bh - top :, :] = True
        old = canvas[rows, x0:x1]
        sy, sx = search(old, known, rng, tolerance)
        patch = ex[sy : sy + bh, sx : sx + bw]
        err = ((patch - old) ** 2).sum(2)
        keep = _keep_mask(err, sides)
        new = ~keep
        yy, xx = np.nonzero(new)
        canvas[rows[yy], x0 + xx] = patch[yy, xx]
        src[rows[yy], x0 + xx, 0] = sy + yy
        src[rows[yy], x0 + xx, 1] = sx + xx
        report(progress, (k + 1) / count, f"tiling: block {k + 1}/{count}")


def tile_coords(
    match: FloatArray,
    band: tuple[int, int],
    *,
    seed: int = 0,
    tolerance: float = 0.1,
    variance_weight: float = 0.5,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> IntArray:
    """A coordinate map that keeps the texture away from its wrap and re-stitches a band around it.

    Args:
        match: float32 (H, W, C) texture in the matching space.
        band: pixels per side re-stitched around the wrap, (y, x); see :func:`band_fits`.
        seed: random seed (which of the near-best blocks is used).
        tolerance: blocks within (1 + tolerance) of the best overlap error are picked at random.
        variance_weight: cost per overlap pixel of a block's variance differing from the typical
            block's (0 turns it off; ``bench/texture_tile_seam.py``: 0.5 gave the band's look
            closest to the texture's, 0 a duller band).
        progress: called with (fraction, message).
        cancel: checked before every block.

    Returns:
        int64 (H, W) flat indices ``y * W + x`` into the texture. Pixels farther than ``band``
        from the wrap copy themselves.
    """
    h, w, _ = match.shape
    by, bx = band
    if not band_fits((h, w), band):
        raise ValueError(f"band {band} does not fit a {w}x{h} texture")
    rng = np.random.default_rng(seed)
    ex = np.ascontiguousarray(match, dtype=np.float32)
    cy, cx = h // 2, w // 2
    # Rolled by half, the wrap is the cross through (cy, cx): pixel (y, x) of the canvas shows the
    # texture's ((y - cy) % h, (x - cx) % w), so texture row and column 0 sit exactly at cy and cx
    # (also for odd sizes). ``src`` holds that (y, x) source per pixel.
    src = np.empty((h, w, 2), np.int32)
    src[..., 0] = ((np.arange(h, dtype=np.int32) - cy) % h)[:, None]
    src[..., 1] = ((np.arange(w, dtype=np.int32) - cx) % w)[None, :]
    canvas = np.roll(ex, (cy, cx), (0, 1))
    side_x, side_y = max(2, bx // 2), max(2, by // 2)
    # the vertical ring starts in the middle of the horizontal one, which then covers its closure
    report(progress, 0.0, "tiling: vertical band")
    ring_v = scaled(progress, 0.0, 0.5)
    _ring(
        ex,
        canvas,
        src,
        (cx - bx, cx + bx),
        cy,
        side_x,
        rng,
        tolerance,
        variance_weight,
        ring_v,
        cancel,
    )
    # the horizontal ring is the vertical one of the transposed texture
    canvas_t = np.ascontiguousarray(canvas.transpose(1, 0, 2))
    del canvas
    src_t = np.ascontiguousarray(src.transpose(1, 0, 2)[..., ::-1])
    del src
    ex_t = np.ascontiguousarray(ex.transpose(1, 0, 2))
    del ex
    ring_h = scaled(progress, 0.5, 1.0)
    _ring(
        ex_t,
        canvas_t,
        src_t,
        (cy - by, cy + by),
        cx,
        side_y,
        rng,
        tolerance,
        variance_weight,
        ring_h,
        cancel,
    )
    coords = src_t[..., 1].astype(np.int64).T * w + src_t[..., 0].T
    report(progress, 1.0, "tiling: done")
    out: IntArray = np.ascontiguousarray(np.roll(coords, (-cy, -cx), (0, 1)))
    return out
