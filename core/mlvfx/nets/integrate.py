"""Integrate a normal map into a height field that is consistent with it, in bounded memory.

Least-squares (Poisson) integration of the slopes the normals imply. Non-tileable maps use the
DCT (Neumann boundary: the same as mirror-extending the slopes, without the 4x larger array);
tileable maps use the real FFT (periodic). Everything stays float32 (``scipy.fft``), so a 4096²
map needs a few hundred MB, not gigabytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float2D = npt.NDArray[np.float32]
Float3D = npt.NDArray[np.float32]


def slopes(normal: Float3D, *, min_nz: float = 0.05) -> tuple[Float2D, Float2D]:
    """Slopes (dh/dcol, dh/drow) of OpenGL tangent-space normals (H, W, 3) (+Y up, rows go down)."""
    nz = np.maximum(normal[..., 2], np.float32(min_nz))
    return (-normal[..., 0] / nz).astype(np.float32), (normal[..., 1] / nz).astype(np.float32)


def integrate_normals(normal: Float3D, *, tileable: bool = False) -> Float2D:
    """Height (H, W) in pixel units, minimum 0, whose gradient best matches the normals' slopes.

    Args:
        normal: float32 (H, W, 3) unit normals, OpenGL convention.
        tileable: the map wraps around (periodic solution); otherwise Neumann boundaries.

    Returns:
        float32 (H, W) height in pixels (a rise of 1 over one pixel is a 45° slope).
    """
    import scipy.fft as sfft  # type: ignore[import-untyped]

    p, q = slopes(normal)
    h, w = p.shape
    workers = -1
    if tileable:
        # Invert the central-difference operator exactly (symbol i*sin(k)), least squares.
        big_p = sfft.rfft2(p, workers=workers)
        big_q = sfft.rfft2(q, workers=workers)
        sy = np.sin(2 * np.pi * np.fft.fftfreq(h)).astype(np.float32)[:, None]
        sx = np.sin(2 * np.pi * np.fft.rfftfreq(w)).astype(np.float32)[None, :]
        denom = (sx * sx + sy * sy).astype(np.float32)
        invisible = denom < 1e-12  # DC and Nyquist: central differences cannot see them
        denom[invisible] = 1.0
        spec = (-1j * sx * big_p - 1j * sy * big_q) / denom
        del big_p, big_q
        spec[invisible] = 0.0
        height = sfft.irfft2(spec, s=(h, w), workers=workers).astype(np.float32)
    else:
        # Central slopes averaged onto the cell faces, then the Neumann divergence.
        px = np.zeros((h, w + 1), np.float32)
        px[:, 1:-1] = 0.5 * (p[:, 1:] + p[:, :-1])
        qy = np.zeros((h + 1, w), np.float32)
        qy[1:-1, :] = 0.5 * (q[1:, :] + q[:-1, :])
        div = (px[:, 1:] - px[:, :-1]) + (qy[1:, :] - qy[:-1, :])
        del px, qy
        spec = sfft.dctn(div, type=2, norm="ortho", workers=workers)
        del div
        # 2 cos k - 2 = -4 sin^2(k / 2): the cosine form cancels in float32 (the lowest
        # frequencies lost their precision from a few thousand pixels on, and from about 7430
        # pixels a side the first one rounded to 0: an all-NaN height).
        sy = (np.sin(0.5 * np.pi * np.arange(h) / h) ** 2)[:, None]
        sx = (np.sin(0.5 * np.pi * np.arange(w) / w) ** 2)[None, :]
        denom = (-4.0 * sy.astype(np.float32)) - 4.0 * sx.astype(np.float32)
        denom[0, 0] = 1.0
        spec /= denom
        spec[0, 0] = 0.0
        height = sfft.idctn(spec, type=2, norm="ortho", workers=workers).astype(np.float32)
    height -= height.min()
    return np.asarray(height, dtype=np.float32)
