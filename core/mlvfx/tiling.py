"""Tiled inference: run any per-tile function over an image of any size in bounded memory.

The image is covered by a grid of equal-sized, overlapping tiles. Each tile is cut out with a
context margin (mirror-padded at the image border, or wrapped when the image is tileable; with
``border="inside"`` the window moves inward instead, so a tile at the border sees only real
pixels), the function runs on a batch of tiles, the margin is dropped, and the tiles are blended
with smooth weights that are normalised, so an identity function gives the input back.

Memory stays bounded because the output is assembled one row of tiles at a time: only a band of
one tile height is accumulated, then finished rows are normalised and written into the output
array (which may be a caller-provided ``np.memmap``). No padded copy of the input is made; tiles
are gathered with index arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError
from mlvfx.io.image import check_image
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

FloatImage = npt.NDArray[np.float32]
TileFn = Callable[[FloatImage], FloatImage]
"""Maps a batch (B, h, w, C) float32 to (B, h*scale, w*scale, C_out) float32."""


@dataclass(frozen=True)
class TilePlan:
    """Where tiles go along one axis: start positions of equal-length tiles covering ``length``."""

    length: int
    tile: int
    starts: tuple[int, ...]


def plan_axis(length: int, tile: int, overlap: int) -> TilePlan:
    """Evenly spaced tile starts along an axis so that neighbours overlap by at least ``overlap``.

    A tile longer than the axis shrinks to the axis; otherwise tiles shrink (never grow) to the
    smallest length that covers the axis with that many tiles. The last tile ends at ``length``.
    """
    tile = min(tile, length)
    if tile >= length:
        return TilePlan(length, length, (0,))
    overlap = min(overlap, tile - 1)
    count = math.ceil((length - overlap) / (tile - overlap))
    # Shrink the tiles so neighbours overlap by about ``overlap`` instead of wasting work on a
    # large overlap (3 tiles of 512 over 1024 pixels would compute half the pixels twice).
    tile = min(tile, math.ceil((length + (count - 1) * overlap) / count) + 1)
    span = length - tile
    starts = tuple(round(i * span / (count - 1)) for i in range(count))
    return TilePlan(length, tile, starts)


def _source_index(index: npt.NDArray[np.int64], length: int, wrap: bool) -> npt.NDArray[np.int64]:
    """Map out-of-range indices into [0, length): periodic when ``wrap``, else mirrored (no edge repeat)."""
    if wrap:
        return np.mod(index, length)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * length - 2
    folded = np.mod(index, period)
    return np.where(folded < length, folded, period - folded)


def _ramp(tile: int, fade_in: int, fade_out: int) -> npt.NDArray[np.float32]:
    """1-D blending weight: a raised-cosine fade over ``fade_in`` at the start and ``fade_out`` at the end.

    The weight never reaches zero (floor 1e-3) so every pixel has a positive total weight.
    """
    w = np.ones(tile, dtype=np.float64)
    if fade_in > 0:
        t = (np.arange(fade_in) + 0.5) / fade_in
        w[:fade_in] = np.minimum(w[:fade_in], 0.5 - 0.5 * np.cos(np.pi * t))
    if fade_out > 0:
        t = (np.arange(fade_out) + 0.5) / fade_out
        w[tile - fade_out :] = np.minimum(w[tile - fade_out :], 0.5 + 0.5 * np.cos(np.pi * t))
    return np.maximum(w, 1e-3).astype(np.float32)


def _axis_weights(plan: TilePlan) -> list[npt.NDArray[np.float32]]:
    weights = []
    n = len(plan.starts)
    for i, start in enumerate(plan.starts):
        fade_in = 0 if i == 0 else plan.starts[i - 1] + plan.tile - start
        fade_out = 0 if i == n - 1 else start + plan.tile - plan.starts[i + 1]
        weights.append(_ramp(plan.tile, fade_in, fade_out))
    return weights


BORDERS = ("mirror", "inside")
"""How :func:`run_tiled` gives a tile context at the image border (see its ``border``)."""


def _windows(
    plan: TilePlan, before: int, after: int, multiple: int, inside: bool
) -> tuple[int, list[tuple[int, int]]]:
    """The crop length along one axis and, per tile, where its crop starts in the image and where
    the tile starts inside its crop.

    A mirrored border centres every crop on its tile (``before`` context ahead, ``after`` behind).
    An inside border moves a crop that would leave the image back inside it. When the whole axis
    is shorter than a crop, the crop is the axis itself, rounded up to ``multiple`` (the few
    pixels past the end are mirrored).
    """
    crop = plan.tile + before + after
    if not inside:
        return crop, [(start - before, before) for start in plan.starts]
    if crop > plan.length:
        crop = plan.length + (-plan.length) % multiple
        return crop, [(0, start) for start in plan.starts]
    out = []
    for start in plan.starts:
        src = min(max(start - before, 0), plan.length - crop)
        out.append((src, start - src))
    return crop, out


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_tiled(
    image: npt.ArrayLike,
    fn: TileFn,
    *,
    tile: int = 512,
    overlap: int = 64,
    margin: int = 16,
    tileable: bool = False,
    batch: int = 4,
    scale: int = 1,
    multiple: int = 1,
    border: str = "mirror",
    out: FloatImage | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FloatImage:
    """Apply ``fn`` to ``image`` tile by tile and blend the results.

    Args:
        image: float32 (H, W, C) (or (H, W)); any colour space, passed to ``fn`` unchanged.
        fn: maps a batch (B, h, w, C) to (B, h*scale, w*scale, C_out). It sees each tile with
            ``margin`` pixels of context on every side.
        tile: tile edge in input pixels, before the margin.
        overlap: minimum overlap between neighbouring tiles; blending happens over it.
        margin: context on each side that ``fn`` sees but whose output is discarded.
        tileable: wrap the context around the image edges so a tileable input gives a tileable
            output; otherwise the context is mirrored.
        batch: tiles per call of ``fn``.
        scale: integer output/input size ratio (1 for per-pixel maps, >1 for upscalers).
        multiple: ``fn`` needs h and w divisible by this (e.g. 2**levels of a U-Net); extra
            context is added at the far side and cropped away.
        border: context at the image border when not ``tileable``. ``"mirror"``: the margin is
            the image mirrored. ``"inside"``: a tile's window slides inward so its margin is
            real image (an image smaller than a window is passed whole, plus at most
            ``multiple - 1`` mirrored pixels). For learned models trained on crops of real
            images: a mirrored margin shows them light falling the mirrored way.
        out: optional preallocated output (H*scale, W*scale, C_out) float32, e.g. a memmap.
        progress: called with (fraction, message) after every batch.
        cancel: checked before every batch.

    Returns:
        float32 (H*scale, W*scale, C_out).

    Raises:
        InputError: invalid tiling parameters, or ``fn`` returns the wrong shape.
        Cancelled: ``cancel`` was set.

    Example:
        >>> img = np.random.rand(300, 200, 3).astype(np.float32)
        >>> same = run_tiled(img, lambda b: b, tile=128, overlap=32)
        >>> bool(np.allclose(same, img, atol=1e-6))
        True
    """
    img = check_image(image, "image")
    if tile < 1 or overlap < 0 or margin < 0 or batch < 1 or scale < 1 or multiple < 1:
        raise InputError(
            f"invalid tiling parameters: tile={tile}, overlap={overlap}, margin={margin}, "
            f"batch={batch}, scale={scale}, multiple={multiple}"
        )
    if border not in BORDERS:
        raise InputError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
    if overlap >= tile and tile < max(img.shape[:2]):
        raise InputError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    height, width, _ = img.shape
    rows = plan_axis(height, tile, overlap)
    cols = plan_axis(width, tile, overlap)
    row_weights = _axis_weights(rows)
    col_weights = [np.repeat(w, scale) for w in _axis_weights(cols)]
    row_weights = [np.repeat(w, scale) for w in row_weights]

    def crop_extent(t: int) -> tuple[int, int]:
        """Context before and after a tile so that the crop length is a multiple of ``multiple``."""
        total = t + 2 * margin
        extra = (-total) % multiple
        return margin, margin + extra

    inside = border == "inside" and not tileable
    crop_h, row_windows = _windows(rows, *crop_extent(rows.tile), multiple, inside)
    crop_w, col_windows = _windows(cols, *crop_extent(cols.tile), multiple, inside)
    col_spans = [(a, a + crop_w) for a, _ in col_windows]
    col_index = [_source_index(np.arange(a, b, dtype=np.int64), width, tileable) for a, b in col_spans]

    # The blend weight of a tile is row_w(y) * col_w(x), so the total weight at a pixel is separable:
    # (sum of row weights at y) * (sum of column weights at x). No 2-D weight image is needed.
    row_total = np.zeros(height * scale, dtype=np.float32)
    for start, w in zip(rows.starts, row_weights, strict=True):
        row_total[start * scale : (start + rows.tile) * scale] += w
    col_total = np.zeros(width * scale, dtype=np.float32)
    for start, w in zip(cols.starts, col_weights, strict=True):
        col_total[start * scale : (start + cols.tile) * scale] += w
    # Blending works on (rows, columns * channels) views so numpy's inner loops run over whole rows.
    inv_col_total: npt.NDArray[np.float32] | None = None
    col_weights_flat: list[npt.NDArray[np.float32]] = []

    total_tiles = len(rows.starts) * len(cols.starts)
    done = 0
    result: FloatImage | None = out
    band: npt.NDArray[np.float32] | None = None
    scratch: npt.NDArray[np.float32] | None = None
    tiles_buf = np.empty((min(batch, len(cols.starts)), crop_h, crop_w, img.shape[2]), dtype=np.float32)
    band_top = 0
    out_channels = -1

    def flush(until: int) -> None:
        """Normalise and write output rows [band_top, until) (input coordinates), then shift the band."""
        nonlocal band_top
        assert band is not None and result is not None
        n = (until - band_top) * scale
        if n <= 0:
            return
        y0 = band_top * scale
        target = result[y0 : y0 + n]
        assert inv_col_total is not None
        flat_target = target.reshape(n, -1)
        np.multiply(band[:n].reshape(n, -1), inv_col_total[None, :], out=flat_target)
        flat_target *= (1.0 / row_total[y0 : y0 + n])[:, None]
        keep = band.shape[0] - n
        band[:keep] = band[n:]
        band[keep:] = 0.0
        band_top = until

    report(progress, 0.0, f"tiling: 0/{total_tiles} tiles")
    for r, row_start in enumerate(rows.starts):
        if band is not None:
            flush(row_start)
        band_top = row_start
        y_a, y_b = row_windows[r][0], row_windows[r][0] + crop_h
        if 0 <= y_a and y_b <= height:
            rows_of_image = img[y_a:y_b]
        else:
            rows_of_image = img[_source_index(np.arange(y_a, y_b, dtype=np.int64), height, tileable)]
        for group in _batches(list(range(len(cols.starts))), batch):
            check_cancel(cancel)
            tiles = tiles_buf[: len(group)]
            for k, c in enumerate(group):
                x_a, x_b = col_spans[c]
                if 0 <= x_a and x_b <= width:
                    tiles[k] = rows_of_image[:, x_a:x_b]
                else:
                    tiles[k] = rows_of_image[:, col_index[c]]
            produced = np.asarray(fn(tiles), dtype=np.float32)
            expected = (len(group), crop_h * scale, crop_w * scale)
            if produced.ndim != 4 or produced.shape[:3] != expected:
                raise InputError(
                    f"tile function returned shape {produced.shape}, expected {(*expected, 'C')}"
                )
            if out_channels < 0:
                out_channels = produced.shape[3]
                want = (height * scale, width * scale, out_channels)
                if result is None:
                    result = np.empty(want, dtype=np.float32)
                elif result.shape != want:
                    raise InputError(f"out has shape {result.shape}, expected {want}")
                band = np.zeros((rows.tile * scale, width * scale, out_channels), dtype=np.float32)
                scratch = np.empty((rows.tile * scale, cols.tile * scale * out_channels), dtype=np.float32)
                inv_col_total = np.repeat(1.0 / col_total, out_channels).astype(np.float32)
                col_weights_flat = [np.repeat(w, out_channels) for w in col_weights]
            if produced.shape[3] != out_channels:
                raise InputError(f"tile function changed its channel count to {produced.shape[3]}")
            assert band is not None and scratch is not None
            y0 = row_windows[r][1] * scale
            band_flat = band.reshape(band.shape[0], -1)
            for k, c in enumerate(group):
                x0 = col_windows[c][1] * scale
                core = produced[k, y0 : y0 + rows.tile * scale, x0 : x0 + cols.tile * scale]
                tile_flat = np.ascontiguousarray(core).reshape(scratch.shape)
                np.multiply(tile_flat, row_weights[r][:, None], out=scratch)
                scratch *= col_weights_flat[c][None, :]
                x0_flat = cols.starts[c] * scale * out_channels
                band_flat[:, x0_flat : x0_flat + scratch.shape[1]] += scratch
            done += len(group)
            report(progress, done / total_tiles, f"tiling: {done}/{total_tiles} tiles")
    flush(height)
    assert result is not None
    return result
