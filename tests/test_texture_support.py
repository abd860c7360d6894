"""Small procedural exemplars shared by the texture tests (no downloads, deterministic); no tests here."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def smooth_noise(size: int, seed: int, scale: int = 4) -> FloatArray:
    """(size, size) value noise in [0, 1] with features ~``size / scale`` pixels (not tileable)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.random((scale + 1, scale + 1)).astype(np.float32)
    big = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(fine, (0, 0), 1.5)
    mixed = 0.6 * big + 0.8 * (smooth - smooth.mean()) * 4
    out: FloatArray = ((mixed - mixed.min()) / (mixed.max() - mixed.min())).astype(np.float32)
    return out


def bricks(size: int = 64, seed: int = 0) -> FloatArray:
    """(size, size, 3) linear-colour running-bond bricks with mortar and per-brick tint."""
    rng = np.random.default_rng(seed)
    h = size // 4
    w = size // 2
    img = np.zeros((size, size, 3), np.float32)
    yy, xx = np.mgrid[:size, :size]
    row = yy // h
    shift = (row % 2) * (w // 2)
    col = (xx + shift) // w
    brick_id = row * 10 + col
    tints = rng.uniform(0.3, 0.7, size=(brick_id.max() + 1, 1)).astype(np.float32)
    base = np.array([0.6, 0.25, 0.15], np.float32)
    img[:] = base * (0.6 + tints[brick_id])
    mortar = ((yy % h) < 2) | (((xx + shift) % w) < 2)
    img[mortar] = (0.7, 0.7, 0.65)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def noise_rgb(
    size: int = 64, seed: int = 0, tint: tuple[float, float, float] = (0.8, 0.6, 0.4)
) -> FloatArray:
    """(size, size, 3) tinted smooth noise."""
    n = smooth_noise(size, seed)
    return (n[:, :, None] * np.asarray(tint, np.float32)[None, None, :]).astype(np.float32)


def material(size: int = 64, seed: int = 0) -> dict[str, FloatArray]:
    """A material set whose maps are functions of one height field, to check alignment exactly."""
    height = smooth_noise(size, seed)
    gy, gx = np.gradient(height * 8.0)
    normal = np.stack([-gx, gy, np.ones_like(height)], axis=2)
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    albedo = np.stack([height, 0.5 * height + 0.2, 1.0 - height], axis=2)
    return {
        "albedo": albedo.astype(np.float32),
        "normal": normal.astype(np.float32),
        "height": height.astype(np.float32),
        "roughness": (1.0 - 0.5 * height)[:, :, None].astype(np.float32),
    }
