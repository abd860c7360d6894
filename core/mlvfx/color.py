"""Colour transforms between sRGB-encoded files and linear values in memory.

Colour images (photo, albedo) are sRGB-encoded on disk and scene-linear in memory. Data maps
(normal, height, roughness, AO) are never converted. Alpha is never converted either.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Rec. 709 / sRGB primaries, applied to linear values.
LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def srgb_to_linear(encoded: npt.ArrayLike) -> FloatArray:
    """Decode sRGB values in [0, 1] to linear light (IEC 61966-2-1 piecewise curve).

    Args:
        encoded: any shape, float values; values outside [0, 1] are extended symmetrically.

    Returns:
        float32 array of the same shape.
    """
    a = np.asarray(encoded, dtype=np.float32)
    mag = np.abs(a)
    lin = np.where(mag <= 0.04045, mag / 12.92, ((mag + 0.055) / 1.055) ** 2.4)
    return np.asarray(np.copysign(lin, a), dtype=np.float32)


def linear_to_srgb(linear: npt.ArrayLike) -> FloatArray:
    """Encode linear values to sRGB (inverse of :func:`srgb_to_linear`).

    Args:
        linear: any shape, float values.

    Returns:
        float32 array of the same shape.
    """
    a = np.asarray(linear, dtype=np.float32)
    mag = np.abs(a)
    enc = np.where(mag <= 0.0031308, mag * 12.92, 1.055 * np.power(mag, 1.0 / 2.4) - 0.055)
    return np.asarray(np.copysign(enc, a), dtype=np.float32)


def color_channels(channels: int) -> int:
    """How many leading channels of a ``channels``-channel colour image carry colour (not alpha)."""
    return {1: 1, 2: 1, 3: 3, 4: 3}[channels]


def decode_color(image: FloatArray) -> FloatArray:
    """sRGB -> linear on the colour channels of an (H, W, C) image; alpha passes through."""
    out = image.astype(np.float32, copy=True)
    n = color_channels(image.shape[2])
    out[..., :n] = srgb_to_linear(image[..., :n])
    return out


def encode_color(image: FloatArray) -> FloatArray:
    """linear -> sRGB on the colour channels of an (H, W, C) image; alpha passes through."""
    out = image.astype(np.float32, copy=True)
    n = color_channels(image.shape[2])
    out[..., :n] = linear_to_srgb(image[..., :n])
    return out


def luminance(linear_rgb: FloatArray) -> FloatArray:
    """Rec. 709 luminance of a linear (H, W, C) image as (H, W); single-channel input is returned as is."""
    if linear_rgb.shape[2] < 3:
        return np.ascontiguousarray(linear_rgb[..., 0], dtype=np.float32)
    return np.asarray(linear_rgb[..., :3] @ LUMA_WEIGHTS, dtype=np.float32)
