"""The ``mlvfx::Cop2/material_maps::1.0`` COP2 generator: one material map of a photo, live.

A Python COP2 generator's PythonCook section defines ``resolution``, ``output_planes_to_cook``
and ``cook``; ours binds them from this module in one line. The maps are computed once per
(file, modification time, options) and reused for every map and frame, so flipping the Map menu
is instant. Copernicus (the new COP context of 20.5) has no Python cook hook, so this is a COP2
(``cop2net``) node; see docs/houdini.md.

Pixel layout: the core returns (H, W, C) with row 0 at the *top*; COP2 planes start at the
*bottom* row, so pixels are written with ``flip_vertically=True``. Colour: COP2 works in linear
light, so albedo is written linear; data maps are never colour-converted, and normals are
encoded as ``n * 0.5 + 0.5`` like the normal.png the CLI writes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mlvfx_houdini._core import require_core

require_core("hou")  # one line on the node, not a traceback, when the venv is missing

from mlvfx.errors import InputError

if TYPE_CHECKING:
    import hou

    from mlvfx.ops.material import Convention, MaterialResult
    from mlvfx.progress import CancelToken, ProgressFn

__all__ = ["PARM_NAMES", "cook", "fit_resolution", "map_to_rgb", "output_planes_to_cook", "resolution"]

MAPS = ("normal", "height", "albedo", "roughness", "ao")
PARM_NAMES = ("image", "map", "tileable", "normal_convention", "relief")
CACHE_SIZE = 4
CACHE_BYTES = 1 << 30
"""The memo keeps at most CACHE_SIZE photos' maps and, beyond the newest, at most CACHE_BYTES of
them: four settings of an 8K photo held about 9 GB for the rest of the session (an audit)."""


@dataclass(frozen=True)
class MapRequest:
    """What to compute: a photo and the options that change its maps."""

    path: str
    stamp: tuple[int, int]
    tileable: bool
    normal_convention: str
    relief: float


def map_to_rgb(maps: dict[str, npt.NDArray[np.float32]], name: str) -> npt.NDArray[np.float32]:
    """One map as an (H, W, 3) float32 image for a COP2 colour plane.

    Normals (unit vectors in [-1, 1]) are encoded ``n * 0.5 + 0.5``; single-channel maps
    (height, roughness, ao) are repeated over R, G, B; albedo loses its alpha, if any.

    Raises:
        InputError: the map was not computed or has an unexpected shape.
    """
    if name not in maps:
        raise InputError(f"map {name!r} was not computed (have {', '.join(maps)})")
    a = np.asarray(maps[name], dtype=np.float32)
    if name == "normal":
        a = a * 0.5 + 0.5
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] >= 3:
        a = a[..., :3]
    else:
        raise InputError(f"map {name!r} has shape {a.shape}, expected (H, W) or (H, W, C)")
    return np.ascontiguousarray(a, dtype=np.float32)


_cache: OrderedDict[MapRequest, MaterialResult] = OrderedDict()
_lock = threading.Lock()


def compute(
    request: MapRequest, progress: ProgressFn | None = None, cancel: CancelToken | None = None
) -> MaterialResult:
    """All maps of the photo for ``request`` (classical method), memoised for a few photos.

    ``progress`` and ``cancel`` reach the operator (Houdini's progress bar and Esc)."""
    with _lock:
        hit = _cache.get(request)
        if hit is not None:
            _cache.move_to_end(request)
            return hit
    from mlvfx.io import read_image
    from mlvfx.ops.material import material

    photo, _ = read_image(request.path, kind="color")
    convention: Convention = "directx" if request.normal_convention == "directx" else "opengl"
    result = material(
        photo,
        MAPS,
        method="classical",  # live in a network: fast, no model; the TOP runs the learned model
        tileable=request.tileable,
        normal_convention=convention,
        relief=request.relief,
        progress=progress,
        cancel=cancel,
    )
    with _lock:
        _cache[request] = result
        while len(_cache) > 1 and (
            len(_cache) > CACHE_SIZE or sum(map(_result_bytes, _cache.values())) > CACHE_BYTES
        ):
            _cache.popitem(last=False)
    return result


def _result_bytes(result: MaterialResult) -> int:
    return sum(int(np.asarray(m).nbytes) for m in result.maps.values())


def _request(node: hou.Node) -> tuple[MapRequest, str]:
    import hou

    if not isinstance(node, hou.OpNode):
        raise InputError("mlvfx material_maps must run as a COP2 node")
    path = str(node.evalParm("image")).strip()
    if not path:
        raise InputError("choose a photo in the Image parameter")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    chosen = node.evalParm("map")
    name = MAPS[chosen] if isinstance(chosen, int) and 0 <= chosen < len(MAPS) else str(chosen)
    if name not in MAPS:
        raise InputError(f"map must be one of {', '.join(MAPS)}, got {name!r}")
    convention = node.evalParm("normal_convention")
    conv = ("opengl", "directx")[convention] if isinstance(convention, int) else str(convention)
    relief = node.evalParm("relief")
    request = MapRequest(
        path,
        (st.st_mtime_ns, st.st_size),
        bool(node.evalParm("tileable")),
        conv,
        float(relief) if isinstance(relief, int | float) else 0.01,
    )
    return request, name


def resolution(cop_node: hou.Cop2Node) -> tuple[int, int]:
    """PythonCook hook: the image size (width, height) of the photo."""
    from mlvfx_houdini.host import interruptible, node_errors

    with node_errors():
        request, _ = _request(cop_node)
        with interruptible("mlvfx material maps") as (progress, cancel):
            any_map = compute(request, progress, cancel).maps["height"]
        return int(any_map.shape[1]), int(any_map.shape[0])


def output_planes_to_cook(cop_node: hou.Cop2Node) -> tuple[str, ...]:
    """PythonCook hook: the node writes the colour plane only."""
    del cop_node
    return ("C",)


def cook(cop_node: hou.Cop2Node, plane: str, resolution: tuple[int, int]) -> None:
    """PythonCook hook: write the chosen map into the colour plane."""
    from mlvfx_houdini.host import interruptible, node_errors

    with node_errors():
        if plane != "C":
            return
        request, name = _request(cop_node)
        with interruptible("mlvfx material maps") as (progress, cancel):
            rgb = map_to_rgb(compute(request, progress, cancel).maps, name)
        rgb = fit_resolution(rgb, resolution)
        import hou

        # The bytes are float32: said explicitly, as the plane's own depth may be 8 or 16 bits.
        cop_node.setPixelsOfCookingPlaneFromString(
            rgb.tobytes(), depth=hou.imageDepth.Float32, flip_vertically=True
        )


def fit_resolution(rgb: npt.NDArray[np.float32], resolution: tuple[int, int]) -> npt.NDArray[np.float32]:
    """``rgb`` at the (width, height) COP2 cooks: the map's own size, or a proxy size the viewer
    asks for (area-averaged down, linear up)."""
    import cv2

    width, height = (int(v) for v in resolution)
    if width < 1 or height < 1:
        raise InputError(f"COP asked for a {width}x{height} image")
    if (rgb.shape[1], rgb.shape[0]) == (width, height):
        return rgb
    shrink = width < rgb.shape[1] and height < rgb.shape[0]
    out = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out.reshape(height, width, -1), dtype=np.float32)
