"""Classical (non-learned) material maps from a photo.

These are the fast mode for users and the yardstick every learned model must beat.

Conventions: images are float32 (H, W, C), colour linear; height is (H, W) in pixel units unless
stated; normals are (H, W, 3) unit vectors, tangent space, OpenGL convention (+X right, +Y up in
the image, +Z out of the surface); "directx" flips Y.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from mlvfx.classical.filters import gaussian, normalize_range, pad, sobel
from mlvfx.color import luminance
from mlvfx.errors import InputError

Float2D = npt.NDArray[np.float32]
Float3D = npt.NDArray[np.float32]
Convention = Literal["opengl", "directx"]


def _check_convention(convention: str) -> None:
    if convention not in ("opengl", "directx"):
        raise InputError(f"normal convention must be 'opengl' or 'directx', got {convention!r}")


def _as_2d(height: npt.ArrayLike, name: str) -> Float2D:
    h = np.asarray(height, dtype=np.float32)
    if h.ndim == 3 and h.shape[2] == 1:
        h = h[..., 0]
    if h.ndim != 2:
        raise InputError(f"{name} must be (H, W) or (H, W, 1), got shape {h.shape}")
    return h


def height_from_photo(
    linear_rgb: Float3D, *, tileable: bool = False, scales: int = 6, large_scale_weight: float = 1.5
) -> Float2D:
    """Materialize-style height from luminance: a weighted sum of band-passed luminance.

    Bright is high. Each octave (sigma 1, 2, 4, ...) contributes a band-pass; larger octaves get more
    weight because large-scale relief (bricks vs grout) matters more than texture noise. The
    very largest scale is removed so shading gradients across the whole photo don't become tilt.

    Args:
        linear_rgb: float32 (H, W, C) linear colour (C = 1, 3 or 4).
        tileable: wrap around the edges.
        scales: number of octaves.
        large_scale_weight: weight growth per octave.

    Returns:
        float32 (H, W) in [0, 1].
    """
    lum = np.log1p(8.0 * luminance(linear_rgb))
    h, w = lum.shape
    octaves = max(1, min(scales, int(np.log2(max(2, min(h, w) // 4)))))
    previous = lum
    total = np.zeros_like(lum)
    weight_sum = 0.0
    for k in range(octaves):
        blurred = gaussian(lum, 2.0**k, tileable)
        weight = large_scale_weight**k
        total += weight * (previous - blurred)
        weight_sum += weight
        previous = blurred
    return normalize_range(total / weight_sum)


def height_to_normal(
    height: npt.ArrayLike,
    *,
    strength: float = 1.0,
    convention: Convention = "opengl",
    tileable: bool = False,
) -> Float3D:
    """Tangent-space normals from a height field by Sobel gradients.

    Args:
        height: (H, W) height in pixel units (a height rising by 1 over one pixel is a 45° slope).
        strength: gradient multiplier (relief depth in pixels for a [0, 1] height).
        convention: "opengl" (+Y up) or "directx" (+Y down).
        tileable: wrap around the edges.

    Returns:
        float32 (H, W, 3) unit normals.
    """
    _check_convention(convention)
    h = _as_2d(height, "height")
    d_col, d_row = sobel(h, tileable)
    # Image rows grow downwards, so d/dy (y up) = -d/drow and n_y = -dh/dy = +dh/drow.
    nx = -strength * d_col
    ny = strength * d_row if convention == "opengl" else -strength * d_row
    nz = np.ones_like(nx)
    n = np.stack([nx, ny, nz], axis=-1)
    return np.asarray(n / np.linalg.norm(n, axis=-1, keepdims=True), dtype=np.float32)


def normal_to_height(
    normal: Float3D, *, convention: Convention = "opengl", tileable: bool = False
) -> Float2D:
    """Integrate a normal map into a height field (Frankot–Chellappa, FFT least squares).

    Non-tileable input is mirror-extended (with the matching gradient sign flips) so the periodic
    FFT solution does not bend the borders.

    Args:
        normal: (H, W, 3) unit normals in ``convention``.
        convention: "opengl" or "directx".
        tileable: the map wraps around.

    Returns:
        float32 (H, W) height in pixel units, minimum 0.
    """
    _check_convention(convention)
    n = np.asarray(normal, dtype=np.float32)
    if n.ndim != 3 or n.shape[2] < 3:
        raise InputError(f"normal must be (H, W, 3), got shape {n.shape}")
    nz = np.maximum(n[..., 2], 1e-3)
    p = -n[..., 0] / nz  # dh/dcol
    q = n[..., 1] / nz if convention == "opengl" else -n[..., 1] / nz  # dh/drow
    h, w = p.shape
    if not tileable:
        p = np.block([[p, -p[:, ::-1]], [p[::-1, :], -p[::-1, ::-1]]])
        q = np.block([[q, q[:, ::-1]], [-q[::-1, :], -q[::-1, ::-1]]])
    rows, cols = p.shape
    # Frequencies of the central-difference operator, so integration inverts what Sobel measured.
    wx = np.sin(2 * np.pi * np.fft.fftfreq(cols))[None, :]
    wy = np.sin(2 * np.pi * np.fft.fftfreq(rows))[:, None]
    denom = wx**2 + wy**2
    denom[0, 0] = 1.0
    spectrum = (-1j * wx * np.fft.fft2(p) - 1j * wy * np.fft.fft2(q)) / denom
    spectrum[0, 0] = 0.0
    # Nyquist rows/columns are invisible to central differences; leave them at zero.
    height = np.real(np.fft.ifft2(spectrum))[:h, :w]
    return np.asarray(height - height.min(), dtype=np.float32)


def delight_blur_divide(
    linear_rgb: Float3D, *, sigma: float | None = None, tileable: bool = False
) -> Float3D:
    """Remove large-scale lighting: albedo = colour / blurred luminance × mean luminance.

    Small shadows and highlights smaller than ``sigma`` stay; this is the classical baseline.

    Args:
        linear_rgb: float32 (H, W, C) linear colour; alpha, if any, passes through.
        sigma: blur radius in pixels (default: 1/16 of the larger side).
        tileable: wrap around the edges.

    Returns:
        float32 (H, W, C) linear albedo in [0, 1].
    """
    img = np.asarray(linear_rgb, dtype=np.float32)
    lum = luminance(img)
    s = sigma if sigma is not None else max(img.shape[:2]) / 16.0
    low = gaussian(lum, s, tileable)
    gain = float(lum.mean()) / np.maximum(low, 1e-4)
    out = img.copy()
    colour = min(3, img.shape[2])
    out[..., :colour] = np.clip(img[..., :colour] * gain[..., None], 0.0, 1.0)
    return out


def roughness_heuristic(linear_rgb: Float3D, *, tileable: bool = False) -> Float2D:
    """A simple roughness estimate: fine micro-contrast reads as rough, smooth shiny areas as glossy.

    Honest scope: a photo under unknown light does not determine roughness. This maps the local
    fine-scale contrast of the delit luminance (relative to its local mean) to [0.3, 0.95] and pulls
    clipped, desaturated highlights (specular glints) towards glossy. It is a plausible starting
    point for artists and the baseline a learned model must beat, not a measurement.

    Returns:
        float32 (H, W) roughness in [0, 1].
    """
    img = np.asarray(linear_rgb, dtype=np.float32)
    lum = luminance(img)
    local_mean = gaussian(lum, 4.0, tileable)
    detail = np.abs(lum - gaussian(lum, 1.0, tileable)) / np.maximum(local_mean, 1e-3)
    contrast = gaussian(detail, 2.0, tileable)
    rough = 0.3 + 0.65 * normalize_range(contrast, 2.0, 98.0)
    if img.shape[2] >= 3:
        sat = img[..., :3].max(axis=2) - img[..., :3].min(axis=2)
        glint = np.clip((lum - 0.8) * 5.0, 0.0, 1.0) * np.clip(1.0 - 4.0 * sat, 0.0, 1.0)
        rough = rough * (1.0 - 0.5 * gaussian(glint, 1.0, tileable))
    return np.clip(rough, 0.0, 1.0).astype(np.float32)


def ao_from_height(
    height: npt.ArrayLike,
    *,
    radius: float = 16.0,
    directions: int = 8,
    steps: int = 8,
    tileable: bool = False,
) -> Float2D:
    """Horizon-based ambient occlusion from a height field.

    For each direction, march outwards up to ``radius`` pixels and keep the highest elevation angle
    of the terrain seen from the pixel; AO = 1 - mean(sin(horizon angle)).

    Args:
        height: (H, W) height in pixel units.
        radius: search radius in pixels.
        directions: number of azimuths.
        steps: samples per direction (spaced quadratically, denser near the pixel).
        tileable: wrap around the edges.

    Returns:
        float32 (H, W) in [0, 1], 1 = unoccluded.
    """
    h = _as_2d(height, "height")
    rows, cols = h.shape
    border = int(np.ceil(radius)) + 1
    padded = pad(h, border, tileable)
    occlusion = np.zeros_like(h)
    for d in range(directions):
        angle = 2 * np.pi * (d + 0.5) / directions
        dx, dy = np.cos(angle), np.sin(angle)
        best = np.zeros_like(h)
        for s in range(1, steps + 1):
            dist = radius * (s / steps) ** 2
            ox, oy = round(dx * dist), round(dy * dist)
            if ox == 0 and oy == 0:
                continue
            shifted = padded[border + oy : border + oy + rows, border + ox : border + ox + cols]
            true_dist = float(np.hypot(ox, oy))
            rise = (shifted - h) / true_dist
            np.maximum(best, rise, out=best)
        occlusion += best / np.sqrt(1.0 + best * best)  # sin(atan(rise))
    return np.clip(1.0 - occlusion / directions, 0.0, 1.0).astype(np.float32)
