"""Single textures and material sets as one stack of channels, for joint synthesis.

A *material set* is a mapping name -> map, all of one size: ``albedo`` (H, W, 3) linear colour,
``normal`` (H, W, 3) unit tangent-space vectors in [-1, 1] (OpenGL), ``height`` (H, W) or
(H, W, 1), ``roughness`` (H, W) or (H, W, 1); other names are accepted as data maps with 1 to 4
channels. Synthesis copies whole pixels, so all maps are gathered at the same coordinates and
stay aligned; what the synthesiser *matches* on is a weighted, standardised copy of the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlvfx.classical.filters import fill_transparent
from mlvfx.errors import InputError, InvalidImageDataError
from mlvfx.io import check_image

FloatArray = npt.NDArray[np.float32]
Maps = FloatArray | Mapping[str, FloatArray]

MATERIAL_CHANNELS: dict[str, int] = {"albedo": 3, "normal": 3, "height": 1, "roughness": 1}
"""Required channel count of the known maps of a material set."""

MATCH_WEIGHTS: dict[str, float] = {"albedo": 1.0, "normal": 0.6, "height": 0.6, "roughness": 0.3}
"""How much each map counts when patches are compared (others: 0.5). Albedo carries most of the
look; normal and height carry the relief that albedo may not show; roughness is mostly redundant."""

MIN_SIDE = 8


@dataclass(frozen=True)
class Stack:
    """A texture or material set flattened to one (H, W, C) stack.

    Attributes:
        values: float32 (H, W, C), the maps side by side, unchanged.
        match: float32 (H, W, C), the same channels standardised and weighted for matching.
        names: map names in stack order (``[""]`` for a single array).
        channels: channel count of each map.
        flat: for each map, whether it was given as (H, W) and is returned that way.
        is_set: the input was a mapping (a material set).
    """

    values: FloatArray
    match: FloatArray
    names: tuple[str, ...]
    channels: tuple[int, ...]
    flat: tuple[bool, ...]
    is_set: bool

    @property
    def height(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def layout(self) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        return self.names, self.channels, self.is_set


def _check(a: npt.ArrayLike, name: str) -> tuple[FloatArray, bool]:
    arr = np.asarray(a)
    flat = arr.ndim == 2
    img = check_image(arr, name)
    if min(img.shape[:2]) < MIN_SIDE:
        raise InvalidImageDataError(
            f"is {img.shape[1]}x{img.shape[0]}; textures must be at least {MIN_SIDE}x{MIN_SIDE}", name
        )
    return img, flat


Layout = tuple[tuple[str, ...], tuple[int, ...], bool]
"""Map names, channels per map, and whether it is a material set (see :meth:`Stack.layout`)."""


def check_maps(maps: Maps | npt.ArrayLike, name: str = "texture") -> Layout:
    """Validate a texture or material set as :func:`stack_maps` does, without stacking it.

    Returns:
        Its layout: what :meth:`Stack.layout` of the stacked set would be.
    """
    arrays, names, _, is_set = _checked(maps, name)
    return tuple(names), tuple(a.shape[2] for a in arrays), is_set


def stack_maps(maps: Maps | npt.ArrayLike, name: str = "texture") -> Stack:
    """Validate a texture or material set and stack it.

    Args:
        maps: float (H, W) / (H, W, C) array with C in 1..4, or a material set (see module doc).
        name: how to name the input in error messages.

    Raises:
        InvalidImageDataError: wrong rank or channel count, zero or tiny size, NaN/inf.
        InputError: empty material set, or maps of different sizes.

    The colour of fully transparent pixels (2- and 4-channel maps) is replaced by a fill from the
    visible ones (:func:`mlvfx.classical.filters.fill_transparent`).
    """
    arrays, names, flats, is_set = _checked(maps, name)
    # Colour under alpha 0 is whatever the file kept there: it must not steer the matching (nor
    # come back under the output's alpha 0).
    arrays = [fill_transparent(a) for a in arrays]
    match = []
    for key, arr in zip(names, arrays, strict=True):
        weight = MATCH_WEIGHTS.get(key, 0.5) if is_set else 1.0
        std = float(arr.std())
        scale = weight / (max(std, 1e-6) * np.sqrt(arr.shape[2]))
        match.append((arr - arr.mean(axis=(0, 1), keepdims=True)) * np.float32(scale))
    return Stack(
        values=np.ascontiguousarray(np.concatenate(arrays, axis=2), dtype=np.float32),
        match=np.ascontiguousarray(np.concatenate(match, axis=2), dtype=np.float32),
        names=tuple(names),
        channels=tuple(a.shape[2] for a in arrays),
        flat=tuple(flats),
        is_set=is_set,
    )


def _checked(maps: Maps | npt.ArrayLike, name: str) -> tuple[list[FloatArray], list[str], list[bool], bool]:
    """The validated maps of a texture or set: arrays, names, which were flat, and whether a set."""
    if isinstance(maps, Mapping):
        if not maps:
            raise InputError(f"{name}: the material set has no maps")
        arrays: list[FloatArray] = []
        names: list[str] = []
        flats: list[bool] = []
        for key in sorted(maps):
            img, flat = _check(maps[key], f"{name}[{key!r}]")
            want = MATERIAL_CHANNELS.get(key)
            if want is not None and img.shape[2] != want:
                raise InvalidImageDataError(
                    f"{key} map has {img.shape[2]} channels, expected {want}", f"{name}[{key!r}]"
                )
            if arrays and img.shape[:2] != arrays[0].shape[:2]:
                raise InputError(
                    f"{name}: map {key!r} is {img.shape[1]}x{img.shape[0]} but {names[0]!r} is "
                    f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; all maps of a set must have one size"
                )
            arrays.append(img)
            names.append(key)
            flats.append(flat)
        is_set = True
    else:
        img, flat = _check(maps, name)
        arrays, names, flats, is_set = [img], [""], [flat], False
    return arrays, names, flats, is_set


def unstack(stack: Stack, values: FloatArray) -> Maps:
    """Split synthesised (H, W, C) values back into the input's kind; normals are renormalised."""
    out: dict[str, FloatArray] = {}
    c0 = 0
    for key, c, flat in zip(stack.names, stack.channels, stack.flat, strict=True):
        part = np.ascontiguousarray(values[:, :, c0 : c0 + c], dtype=np.float32)
        c0 += c
        if key == "normal":
            part = normalise_normals(part)
        out[key] = part[:, :, 0] if flat else part
    if not stack.is_set:
        return out[""]
    return out


def normalise_normals(normal: FloatArray) -> FloatArray:
    """Unit-length (H, W, 3) normals; zero vectors become +Z."""
    n = normal.astype(np.float32, copy=True)
    length = np.linalg.norm(n, axis=2, keepdims=True)
    zero = length[..., 0] < 1e-8
    out: FloatArray = (n / np.maximum(length, 1e-8)).astype(np.float32)
    out[zero] = (0.0, 0.0, 1.0)
    return out
