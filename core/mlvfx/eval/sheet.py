"""Contact sheets: look at predictions instead of reading numbers.

One row per sample: the input photo, then for each map the prediction and the truth side by
side (a hatched grey tile where one is missing). For real photos without any ground truth the
truth columns are left out. Written as an 8-bit sRGB PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError
from mlvfx.eval.material import MAPS, normalise_height, read_map, sample_family, sample_folders

FloatArray = npt.NDArray[np.float32]
_MISSING = 0.18  # display value of an absent tile


def _display(name: str, a: FloatArray | None, tile: int) -> FloatArray:
    """A map as a (tile, tile, 3) display-referred [0, 1] image."""
    import cv2

    from mlvfx.color import linear_to_srgb

    if a is None:
        out = np.full((tile, tile, 3), _MISSING, np.float32)
        out[::8, :, :] = out[:, ::8, :] = _MISSING * 1.4  # hatch: clearly "no data"
        return out
    if name == "normal":
        img = a * 0.5 + 0.5
    elif name in ("albedo", "lit"):
        img = np.asarray(linear_to_srgb(np.clip(a, 0.0, 1.0)), dtype=np.float32)
    elif name == "height":
        img = np.repeat(normalise_height(a)[..., None], 3, axis=-1)
    else:
        img = np.repeat(a[..., None], 3, axis=-1)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    interp = cv2.INTER_AREA if img.shape[0] > tile else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(img, (tile, tile), interpolation=interp), dtype=np.float32)


def _label(img: FloatArray, text: str) -> None:
    import cv2

    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0.0, 0.0, 0.0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (1.0, 1.0, 1.0), 1, cv2.LINE_AA)


def _read_lit(folder: Path) -> FloatArray | None:
    from mlvfx.io import read_image

    for name in ("lit.png", "input.png", "photo.png"):
        if (folder / name).is_file():
            img, _ = read_image(folder / name, kind="color")
            return np.asarray(img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, -1), np.float32)
    return None


def contact_sheet(
    out: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str],
    pred: str | os.PathLike[str] | None = None,
    maps: Sequence[str] = MAPS,
    tile: int = 160,
    limit: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG contact sheet: input | (prediction, truth) per map, one row per sample.

    Truth columns are left out when no sample has any truth map (real photos).

    Args:
        out: output PNG path.
        truth: folder of sample folders (each with ``lit.png`` and any truth maps) or one sample.
            Real photos without ground truth are folders holding only ``lit.png``.
        pred: prediction folder mirroring ``truth`` (optional).
        maps: which maps to show, from ``normal, albedo, height, roughness``.
        tile: tile size in pixels.
        limit: at most this many rows.
        overwrite: replace an existing ``out``.

    Returns:
        The path written.
    """
    from mlvfx.io import write_image
    from mlvfx.io.atomic import check_writable

    if Path(out).suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):  # 8-bit formats
        raise InputError("a contact sheet is an 8-bit image: name a .png (or .jpg, .tif) file", out)
    check_writable(Path(out), overwrite)  # before the sheet is built, not after
    bad = [m for m in maps if m not in MAPS]
    if bad:
        raise InputError(f"unknown maps {bad}; choose from {', '.join(MAPS)}")
    if not 32 <= tile <= 1024:
        raise InputError(f"tile must be in 32..1024, got {tile}")
    folders = sample_folders(truth)
    if limit is not None:
        folders = folders[: max(limit, 0)]
    if not folders:
        raise InputError("no samples to show", truth)
    pred_root = Path(pred) if pred is not None else None
    if pred_root is not None and not pred_root.is_dir():
        raise InputError("prediction folder not found", pred_root)
    # Real photos without ground truth: leave the truth columns out altogether.
    show_truth = any(read_map(f, m) is not None for f in folders for m in maps)
    rows = []
    for folder in folders:
        pfolder = None
        if pred_root is not None:
            pfolder = pred_root / folder.name if (pred_root / folder.name).is_dir() else None
            if pfolder is None and len(folders) == 1:
                pfolder = pred_root
        lit = _display("lit", _read_lit(folder), tile)
        family = sample_family(folder)
        _label(lit, folder.name if family == "unknown" else f"{folder.name} {family}"[:22])
        tiles = [lit]
        for m in maps:
            p = _display(m, read_map(pfolder, m) if pfolder is not None else None, tile)
            _label(p, f"{m} pred")
            tiles.append(p)
            if show_truth:
                t = _display(m, read_map(folder, m), tile)
                _label(t, f"{m} truth")
                tiles.append(t)
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    # Write display values as they are: they are already sRGB-encoded.
    return write_image(out, sheet, kind="data", bit_depth=8, overwrite=overwrite)
