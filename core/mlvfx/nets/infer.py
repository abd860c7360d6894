"""Run :class:`MaterialNet` on a photo of any size through the tiled engine.

Arrays at this edge are float32 ``(H, W, C)`` numpy; the photo is linear RGB.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlvfx.nets.integrate import integrate_normals
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report, scaled

FloatImage = npt.NDArray[np.float32]

TILE = 384
OVERLAP = 32
MARGIN = 48
# Tileable photos get more wrapped context per tile: the wrap-around edge has no overlap to blend
# over, and with material 0.6.0 a 48-px margin made it stand out (tests/test_material_op.py::
# test_tileable_maps_tile failed). Costs about 1.4x per tile, tileable photos only.
TILEABLE_MARGIN = 96

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
            try:
                net = material_net_from_state_dict(load_state_dict(p, device="cpu"))
            except (ValueError, RuntimeError, KeyError) as exc:  # another model's weights (a fuzz audit)
                from mlvfx.errors import ModelError

                said = " ".join(str(exc).split())
                raise ModelError(f"not a material model ({said[:200]})", p) from None
            net = net.to(device)  # its out of memory is the caller's to say, not a wrong model (a review)
            _net_cache.clear()  # one model at a time: they are small, but sessions should not pile up
            _net_cache[key] = net
    return net


# The 8 symmetries of the square as (quarter turns, mirrored first).
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def _turn(x: Any, k: int, mirror: bool) -> Any:
    """Mirror ``x`` (B, C, H, W) left-right if asked, then turn it ``k`` quarter turns."""
    import torch

    if mirror:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)).contiguous() if k else x.contiguous()


def _unturn_maps(y: Any, k: int, mirror: bool) -> Any:
    """Undo :func:`_turn` on the net's maps (B, 8, H, W): the pixels, and the normals' x/y."""
    import torch

    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    if mirror:
        y = torch.flip(y, dims=(-1,))
    nx, ny = y[:, 0], y[:, 1]
    for _ in range(k):
        nx, ny = ny, -nx
    if mirror:
        nx = -nx
    return torch.cat([nx[:, None], ny[:, None], y[:, 2:]], dim=1)


def _full_float32(device: Any) -> contextlib.AbstractContextManager[Any]:
    """Convolutions in full float32 on CUDA: cuDNN's default TF32 (10-bit mantissa) moved the
    normals up to 0.42 degrees from the CPU's and the integrated height by 8.9 % of its range on a
    2048-px photo (``bench/cuda_check.py``, H200). Maps should not depend on the machine."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return _cudnn_float32()


_cudnn_lock = threading.Lock()
_cudnn_users = 0
_cudnn_saved: contextlib.ExitStack | None = None


@contextlib.contextmanager
def _cudnn_float32() -> Iterator[None]:
    """cuDNN's flags are process-wide: the first of overlapping calls sets them and the last gives
    back what the host had. ``torch.backends.cudnn.flags`` per call let one thread's exit restore
    TF32 under another thread still running, and left the host's flags changed (an audit)."""
    global _cudnn_users, _cudnn_saved
    import torch

    with _cudnn_lock:
        if _cudnn_users == 0:
            stack = contextlib.ExitStack()
            full = torch.backends.cudnn.flags(
                enabled=True, benchmark=False, deterministic=False, allow_tf32=False
            )
            stack.enter_context(full)
            _cudnn_saved = stack
        _cudnn_users += 1
    try:
        yield
    finally:
        with _cudnn_lock:
            _cudnn_users -= 1
            if _cudnn_users == 0 and _cudnn_saved is not None:
                _cudnn_saved.close()
                _cudnn_saved = None


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
    dihedral: bool = False,
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
        margin: context pixels each tile sees per side (output discarded); at least
            :data:`TILEABLE_MARGIN` when ``tileable``.
        batch: tiles per network call.
        dihedral: run every tile in its 8 rotations and mirrors and average the maps, turned back
            (normals' x/y rotated and mirrored with them). 8x the time, a little more accurate.
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
    if not rgb.flags.writeable:  # a caller's read-only array: torch.from_numpy warns on it
        rgb = rgb.copy()
    device = next(net.parameters()).device
    variants = DIHEDRAL if dihedral else ((0, False),)
    contexts: list[torch.Tensor | None] = [None] * len(variants)
    if net.config.context:
        # One context vector from the whole photo, shared by every tile (no seams); with
        # ``dihedral``, one per turned photo.
        with torch.inference_mode():
            thumb = context_thumbnail(torch.from_numpy(rgb.transpose(2, 0, 1))[None])
            contexts = [net.context_vector(_turn(thumb, k, f).to(device)) for k, f in variants]

    def fn(tiles: FloatImage) -> FloatImage:
        with torch.inference_mode(), _full_float32(device):
            x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))).to(device)
            acc = None
            for (k, f), context in zip(variants, contexts, strict=True):
                check_cancel(cancel)  # with ``dihedral`` a batch is 8 passes: seconds on a CPU
                y = _unturn_maps(net(_turn(x, k, f), context=context).float(), k, f)
                acc = y if acc is None else acc + y
            assert acc is not None
            y_np = (acc / len(variants)).cpu().numpy()
        return np.ascontiguousarray(y_np.transpose(0, 2, 3, 1))

    maps = run_tiled(
        rgb,
        fn,
        tile=tile,
        overlap=overlap,
        margin=max(margin, TILEABLE_MARGIN) if tileable else margin,
        tileable=tileable,
        batch=batch,
        multiple=net.multiple,
        # The net learned from crops of real photos: a mirrored margin would show it light
        # falling the mirrored way (bench/material_capacity.py's nets that read the light lost
        # most of their gain through it). Border tiles slide inward instead.
        border="inside",
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
    report(progress, 1.0, "maps predicted")  # a caller's scaled share, not the end of its job
    return LearnedMaps(normal, height, maps[..., 4:7], maps[..., 7])
