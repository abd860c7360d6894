"""``mlvfx texture tile|grow|paint`` and ``mlvfx eval texture``.

Every input may be an image file or a material folder as written by ``mlvfx material``
(``albedo.png`` sRGB, ``normal.png`` 16-bit ``n * 0.5 + 0.5``, ``height.exr``, ``roughness.png``,
optionally ``ao.png``); a material folder gives a material folder back, aligned map for map.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlvfx import argtypes
from mlvfx.errors import ImageReadError, ImageWriteError, InputError
from mlvfx.io.atomic import output_path
from mlvfx.io.probe import FORMATS
from mlvfx.progress import ProgressFn
from mlvfx.texture.maps import FloatArray, Maps, check_maps

# name -> (file, kind, bit depth); the same layout as mlvfx.ops.material writes
MATERIAL_FILES: dict[str, tuple[str, str, int]] = {
    "albedo": ("albedo.png", "color", 8),
    "normal": ("normal.png", "data", 16),
    "height": ("height.exr", "data", 32),
    "roughness": ("roughness.png", "data", 8),
    "ao": ("ao.png", "data", 8),
}
HEIGHT_PNG = "height16.png"
META_FILE = "material.json"


@dataclass(frozen=True)
class Source:
    """Where maps came from: an image file (with its bit depth) or a material folder."""

    path: Path
    is_folder: bool
    bit_depth: int = 8
    sample: str = "uint8"  # "uint8", "uint16", "float16" or "float32" (an image file's samples)
    normal_convention: str = "opengl"  # a material folder's, from its material.json


# --- file I/O: the only place that touches files ------------------------------------------------


def read_maps(path: str | Path) -> tuple[Maps, Source]:
    """Read an image (linear float32 (H, W, C)) or a material folder (dict of maps).

    Raises:
        ImageReadError: missing path, unreadable file, or a folder without any known map.
    """
    from mlvfx.io import read_image

    p = Path(path)
    if p.is_dir():
        maps: dict[str, FloatArray] = {}
        listed = _listed_maps(p)
        for name, (file, kind, _) in MATERIAL_FILES.items():
            if listed is not None and name not in listed:
                continue  # a stale file of an earlier set that this folder's material.json does not list
            f = p / file
            if name == "height" and not f.exists() and (p / HEIGHT_PNG).exists():
                f = p / HEIGHT_PNG
            if not f.exists():
                continue
            arr, _info = read_image(f, kind="color" if kind == "color" else "data")
            if f.name == HEIGHT_PNG:  # back to the heights it stands for
                lo, hi = _height16_range(p)
                arr = lo + arr * (hi - lo)
            if name == "normal":
                arr = arr[:, :, :3] * 2.0 - 1.0
            elif name in ("height", "roughness", "ao"):
                arr = arr[:, :, :1]
            elif name == "albedo":
                # a grey albedo is an albedo too: its grey in all three channels
                arr = arr[:, :, :3] if arr.shape[2] >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
            maps[name] = np.ascontiguousarray(arr, dtype=np.float32)
        if not maps:
            known = ", ".join(v[0] for v in MATERIAL_FILES.values())
            raise ImageReadError(f"material folder holds none of {known}", p)
        check_maps(maps, str(p))  # too small, NaN, maps of different sizes: named after the folder
        return maps, Source(p, True, normal_convention=_folder_convention(p))
    if not p.exists():
        raise ImageReadError("no such file or folder", p)
    img, info = read_image(p, kind="color")
    check_maps(img, str(p))
    return img, Source(p, False, info.bit_depth, info.sample)


def _folder_meta(folder: Path) -> dict[str, Any]:
    """A material folder's ``material.json``, or ``{}`` when it has none or it cannot be read."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _height16_range(folder: Path) -> tuple[float, float]:
    """The heights a folder's ``height16.png`` spans (``material.json``'s ``height16_range``; 0-1
    without one, as ``mlvfx material`` writes it)."""
    span = _folder_meta(folder).get("height16_range")
    if (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in span)
        and span[0] < span[1]
    ):
        return float(span[0]), float(span[1])
    return 0.0, 1.0


def _listed_maps(folder: Path) -> set[str] | None:
    """The map names a material folder's ``material.json`` lists, or None without a usable list.

    ``--overwrite`` of a folder with a smaller set (say albedo and height only) replaces those
    files and leaves the earlier normal or roughness beside them; the new ``material.json`` lists
    only what belongs together, so a later command does not mix old maps into the set.
    """
    listed = _folder_meta(folder).get("maps")
    if not isinstance(listed, dict) or not listed:
        return None
    names = {str(k) for k in listed}
    if "height16" in names:  # texture commands list height16.png under its own stem
        names.add("height")
    return names


def _folder_convention(folder: Path) -> str:
    """The normal convention a material folder's ``material.json`` records ("opengl" if it has none).

    The synthesis copies normal pixels as they are, so a DirectX folder's results are DirectX too
    and their ``material.json`` must say so.
    """
    value = _folder_meta(folder).get("normal_convention")
    return value if value in ("opengl", "directx") else "opengl"


def _image_depth(suffix: str, source: Source) -> int:
    """Bit depth for an image written from ``source``: as deep as the source, as the format allows.

    Float sources stay float in EXR (half stays half) and TIFF (32-bit float: values above 1 and
    below 0 survive); PNG gets 16 bits for 16-bit and float sources; JPEG is always 8.
    """
    is_float = source.sample.startswith("float")
    if suffix == ".exr":
        return 16 if source.sample == "float16" else 32
    if suffix in (".tif", ".tiff"):
        return 32 if is_float else (16 if source.bit_depth == 16 else 8)
    if suffix == ".png":
        return 16 if is_float or source.bit_depth == 16 else 8
    return 8


def _file_spec(name: str) -> tuple[str, str, int]:
    """(file name, kind, bit depth) a map of a set is written as; unknown maps as 16-bit PNG data."""
    return MATERIAL_FILES.get(name, (f"{name}.png", "data", 16))


def output_targets(path: str | Path, maps: Maps, *, overwrite: bool) -> list[Path]:
    """The files :func:`write_maps` would write for ``maps``, each checked: the right kind of path
    (an image file for an image, a folder for a material set), and nothing there unless
    ``overwrite``. Commands call it before the synthesis too, so a bad ``-o`` fails at once.
    """
    from mlvfx.io.atomic import check_writable

    out = Path(path)
    if not isinstance(maps, Mapping):
        suffix = out.suffix.lower()
        if not suffix:
            raise InputError("output must be an image file name with an extension (.png, .exr, ...)", out)
        if suffix not in FORMATS:
            raise InputError(f"cannot write {suffix} images (use .png, .jpg, .tif or .exr)", out)
        if suffix in (".jpg", ".jpeg") and maps.shape[2] in (2, 4):
            raise InputError("JPEG cannot store alpha; write PNG, TIFF or EXR instead", out)
        check_writable(out, overwrite)
        return [out]
    if out.suffix.lower() in FORMATS:
        raise InputError("a material set is written to a folder, not an image file", out)
    if out.exists() and not out.is_dir():
        raise InputError("a material set is written to a folder, and this is a file", out)
    targets = _set_files(out, maps)
    for target in targets:
        check_writable(target, overwrite)
    return targets


def _set_files(out: Path, maps: Mapping[str, Any]) -> list[Path]:
    """Every file of a material folder :func:`write_maps` writes, ``material.json`` last."""
    files = []
    for name in maps:
        files.append(out / _file_spec(name)[0])
        if name == "height":
            files.append(out / HEIGHT_PNG)
    return [*files, out / META_FILE]


# How a material folder's maps were made and how its height converts back to pixels: a texture
# operation copies pixels, so for a single source these still hold for its output.
CARRIED_META = ("method", "model", "quality", "relief_px", "height_scale_px")


def height16_span(height: FloatArray) -> tuple[float, float]:
    """The heights ``height16.png``'s 0 and 1 stand for: 0 and 1, so the PNG holds the same heights
    as ``height.exr`` (and ``material.json``'s ``height_scale_px`` holds for both), unless the
    heights leave 0-1 (a scan's units): then their own min and max, recorded as
    ``height16_range``. A grow's patch of a 0-1 height was stretched to 0-1 before (an audit)."""
    lo, hi = float(height.min()), float(height.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, max(hi, lo + max(1e-12, abs(lo) * 1e-6))  # a flat height far from 0 still spans


def write_maps(
    path: str | Path,
    maps: Maps,
    source: Source,
    *,
    overwrite: bool,
    note: str,
    tileable: bool = True,
    sources: list[Source] | None = None,
) -> list[Path]:
    """Write maps like their source: an image file, or a material folder (map for map).

    Every target is checked before the first write, and a material folder is written all or
    nothing, so a refused or failed overwrite changes nothing. ``tileable``: whether the maps wrap
    around (recorded in a folder's ``material.json``). ``sources``: every input (paint's
    exemplars), recorded as ``sources``; :data:`CARRIED_META` fields of the source folders'
    ``material.json`` are kept where all sources agree on them.
    """
    from mlvfx.io import write_image

    out = Path(path)
    output_targets(out, maps, overwrite=overwrite)
    if not isinstance(maps, Mapping):
        depth = _image_depth(out.suffix.lower(), source)
        return [write_image(out, maps, kind="color", bit_depth=depth, overwrite=overwrite)]
    files: list[tuple[Path, FloatArray, str, int]] = []
    height16_range: list[float] | None = None
    for name, arr in maps.items():
        file, kind, depth = _file_spec(name)
        data = arr * 0.5 + 0.5 if name == "normal" else arr
        files.append((out / file, data, kind, depth))
        if name == "height":
            lo, hi = height16_span(arr)
            height16_range = [lo, hi]
            files.append((out / HEIGHT_PNG, (arr - lo) / (hi - lo), "data", 16))
    from mlvfx.io.atomic import write_files_atomic
    from mlvfx.io.image import encode_image
    from mlvfx.ops.material import COLORSPACE_NAMES, file_notes

    blobs = [
        (
            target,
            encode_image(
                data,
                target.suffix,
                kind="color" if kind == "color" else "data",
                bit_depth=depth,
                name=str(target),
            ),
        )
        for target, data, kind, depth in files
    ]
    written = [target for target, *_ in files]
    any_map = next(iter(maps.values()))
    from mlvfx import __version__

    meta: dict[str, Any] = {
        "mlvfx_version": __version__,  # the build that made them, as mlvfx material records it
        "source": str(source.path),
        "operation": note,
        "tileable": tileable,
        "normal_convention": source.normal_convention,
        "width": int(any_map.shape[1]),
        "height": int(any_map.shape[0]),
        "maps": {p.stem: p.name for p in written},
        **file_notes(
            {t.name: COLORSPACE_NAMES["color" if kind == "color" else "data"] for t, _, kind, _ in files},
            "normal" in maps,
        ),
    }
    if height16_range is not None:
        meta["height16_range"] = height16_range
    every = sources or [source]
    if len(every) > 1:
        meta["sources"] = [str(s.path) for s in every]
    if all(s.is_folder for s in every):
        metas = [_folder_meta(s.path) for s in every]
        for key in CARRIED_META:
            values = [m.get(key) for m in metas]
            if values[0] is not None and all(v == values[0] for v in values):
                meta[key] = values[0]
    blobs.append((out / META_FILE, (json.dumps(meta, indent=2) + "\n").encode()))
    write_files_atomic(blobs, overwrite=overwrite)  # all files or none: never a half-replaced set
    written.append(out / META_FILE)
    return written


def read_labels(path: str | Path, keys: list[str]) -> tuple[np.ndarray[Any, Any], list[int]]:
    """Read a label map; returns an int (H, W) map of indices into ``keys`` and the keys' labels.

    Colour keys (``#rrggbb``) need an RGB PNG with flat colours; integer keys need a single-channel
    8- or 16-bit PNG whose values are the labels.
    """
    from mlvfx.io import read_image
    from mlvfx.ops.texture import labels_from_colors

    img, info = read_image(path, kind="data")
    colour_keys = [k for k in keys if k.startswith("#")]
    if colour_keys and len(colour_keys) != len(keys):
        raise InputError("use either #rrggbb colours or integer labels for all --exemplar options")
    if colour_keys:
        if img.shape[2] < 3:
            raise InputError("exemplars are keyed by colour but the label map is single-channel", path)
        if info.bit_depth != 8:
            raise InputError("colour label maps must be 8-bit PNGs with flat colours", path)
        colors = [_parse_colour(k) for k in keys]
        idx = labels_from_colors(img, colors, str(path))
        return idx, list(range(len(keys)))
    if img.shape[2] not in (1, 2):
        raise InputError("integer labels need a single-channel label map (or key exemplars by #rrggbb)", path)
    # Integer files hold labels / 255 or / 65535 once read; float files (EXR, half or full) the labels.
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(info.sample, 1.0)
    values = np.rint(img[:, :, 0].astype(np.float64) * scale).astype(np.int64)
    labels = [int(k) for k in keys]
    lut = {v: i for i, v in enumerate(labels)}
    present = [int(v) for v in np.unique(values)]
    missing = [v for v in present if v not in lut]
    if missing:
        raise InputError(f"label value(s) {missing[:8]} have no --exemplar (given: {labels})", path)
    idx = np.zeros(values.shape, np.int64)
    for v in present:
        idx[values == v] = lut[v]
    return idx, list(range(len(keys)))


# --- argument parsing ---------------------------------------------------------------------------


def _parse_colour(text: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"#([0-9a-fA-F]{6})", text.strip())
    if not m:
        raise InputError(f"colour must be #rrggbb, got {text!r}")
    v = int(m.group(1), 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def parse_size(text: str) -> tuple[int, int]:
    """``2048x1024`` (width x height) or ``2048`` -> (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not m:
        raise InputError(f"size must be WIDTHxHEIGHT or one number, got {text!r}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    return h, w


def parse_exemplar(text: str) -> tuple[str, Path]:
    """``#ff0000=rock/`` or ``3=grass.png`` -> (key, path)."""
    key, sep, path = text.partition("=")
    if not sep or not key.strip() or not path.strip():
        raise InputError(f"--exemplar must be KEY=PATH with KEY #rrggbb or an integer, got {text!r}")
    key = key.strip()
    if key.startswith("#"):
        r, g, b = _parse_colour(key)
        key = f"#{r:02x}{g:02x}{b:02x}"
    elif not key.isdigit():
        raise InputError(f"--exemplar key must be #rrggbb or a non-negative integer, got {key!r}")
    return key, Path(path.strip())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``texture`` (with ``tile``, ``grow`` and ``paint``) to the ``mlvfx`` command."""
    tex = subparsers.add_parser("texture", help="make textures seamless, grow variations, paint with labels")
    sub = tex.add_subparsers(dest="texture_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=argtypes.seed, default=0, help="random seed (default 0)")
        p.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1, mps (default: auto)")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    t = sub.add_parser(
        "tile",
        help="make an image or material folder seamless (same size)",
        description="Rebuild a band round the wrap (along the edges) from the texture itself, so it "
        "wraps without a seam; the interior is kept exactly. The default method stitches blocks of "
        "the texture in along minimum-error cuts; 'synthesis' re-synthesises the band pixel by pixel.",
    )
    t.add_argument("input", help="image file or material folder")
    t.add_argument(
        "-o", "--output", required=True, type=output_path, help="output image (or folder for a material)"
    )
    t.add_argument(
        "--equalize",
        action="store_true",
        help="first divide out large-scale lighting (falloff, vignetting) from a colour photo or a "
        "folder's albedo, so the tile shows no bright-dark step; the interior then changes too",
    )
    t.add_argument(
        "--band",
        type=float,
        default=0.15,
        help="rebuilt band per side, fraction of size (default: 0.15)",
    )
    t.add_argument(
        "--method",
        choices=("stitch", "synthesis"),
        default="stitch",
        help="stitch: blocks cut in along minimum-error seams (default); synthesis: pixel-wise "
        "PatchMatch synthesis (the earlier default; it can leave a straight seam next to the wrap)",
    )
    common(t)
    t.set_defaults(func=_naming_memory(_cmd_tile))

    g = sub.add_parser(
        "grow",
        help="grow new non-repeating variations of any size",
        description="Synthesise COUNT variations (seeds SEED, SEED+1, ...) into the folder OUTPUT.",
    )
    g.add_argument("input", help="image file or material folder")
    g.add_argument("--size", required=True, help="output size WIDTHxHEIGHT (or one number)")
    g.add_argument("--count", type=int, default=1, help="number of variations (default 1)")
    g.add_argument(
        "--no-tileable",
        action="store_true",
        help="has no effect: grown textures are synthesised on a torus and always wrap around "
        "(an open border draws streaky copies of the exemplar's edge)",
    )
    g.add_argument("-o", "--output", required=True, type=output_path, help="output folder")
    g.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave variations whose files are all there already (resume an interrupted --count run; "
        "each variation depends only on its seed)",
    )
    common(g)
    g.set_defaults(func=_naming_memory(_cmd_grow))

    p = sub.add_parser(
        "paint",
        help="fill the regions of a label map with texture from exemplars",
        description="LABELS is a PNG with flat colours (keys #rrggbb) or a single-channel "
        "integer PNG (keys 0, 1, ...). Each --exemplar KEY=PATH names an image or a material folder.",
    )
    p.add_argument("labels", help="label map PNG")
    p.add_argument(
        "--exemplar",
        action="append",
        required=True,
        metavar="KEY=PATH",
        help="exemplar for one label, e.g. '#ff0000=rock/' or '2=grass.png' (repeat; all images or "
        "all material folders)",
    )
    p.add_argument(
        "--transition",
        type=float,
        default=None,
        help="transition width at region borders in pixels (default: exemplar side / 8, narrower "
        "where a painted region is thin, so that no region is blurred away)",
    )
    p.add_argument("--tileable", action="store_true", help="make the result wrap around")
    p.add_argument(
        "-o", "--output", required=True, type=output_path, help="output image (or folder for materials)"
    )
    common(p)
    p.set_defaults(func=_naming_memory(_cmd_paint))


# --- handlers -----------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif not args.quiet:
        print(text)


def _bar(args: argparse.Namespace, description: str) -> Any:
    from mlvfx.cli import progress_bar

    return progress_bar(args, description)


DATA_MAP_WORDS = frozenset(
    (
        "normal", "normalgl", "normaldx", "nrm", "nor", "height", "height16", "disp", "displacement",
        "bump", "rough", "roughness", "gloss", "glossiness", "ao", "occlusion", "ambientocclusion",
        "metallic", "metalness", "specular", "spec", "norm",
    )
)  # fmt: skip
"""Words of data map file names (``rock_normal``, ``Rock030_2K_NormalGL``), which ``tile
--equalize`` refuses: it divides lighting out of colour photos."""


def _data_map_name(stem: str) -> bool:
    """Whether a file name says it holds a data map: its last word (or last two joined), split at
    separators and lower-to-upper case changes, without resolution words (``2K``, ``4096``),
    trailing digits or a trailing ``map``, is one of :data:`DATA_MAP_WORDS`. Only the end counts:
    ``rock_normal`` and ``Rock030_2K_NormalGL`` are maps, ``rough_concrete`` is a photo."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", stem).lower())
    words = [w for w in words if w and w != "map" and not re.fullmatch(r"\d+k?|\d+x\d+", w)]
    words = [re.sub(r"(map)?\d*$", "", w) or w for w in words]
    tail = set(words[-1:]) | {"".join(words[-2:])}
    return bool(tail & DATA_MAP_WORDS)


def _naming_memory(run: Any) -> Any:
    """``run(args)``, its running out of memory named after the input (the generic line named no
    file; a fuzz audit)."""
    import functools

    from mlvfx.errors import OutOfMemoryError, out_of_memory

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            code: int = run(args)
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not out_of_memory(exc):
                raise
            source = getattr(args, "input", None) or getattr(args, "labels", None)
            said = "out of memory for this input (try a smaller image or size)"
            raise OutOfMemoryError(said, source) from None
        return code

    return wrapped


def _cmd_tile(args: argparse.Namespace) -> int:
    from mlvfx.ops.texture import make_tileable

    maps, source = read_maps(args.input)
    if args.equalize and not source.is_folder and _data_map_name(Path(args.input).stem):
        raise InputError(
            "--equalize divides lighting out of a colour photo; this looks like a data map "
            "(normals would lose their length): tile it without --equalize, or tile its material folder",
            args.input,
        )
    output_targets(args.output, maps, overwrite=args.overwrite)  # before the synthesis, not after
    if args.device is not None:  # stitching runs on the CPU, but a device that is not there is a typo
        from mlvfx.config import torch_device

        torch_device(args.device)
    with _bar(args, "tile") as progress:
        out = make_tileable(
            maps,
            band=args.band,
            seed=args.seed,
            method=args.method,
            equalize=args.equalize,
            device=args.device,
            progress=progress,
        )
    written = write_maps(args.output, out, source, overwrite=args.overwrite, note="tile")
    _emit(args, {"written": [str(p) for p in written]}, f"wrote {args.output}")
    return 0


def _cmd_grow(args: argparse.Namespace) -> int:
    from mlvfx.ops.texture import check_grow_size, grow
    from mlvfx.progress import scaled

    size = parse_size(args.size)
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    maps, source = read_maps(args.input)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise InputError("output must be a folder", outdir)
    if not outdir.exists() and outdir.suffix.lower() in FORMATS:
        raise InputError(
            "grow writes a folder of variations: -o names that folder, not an image file", outdir
        )
    try:
        check_grow_size(maps, size)  # before any folder is made or any synthesis is run
    except InputError as exc:
        if not str(exc).startswith("exemplar"):
            raise
        raise InputError(str(exc), args.input) from None  # which exemplar, in a farm's log
    named = source.path.resolve() if source.path.name in ("", ".", "..") else source.path
    stem = named.name if source.is_folder else named.stem
    suffix = (
        ""
        if source.is_folder
        else (
            source.path.suffix.lower()
            if source.path.suffix.lower() in (".png", ".exr", ".tif", ".tiff")
            else ".png"
        )
    )
    if args.skip_existing and args.overwrite:
        raise InputError("--skip-existing and --overwrite exclude each other")
    targets = [outdir / f"{stem}_s{args.seed + i}{suffix}" for i in range(args.count)]
    done = [t for t in targets if args.skip_existing and _variation_done(t, maps)]
    for t in targets:  # every file of every variation, before the first synthesis
        if t in done:
            continue
        if args.skip_existing and isinstance(maps, Mapping) and t.is_dir() and any(t.iterdir()):
            raise InputError(
                "holds part of a variation (a run stopped while writing it): delete this folder, "
                "then run again with --skip-existing",
                t,
            )
        output_targets(t, maps, overwrite=args.overwrite)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"cannot create the output folder: {exc.strerror or exc}", outdir) from None
    written: list[str] = []
    todo = [(i, t) for i, t in enumerate(targets) if t not in done]
    with _bar(args, "grow") as progress:
        for n, (i, target) in enumerate(todo):
            out = grow(
                maps,
                size,
                seed=args.seed + i,
                tileable=not args.no_tileable,
                device=args.device,
                progress=scaled(progress, n / len(todo), (n + 1) / len(todo)),
            )
            written += [
                str(p) for p in write_maps(target, out, source, overwrite=args.overwrite, note="grow")
            ]
    text = f"wrote {len(todo)} variation(s) to {outdir}"
    if done:
        text += f" ({len(done)} done already, skipped)"
    _emit(args, {"written": written, "skipped": [str(t) for t in done]}, text)
    return 0


def _variation_done(target: Path, maps: Maps) -> bool:
    """Whether every file of one variation is there (a material folder is written all or nothing,
    its ``material.json`` among them; an image file is written atomically)."""
    if not isinstance(maps, Mapping):
        return target.is_file()
    return all(f.is_file() for f in _set_files(target, maps))


def _describe_layout(layout: tuple[tuple[str, ...], tuple[int, ...], bool]) -> str:
    """``3 channels`` for an image, ``albedo (3 channels), height (1 channel)`` for a material set."""
    names, channels, is_set = layout

    def count(n: int) -> str:
        return f"{n} channel{'s' if n != 1 else ''}"

    if not is_set:
        return f"an image of {count(channels[0])}"
    return "maps " + ", ".join(f"{name} ({count(n)})" for name, n in zip(names, channels, strict=True))


def _cmd_paint(args: argparse.Namespace) -> int:
    from mlvfx.ops.texture import THIN_LABEL_PX, paint, thin_labels

    specs = [parse_exemplar(e) for e in args.exemplar]
    keys = [k for k, _ in specs]
    if len(set(keys)) != len(keys):
        raise InputError(f"an --exemplar key is given twice: {keys}")
    idx, labels = read_labels(args.labels, keys)
    loaded = [read_maps(p) for _, p in specs]
    kinds = {s.is_folder for _, s in loaded}
    if len(kinds) > 1:
        raise InputError("exemplars must be all images or all material folders")
    conventions = {s.normal_convention for _, s in loaded}
    if len(conventions) > 1:  # blending +Y-up and +Y-down normals would be wrong everywhere they mix
        mixed = ", ".join(f"{s.path} ({s.normal_convention})" for _, s in loaded)
        raise InputError(f"exemplar material folders mix normal conventions: {mixed}; convert them to one")
    first = check_maps(loaded[0][0], str(loaded[0][1].path))
    for maps, src in loaded[1:]:
        other = check_maps(maps, str(src.path))
        if other != first:
            raise InputError(
                f"holds {_describe_layout(other)} but {loaded[0][1].path} holds {_describe_layout(first)}; "
                "all exemplars must be the same kind",
                src.path,
            )
    exemplars = {lab: maps for lab, (maps, _) in zip(labels, loaded, strict=True)}
    output_targets(args.output, loaded[0][0], overwrite=args.overwrite)
    thin = thin_labels(idx, tileable=args.tileable)
    if thin and not args.quiet:
        names = ", ".join(keys[v] if 0 <= v < len(keys) else str(v) for v in thin)
        print(
            f"mlvfx: warning: {args.labels}: label(s) {names} have no region {THIN_LABEL_PX} px wide; "
            "regions this thin may take their neighbours' texture",
            file=sys.stderr,
        )
    with _bar(args, "paint") as progress:
        out = paint(
            idx,
            exemplars,
            seed=args.seed,
            transition=args.transition,
            tileable=args.tileable,
            device=args.device,
            progress=progress,
        )
    written = write_maps(
        args.output,
        out,
        loaded[0][1],
        overwrite=args.overwrite,
        note="paint",
        tileable=args.tileable,
        sources=[src for _, src in loaded],
    )
    _emit(args, {"written": [str(p) for p in written]}, f"wrote {args.output}")
    return 0


# --- eval ---------------------------------------------------------------------------------------


def add_eval_texture_parser(eval_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``texture`` to the ``mlvfx eval`` group (the lead wires this into ``mlvfx.eval.cli``)."""
    e = eval_subparsers.add_parser(
        "texture",
        help="score synthesised textures: seam score, look distance, verbatim-copy share",
        description="Seam score (wrap-border gradient / interior, target <= 1.1), look distance (sliced "
        "Wasserstein of 7x7 patches at 3 scales vs the exemplar, lower is better) and verbatim share "
        "(pixels in copied regions larger than 1/4 of the exemplar, target <= 0.3). Material folders are "
        "scored on their albedo (else their first map). --quilting adds the Image Quilting baseline.",
    )
    e.add_argument("outputs", nargs="+", help="synthesised image(s) or material folder(s)")
    e.add_argument("--exemplar", required=True, help="the exemplar image or material folder")
    e.add_argument("--quilting", action="store_true", help="also score Image Quilting at the same size")
    e.add_argument("--seed", type=int, default=0, help="seed of the metrics and of the baseline")
    e.set_defaults(func=_cmd_eval)


def _scored(maps: Maps) -> FloatArray:
    if isinstance(maps, Mapping):
        key = "albedo" if "albedo" in maps else sorted(maps)[0]
        a = maps[key]
        return a if a.ndim == 3 else a[:, :, None]
    return maps


def score(
    output: FloatArray, exemplar: FloatArray, seed: int = 0, progress: ProgressFn | None = None
) -> dict[str, float]:
    """All three metrics of one output against its exemplar (float (H, W, C) arrays)."""
    from mlvfx.progress import report, scaled
    from mlvfx.texture import metrics

    seam = metrics.seam_score(output)
    report(progress, 0.0, "look distance")
    look = metrics.look_distance(output, exemplar, seed=seed)
    report(progress, 0.1, "verbatim share")
    # the verbatim share's nearest-neighbour field is most of the time (91 % at 4096²)
    verbatim = metrics.verbatim_share(output, exemplar, seed=seed, progress=scaled(progress, 0.1, 1.0))
    return {"seam_score": seam, "look_distance": look, "verbatim_share": verbatim}


def _cmd_eval(args: argparse.Namespace) -> int:
    ex_maps, _ = read_maps(args.exemplar)
    ex = _scored(ex_maps)
    rows: dict[str, dict[str, float]] = {}
    last = None
    for path in args.outputs:
        out = _scored(read_maps(path)[0])
        if out.shape[2] != ex.shape[2]:
            raise InputError(f"has {out.shape[2]} channels but the exemplar has {ex.shape[2]}", path)
        with _bar(args, f"eval {Path(path).name}") as progress:
            rows[str(path)] = score(out, ex, args.seed, progress)
        last = out
    if args.quilting and last is not None:
        from mlvfx.texture.quilting import quilt

        q = quilt(ex, (last.shape[0], last.shape[1]), seed=args.seed)
        rows["image_quilting"] = score(q, ex, args.seed)
    lines = [f"{'output':<40} {'seam':>7} {'look':>9} {'verbatim':>9}"]
    for name, r in rows.items():
        lines.append(
            f"{name[-40:]:<40} {r['seam_score']:7.3f} {r['look_distance']:9.5f} {r['verbatim_share']:9.3f}"
        )
    _emit(args, {"exemplar": args.exemplar, "results": rows}, "\n".join(lines))
    return 0
