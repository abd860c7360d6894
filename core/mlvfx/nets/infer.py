"""Run :class:`MaterialNet` on a photo of any size through the tiled engine.

Arrays at this edge are float32 ``(H, W, C)`` numpy; the photo is linear RGB.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlvfx.nets.integrate import integrate_normals
from mlvfx.progress import CancelToken, ProgressFn, report, scaled

FloatImage = npt.NDArray[np.float32]

TILE = 384
OVERLAP = 32
MARGIN = 48

_cache_lock = threading.Lock()
_net_cache: dict[tuple[str, float, str], object] = {}


@dataclass
class LearnedMaps:
    """Raw learned maps at the photo's size (OpenGL normals).

    Attributes:
        normal: (H, W, 3) unit normals, OpenGL convention.
        height_px: (H, W) height in pixels integrated from ``normal`` (minimum 0), so
            ``normals_from_height(height_px)`` reproduces ``normal``'s low-to-mid frequencies.
        albedo: (H, W, 3) linear RGB in [0, 1].
        roughness: (H, W) in [0, 1].
    """

    normal: FloatImage
    height_px: FloatImage
    albedo: FloatImage
    roughness: FloatImage


def load_material_net(path: str | os.PathLike[str], device: str = "cpu") -> object:
    """Load (once per file version and device) a MaterialNet from a safetensors file, in eval mode.

    Returns:
        The :class:`mlvfx.nets.material.MaterialNet` (typed ``object`` so callers need not import torch).
    """
    from mlvfx.nets.material import material_net_from_state_dict
    from mlvfx.zoo import load_state_dict

    p = Path(path).resolve()
    key = (str(p), p.stat().st_mtime, device)
    with _cache_lock:
        net = _net_cache.get(key)
        if net is None:
            net = material_net_from_state_dict(load_state_dict(p, device="cpu")).to(device)
            _net_cache.clear()  # one model at a time: they are small, but sessions should not pile up
            _net_cache[key] = net
    return net


def predict_material(
    net: object,
    photo: FloatImage,
    *,
    tileable: bool = False,
    integrate: bool = True,
    tile: int = TILE,
    overlap: int = OVERLAP,
    margin: int = MARGIN,
    batch: int = 2,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> LearnedMaps:
    """Predict material maps for a photo of any size.

    Args:
        net: a :class:`mlvfx.nets.material.MaterialNet` in eval mode.
        photo: float32 (H, W, C) linear colour; C = 1 (grey) or >= 3 (RGB first).
        tileable: the photo wraps around: tiles get wrapped context and the height is periodic.
        integrate: compute ``height_px`` (skip it when no height or AO is wanted).
        tile: tile edge in pixels.
        overlap: overlap of neighbouring tiles, blended.
        margin: context pixels each tile sees per side (output discarded).
        batch: tiles per network call.
        progress: called with (fraction, message).
        cancel: checked between batches.

    Returns:
        :class:`LearnedMaps` at the photo's resolution.
    """
    import torch

    from mlvfx.nets.material import MaterialNet, context_thumbnail
    from mlvfx.tiling import run_tiled

    assert isinstance(net, MaterialNet)
    rgb = photo[..., :3] if photo.shape[2] >= 3 else np.repeat(photo[..., :1], 3, axis=2)
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    device = next(net.parameters()).device
    context = None
    if net.config.context:
        # One context vector from the whole photo, shared by every tile (no seams).
        with torch.inference_mode():
            whole = torch.from_numpy(rgb.transpose(2, 0, 1))[None]
            context = net.context_vector(context_thumbnail(whole).to(device))
            del whole

    def fn(tiles: FloatImage) -> FloatImage:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))).to(device)
            y = net(x, context=context).float().cpu().numpy()
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1))

    maps = run_tiled(
        rgb,
        fn,
        tile=tile,
        overlap=overlap,
        margin=margin,
        tileable=tileable,
        batch=batch,
        multiple=net.multiple,
        progress=scaled(progress, 0.0, 0.9),
        cancel=cancel,
    )
    del rgb
    normal = maps[..., 0:3]
    # Blending tiles shortens vectors slightly; renormalise in place.
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-6)
    height = np.zeros(maps.shape[:2], np.float32)
    if integrate:
        report(progress, 0.9, "integrating normals")
        height = integrate_normals(normal, tileable=tileable)
    report(progress, 1.0, "done")
    return LearnedMaps(normal, height, maps[..., 4:7], maps[..., 7])
