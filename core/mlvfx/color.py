"""Colour transforms between sRGB-encoded files and linear values in memory.

Colour images (photo, albedo) are sRGB-encoded on disk and scene-linear in memory. Data maps
(normal, height, roughness, AO) are never converted. Alpha is never converted either.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Rec. 709 / sRGB primaries, applied to linear values.
LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

CHUNK_VALUES = 1 << 22
"""Large arrays are converted this many values at a time: the piecewise curves need several
temporaries of the input's size, which for a 16384² photo came to about 10 GiB (a scale audit)."""


def _rows_per_chunk(a: npt.NDArray[np.generic]) -> int:
    """How many slices of ``a``'s first axis make about :data:`CHUNK_VALUES` values (at least 1)."""
    per_row = a.size // a.shape[0] if a.shape[0] else 1
    return max(1, CHUNK_VALUES // max(1, per_row))


def _by_chunks(fn: Callable[[FloatArray], FloatArray], a: FloatArray) -> FloatArray:
    """``fn`` (elementwise, float32 in and out) over ``a`` in slices of its first axis."""
    if a.ndim == 0 or a.size <= CHUNK_VALUES:
        return np.asarray(fn(a), dtype=np.float32)
    out = np.empty(a.shape, np.float32)
    step = _rows_per_chunk(a)
    for i in range(0, a.shape[0], step):
        out[i : i + step] = fn(a[i : i + step])
    return out


def _decode(a: FloatArray) -> FloatArray:
    mag = np.abs(a)
    lin = np.where(mag <= 0.04045, mag / 12.92, ((mag + 0.055) / 1.055) ** 2.4)
    return np.asarray(np.copysign(lin, a), dtype=np.float32)


def _encode(a: FloatArray) -> FloatArray:
    mag = np.abs(a)
    enc = np.where(mag <= 0.0031308, mag * 12.92, 1.055 * np.power(mag, 1.0 / 2.4) - 0.055)
    return np.asarray(np.copysign(enc, a), dtype=np.float32)


def srgb_to_linear(encoded: npt.ArrayLike) -> FloatArray:
    """Decode sRGB values in [0, 1] to linear light (IEC 61966-2-1 piecewise curve).

    Args:
        encoded: any shape, float values; values outside [0, 1] are extended symmetrically.

    Returns:
        float32 array of the same shape.
    """
    return _by_chunks(_decode, np.asarray(encoded, dtype=np.float32))


def linear_to_srgb(linear: npt.ArrayLike) -> FloatArray:
    """Encode linear values to sRGB (inverse of :func:`srgb_to_linear`).

    Args:
        linear: any shape, float values.

    Returns:
        float32 array of the same shape.
    """
    return _by_chunks(_encode, np.asarray(linear, dtype=np.float32))


def color_channels(channels: int) -> int:
    """How many leading channels of a ``channels``-channel colour image carry colour (not alpha)."""
    return {1: 1, 2: 1, 3: 3, 4: 3}[channels]


def _on_color_channels(image: FloatArray, fn: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """A float32 copy of an (H, W, C) image with ``fn`` applied to its colour channels, in place,
    a band of rows at a time; alpha passes through."""
    out = image.astype(np.float32, copy=True)
    n = color_channels(image.shape[2])
    step = _rows_per_chunk(out)
    for i in range(0, out.shape[0], step):
        out[i : i + step, :, :n] = fn(out[i : i + step, :, :n])
    return out


def decode_color(image: FloatArray) -> FloatArray:
    """sRGB -> linear on the colour channels of an (H, W, C) image; alpha passes through."""
    return _on_color_channels(image, _decode)


def encode_color(image: FloatArray) -> FloatArray:
    """linear -> sRGB on the colour channels of an (H, W, C) image; alpha passes through."""
    return _on_color_channels(image, _encode)


def luminance(linear_rgb: FloatArray) -> FloatArray:
    """Rec. 709 luminance of a linear (H, W, C) image as (H, W); single-channel input is returned as is."""
    if linear_rgb.shape[2] < 3:
        return np.ascontiguousarray(linear_rgb[..., 0], dtype=np.float32)
    return np.asarray(linear_rgb[..., :3] @ LUMA_WEIGHTS, dtype=np.float32)
