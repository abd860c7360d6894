"""Material from a photo: normal, height, delit albedo, roughness and AO maps, aligned and full size.

Arrays: the photo is float32 (H, W, C) linear RGB(A). Outputs are float32 at the photo's size:
``normal`` (H, W, 3) unit vectors in the requested convention, ``height`` (H, W) in [0, 1],
``albedo`` (H, W, 3 or 4) linear, ``roughness`` and ``ao`` (H, W) in [0, 1].
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlvfx import classical
from mlvfx.classical.filters import fill_transparent
from mlvfx.errors import InputError, ModelNotFound
from mlvfx.io import check_image, read_image
from mlvfx.io.atomic import check_writable
from mlvfx.io.image import Kind
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report, scaled

MAP_NAMES = ("normal", "height", "albedo", "roughness", "ao")
DEFAULT_MAPS = ("normal", "height", "albedo", "roughness")
METHODS = ("classical", "learned")
Method = Literal["classical", "learned"]
QUALITIES = ("standard", "high")
Quality = Literal["standard", "high"]
Convention = Literal["opengl", "directx"]
FloatImage = npt.NDArray[np.float32]

# Files each map is written to: name -> (file, kind, bit depth); height also gets height16.png.
MAP_FILES: dict[str, tuple[str, Literal["color", "data"], int]] = {
    "normal": ("normal.png", "data", 16),
    "height": ("height.exr", "data", 32),
    "albedo": ("albedo.png", "color", 8),
    "roughness": ("roughness.png", "data", 8),
    "ao": ("ao.png", "data", 8),
}
HEIGHT_PNG = "height16.png"
META_FILE = "material.json"


@dataclass
class MaterialResult:
    """The maps of one material and how they were made."""

    maps: dict[str, FloatImage]
    method: str
    normal_convention: str
    tileable: bool
    relief_px: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def height_scale_px(self) -> float:
        """Pixels of relief per unit of the height map: ``height * height_scale_px`` is the surface
        the normal map shows, in pixels (both methods; 0 for a flat result)."""
        return float(self.meta.get("height_scale_px", self.relief_px))


def parse_maps(maps: str | Iterable[str]) -> tuple[str, ...]:
    """Validate map names (a comma-separated string or an iterable) and return them in canonical order."""
    names = [m.strip() for m in maps.split(",")] if isinstance(maps, str) else [str(m) for m in maps]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(MAP_NAMES))
    if unknown:
        raise InputError(f"unknown map(s) {', '.join(unknown)}; choose from {', '.join(MAP_NAMES)}")
    if not names:
        raise InputError(f"no maps requested; choose from {', '.join(MAP_NAMES)}")
    return tuple(m for m in MAP_NAMES if m in names)


def material(
    image: npt.ArrayLike,
    maps: str | Sequence[str] = DEFAULT_MAPS,
    *,
    tileable: bool = False,
    normal_convention: Convention = "opengl",
    method: Method = "learned",
    relief: float = 0.01,
    quality: Quality = "standard",
    model: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> MaterialResult:
    """Compute material maps from one photo.

    Args:
        image: float32 (H, W, C) linear colour, C in 1..4 (straight alpha is carried into the
            albedo; the colour stored under fully transparent pixels is ignored).
        maps: which of "normal", "height", "albedo", "roughness", "ao" to compute.
        tileable: the photo wraps around; the maps then tile too.
        normal_convention: "opengl" (+Y up) or "directx" (+Y down).
        method: "classical" (fast, no model) or "learned" (the zoo's material model).
        relief: relief depth as a fraction of the larger image side (classical: the normals'
            strength and AO; the learned model predicts its own relief and does not use it).
        quality: "standard", or "high": the learned model sees the photo in its 8 rotations and
            mirrors and the maps are averaged (8x the time; ignored by the classical method).
        model: the learned model to use, ``"material@0.7.0"`` or ``"0.7.0"`` (default: the
            ``MLVFX_MATERIAL_MODEL`` environment variable, else the zoo's newest): pin it for a show,
            so a newer model in the zoo does not change the maps half way through.
        progress: called with (fraction, message).
        cancel: checked between steps.

    Returns:
        A :class:`MaterialResult` whose ``maps`` hold the requested maps at full resolution.

    Example:
        >>> photo = np.random.rand(64, 64, 3).astype(np.float32)
        >>> result = material(photo, maps="normal,height")
        >>> result.maps["normal"].shape, result.maps["height"].shape
        ((64, 64, 3), (64, 64))
    """
    wanted = parse_maps(maps)
    check_options(method, normal_convention, relief, quality)
    pinned = learned_model_version(model) if method == "learned" else None
    img = fill_transparent(check_image(image, "image"), tileable)  # colour hidden under alpha 0 has no say
    colour = img[..., : 3 if img.shape[2] >= 3 else 1]
    if colour.min() < 0.0 or colour.max() > HDR_CEILING:
        # A float photo's negative values (a colour transform's) and huge ones carry no light a
        # photo can hold; the classical maps took a log of them and failed with "normal.png
        # contains NaN", naming the output for the input's values (a fuzz audit).
        img = img.copy()
        np.clip(img[..., : colour.shape[2]], 0.0, HDR_CEILING, out=img[..., : colour.shape[2]])
    if method == "learned":
        return _learned(
            img,
            wanted,
            tileable=tileable,
            normal_convention=normal_convention,
            relief=relief,
            quality=quality,
            version=pinned,
            progress=progress,
            cancel=cancel,
        )
    height_px, width_px = img.shape[:2]
    relief_px = relief * max(height_px, width_px)
    steps = len(wanted) + (1 if "height" not in wanted and ({"normal", "ao"} & set(wanted)) else 0)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        check_cancel(cancel)
        report(progress, done / steps, message)
        done += 1

    out: dict[str, FloatImage] = {}
    height: FloatImage | None = None
    if {"height", "normal", "ao"} & set(wanted):
        step("height")
        height = classical.height_from_photo(img, tileable=tileable)
        if "height" in wanted:
            out["height"] = height
    if "normal" in wanted:
        assert height is not None
        step("normal")
        out["normal"] = classical.height_to_normal(
            height, strength=relief_px, convention=normal_convention, tileable=tileable
        )
    if "albedo" in wanted:
        step("albedo")
        albedo = classical.delight_blur_divide(img, tileable=tileable)
        if albedo.shape[2] in (1, 2):  # a grey photo: an RGB(A) albedo, as the learned method gives
            albedo = np.concatenate([np.repeat(albedo[..., :1], 3, axis=2), albedo[..., 1:]], axis=2)
        out["albedo"] = albedo
    if "roughness" in wanted:
        step("roughness")
        out["roughness"] = classical.roughness_heuristic(img, tileable=tileable)
    if "ao" in wanted:
        assert height is not None
        step("ambient occlusion")
        radius = max(4.0, 0.02 * max(height_px, width_px))
        out["ao"] = classical.ao_from_height(height * relief_px, radius=radius, tileable=tileable)
    check_cancel(cancel)
    report(progress, 1.0, "done")
    return MaterialResult(
        maps={m: out[m] for m in wanted},
        method=method,
        normal_convention=normal_convention,
        tileable=tileable,
        relief_px=relief_px,
        meta={"height_scale_px": relief_px},
    )


LEARNED_MODEL = "material"
MODEL_ENV = "MLVFX_MATERIAL_MODEL"


def learned_model_version(model: str | None = None) -> str | None:
    """The learned material model version pinned by ``model`` (``"material@0.7.0"``, ``"0.7.0"``)
    or, when it is None or blank, by ``MLVFX_MATERIAL_MODEL``; None for the zoo's newest.

    Raises:
        InputError: a reference to another model, or a malformed one.
    """
    ref = (model if model is not None and model.strip() else os.environ.get(MODEL_ENV, "")).strip()
    if not ref:
        return None
    where = (
        f" ({MODEL_ENV} or Blender's Material Model preference)" if model is None or not model.strip() else ""
    )
    model_id, at, version = ref.rpartition("@")
    if not at:
        model_id, version = LEARNED_MODEL, ref
    if model_id != LEARNED_MODEL or not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version):
        raise InputError(
            f"the learned material model is given as {LEARNED_MODEL}@VERSION or VERSION, "
            f"e.g. {LEARNED_MODEL}@0.7.0; got {ref!r}{where}"
        )
    return version


def _learned(
    img: FloatImage,
    wanted: tuple[str, ...],
    *,
    tileable: bool,
    normal_convention: Convention,
    relief: float,
    quality: Quality,
    version: str | None,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> MaterialResult:
    """The learned path: the zoo's material model through the tiled engine.

    Normals, albedo and roughness come from the network; height is the least-squares integral of
    the predicted normals (so the two agree), normalised to [0, 1]; ``meta["height_scale_px"]``
    converts it back to pixels (and is the result's ``relief_px``). AO is computed from that
    height. ``relief`` is not used: the network predicts the relief itself.
    """
    from mlvfx import zoo
    from mlvfx.config import torch_device
    from mlvfx.nets.infer import load_material_net, predict_material

    report(progress, 0.0, "loading model")
    manifest = zoo.load_manifest()
    if version is not None:  # pinned: its own message lists the versions there are
        try:
            entry = manifest.get(LEARNED_MODEL, version)
        except ModelNotFound as exc:
            raise ModelNotFound(f"{exc}; pinned by --model, {MODEL_ENV} or a host's preference") from None
    else:
        try:
            entry = manifest.get(LEARNED_MODEL)
        except ModelNotFound:
            raise ModelNotFound(
                f"no learned material model ({LEARNED_MODEL!r}) is published in the zoo; "
                "use method 'classical'"
            ) from None
    path = zoo.fetch(LEARNED_MODEL, entry.version, fmt="safetensors", cancel=cancel)
    net = load_material_net(path, device=str(torch_device()))
    check_cancel(cancel)
    need_height = bool({"height", "ao"} & set(wanted))
    maps = predict_material(
        net,
        img,
        tileable=tileable,
        integrate=need_height,
        dihedral=quality == "high",
        progress=scaled(progress, 0.05, 0.9),
        cancel=cancel,
    )
    height_px, width_px = img.shape[:2]
    out: dict[str, FloatImage] = {}
    if "normal" in wanted:
        normal = np.ascontiguousarray(maps.normal)
        if normal_convention == "directx":
            normal[..., 1] *= -1.0
        out["normal"] = normal
    scale_px = float(maps.height_px.max())
    if "height" in wanted:
        if scale_px > 0:
            out["height"] = maps.height_px / np.float32(scale_px)
        else:  # no relief at all (a 1x1 photo, a flat one): mid-grey, the displacement's rest level,
            out["height"] = np.full_like(maps.height_px, 0.5)  # as the classical path gives
    if "albedo" in wanted:
        albedo = np.ascontiguousarray(maps.albedo)
        if img.shape[2] in (1, 2):  # a grey photo holds no colour: the net's tint is not evidence
            albedo = np.repeat(albedo.mean(axis=2, keepdims=True), 3, axis=2)
        if img.shape[2] in (2, 4):  # alpha rides along
            albedo = np.concatenate([albedo, img[..., -1:]], axis=2)
        out["albedo"] = albedo
    if "roughness" in wanted:
        out["roughness"] = np.ascontiguousarray(maps.roughness)
    if "ao" in wanted:
        check_cancel(cancel)
        report(progress, 0.95, "ambient occlusion")
        radius = max(4.0, 0.02 * max(height_px, width_px))
        out["ao"] = classical.ao_from_height(maps.height_px, radius=radius, tileable=tileable)
    check_cancel(cancel)
    report(progress, 1.0, "done")
    return MaterialResult(
        maps={m: out[m] for m in wanted},
        method="learned",
        normal_convention=normal_convention,
        tileable=tileable,
        relief_px=scale_px,  # the predicted relief: the option's value here misled (an audit)
        meta={
            "model": f"{entry.id}@{entry.version}",
            # the weights' bytes: a studio manifest could name other bytes material@VERSION
            "model_sha256": entry.file(None, "safetensors").sha256,
            "height_scale_px": scale_px,
            "quality": quality,
        },
    )


HDR_CEILING = 65504.0  # the largest half float: brighter input pixels are clipped to it


# How a host must read each file: colour maps are sRGB-encoded, data maps raw (Blender's names;
# Houdini: gamma 1 / Raw).
COLORSPACE_NAMES = {"color": "sRGB", "data": "Non-Color"}
NORMAL_ENCODING = "rgb = n * 0.5 + 0.5, tangent space (see normal_convention)"


def file_notes(colorspaces: dict[str, str], has_normal: bool) -> dict[str, Any]:
    """``material.json``'s notes for importers: each file's colour space and the encodings."""
    notes: dict[str, Any] = {"colorspaces": colorspaces}
    if has_normal:
        notes["normal_encoding"] = NORMAL_ENCODING
    return notes


def output_files(maps: Iterable[str]) -> list[str]:
    """File names that :func:`write_material` writes for these maps (the metadata file included)."""
    files = []
    for name in maps:
        files.append(MAP_FILES[name][0])
        if name == "height":
            files.append(HEIGHT_PNG)
    return [*files, META_FILE]


def write_material(
    result: MaterialResult,
    outdir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    source: str | None = None,
) -> dict[str, Path]:
    """Write a material folder: normal.png (16-bit), height.exr + height16.png, albedo.png (sRGB),
    roughness.png, ao.png and material.json.

    The folder is written as one: every file is encoded and written beside its target first, then
    all are moved in. A refused overwrite writes nothing, and a failure part way (a full disk, a
    file that cannot be replaced) leaves the folder as it was, never half old and half new.

    Returns:
        map name (and "height16", "meta") -> path written.
    """
    from mlvfx.io.atomic import write_files_atomic
    from mlvfx.io.image import encode_image

    folder = Path(outdir)
    names = output_files(result.maps)
    for name in names:
        check_writable(folder / name, overwrite)
    written: dict[str, Path] = {}
    blobs: list[tuple[Path, bytes]] = []

    colorspaces: dict[str, str] = {}

    def add(key: str, file: str, data: npt.ArrayLike, kind: Kind, depth: int) -> None:
        path = folder / file
        blobs.append((path, encode_image(data, path.suffix, kind=kind, bit_depth=depth, name=str(path))))
        written[key] = path
        colorspaces[file] = COLORSPACE_NAMES[kind]

    for name, array in result.maps.items():
        file, kind, depth = MAP_FILES[name]
        add(name, file, array * 0.5 + 0.5 if name == "normal" else array, kind, depth)
        if name == "height":
            add("height16", HEIGHT_PNG, array, "data", 16)
    any_map = next(iter(result.maps.values()))
    meta = {
        "mlvfx_version": _version(),
        "source": source,
        "method": result.method,
        "normal_convention": result.normal_convention,
        "tileable": result.tileable,
        "relief_px": result.relief_px,
        "width": int(any_map.shape[1]),
        "height": int(any_map.shape[0]),
        "maps": {k: v.name for k, v in written.items()},
        **file_notes(colorspaces, "normal" in result.maps),
        **result.meta,
    }
    if "height" in result.maps:  # the heights height16.png's 0 and 1 stand for (as texture writes it)
        meta["height16_range"] = [0.0, 1.0]
    written["meta"] = folder / META_FILE
    blobs.append((written["meta"], (json.dumps(meta, indent=2) + "\n").encode()))
    write_files_atomic(blobs, overwrite=overwrite)
    return written


def check_options(method: str, normal_convention: str, relief: float, quality: str) -> None:
    """Raise ``InputError`` for an option :func:`material` would refuse (a batch checks them once)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if normal_convention not in ("opengl", "directx"):
        raise InputError(f"normal convention must be 'opengl' or 'directx', got {normal_convention!r}")
    if not 0 < relief <= 1:
        raise InputError(f"relief must be in (0, 1], got {relief}")
    if quality not in QUALITIES:
        raise InputError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")


def material_from_file(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    maps: str | Sequence[str] = DEFAULT_MAPS,
    *,
    tileable: bool = False,
    normal_convention: Convention = "opengl",
    method: Method = "learned",
    relief: float = 0.01,
    quality: Quality = "standard",
    model: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Path]:
    """Read a photo, compute its maps and write a material folder (see :func:`write_material`)."""
    wanted = parse_maps(maps)
    folder = Path(outdir)
    for name in output_files(wanted):
        check_writable(folder / name, overwrite)
    photo, info = read_image(path, kind="color")
    result = material(
        photo,
        wanted,
        tileable=tileable,
        normal_convention=normal_convention,
        method=method,
        relief=relief,
        quality=quality,
        model=model,
        progress=progress,
        cancel=cancel,
    )
    if info.orientation != 1:  # the maps are upright as shown; the photo's pixels are stored turned
        result.meta["source_orientation"] = info.orientation
    if info.icc_profile:  # the photo's colours were read through it (or why not)
        result.meta["source_icc_profile"] = info.icc_profile
    if info.colour_note:
        result.meta["source_colour_note"] = info.colour_note
    # Which photo made the maps, whatever the path: a pipeline can tell a re-shot photo by it. The
    # bytes decoded, hashed as read: hashing the file again afterwards read it twice and named a
    # photo replaced during the run (a review).
    result.meta["source_sha256"] = info.sha256
    return write_material(result, folder, overwrite=overwrite, source=os.fspath(path))


def _version() -> str:
    from mlvfx import __version__

    return __version__
