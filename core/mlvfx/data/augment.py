"""Fast in-process augmentation of material samples.

Geometric augmentations are the 8 elements of the square's symmetry group (quarter turns and a
mirror) plus random crops; they move pixels *and* rotate/mirror the normal vectors, so a normal
map stays consistent with its height map. Colour jitter touches the photo only: the ground-truth
albedo, normal, height and roughness are properties of the surface, not of the camera.

Arrays are float32 (H, W, C) / (H, W); photo and albedo are linear RGB, normals are unit vectors
in [-1, 1] (tangent space, OpenGL: +X right, +Y up in the image, +Z out), height is any float.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError

FloatArray = npt.NDArray[np.float32]


@dataclass
class MaterialSample:
    """One training sample in memory.

    Attributes:
        lit: (H, W, 3) linear RGB photo.
        albedo: (H, W, 3) linear RGB base colour.
        normal: (H, W, 3) unit tangent-space normals, OpenGL convention.
        height: (H, W) height (any unit; normals are consistent with it).
        roughness: (H, W) in [0, 1].
        light: (3,) unit vector towards the sun in the same frame as the normals (+X right,
            +Y up), or None (no sun, or not recorded). Only training uses it.
    """

    lit: FloatArray
    albedo: FloatArray
    normal: FloatArray
    height: FloatArray
    roughness: FloatArray
    light: FloatArray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.lit.shape[0]), int(self.lit.shape[1])


def sun_direction(meta: dict[str, Any]) -> FloatArray | None:
    """The unit vector towards a factory sample's sun (+X right, +Y up, +Z out of the patch).

    ``None`` when the sample has no sun (overcast) or its meta.json records no lighting. The
    factory turns its sun by (90 degrees - elevation) about X, then by the azimuth about Z.
    """
    sun = (meta.get("lighting") or {}).get("sun") or {}
    if not sun.get("strength"):
        return None
    el, az = float(sun["elevation"]), float(sun["azimuth"])
    v = [math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az), math.sin(el)]
    return np.asarray(v, dtype=np.float32)


def load_sample(folder: str | os.PathLike[str], *, float_height: bool = True) -> MaterialSample:
    """Read a factory sample folder into memory.

    Args:
        folder: a sample folder written by :mod:`mlvfx.data.materials`.
        float_height: height in patch widths: ``height.exr``, or where a published set leaves it
            out, ``height16.png`` rescaled by meta.json's ``height_range``;
            otherwise ``height16.png`` as it is, in [0, 1].

    Returns:
        The sample; normals are decoded from ``n * 0.5 + 0.5`` and renormalised.
    """
    from mlvfx.io import read_image

    d = Path(folder)
    lit, _ = read_image(d / "lit.png", kind="color")
    albedo, _ = read_image(d / "albedo.png", kind="color")
    nrm, _ = read_image(d / "normal.png", kind="data")
    meta_path = d / "meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if float_height and (d / "height.exr").is_file():
        height, _ = read_image(d / "height.exr", kind="data")
    else:
        height, _ = read_image(d / "height16.png", kind="data")
        if float_height:
            meta = meta or json.loads(meta_path.read_text())  # the height range lives there
            stats = meta.get("stats", {})
            rng = meta.get("height_range") or [stats["height_min"], stats["height_max"]]
            lo, hi = float(rng[0]), float(rng[1])
            height = height * (hi - lo) + lo
    rough, _ = read_image(d / "roughness.png", kind="data")
    n = nrm[..., :3] * 2.0 - 1.0
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
    return MaterialSample(
        lit[..., :3].astype(np.float32),
        albedo[..., :3].astype(np.float32),
        n.astype(np.float32),
        (height[..., 0] if height.ndim == 3 else height).astype(np.float32),
        (rough[..., 0] if rough.ndim == 3 else rough).astype(np.float32),
        sun_direction(meta),
    )


def rotate_normals(normal: FloatArray, quarter_turns: int, mirror: bool = False) -> FloatArray:
    """Transform normal *vectors* (not pixels) for a dihedral image transform.

    The image transform is: ``quarter_turns`` counter-clockwise quarter turns (as displayed, row 0
    at the top; ``np.rot90`` on axes (0, 1)), then a left-right mirror if ``mirror``.

    Args:
        normal: (..., 3) vectors with +X right, +Y up.
        quarter_turns: any integer; taken modulo 4.
        mirror: mirror left-right after the rotation.

    Returns:
        The transformed vectors, same shape.
    """
    x, y, z = normal[..., 0], normal[..., 1], normal[..., 2]
    for _ in range(quarter_turns % 4):
        # A counter-clockwise quarter turn maps +X (right) to +Y (up): (x, y) -> (-y, x).
        x, y = -y, x
    if mirror:
        x = -x
    return np.asarray(np.stack([x, y, z], axis=-1), dtype=np.float32)


def _turned(a: npt.NDArray[Any], quarter_turns: int, mirror: bool) -> npt.NDArray[Any]:
    """A view of ``a`` turned and mirrored as :func:`dihedral` moves pixels (no copy)."""
    out = np.rot90(a, quarter_turns % 4, axes=(0, 1))
    return out[:, ::-1] if mirror else out


def _move(a: FloatArray, quarter_turns: int, mirror: bool) -> FloatArray:
    return np.ascontiguousarray(_turned(a, quarter_turns, mirror))


def dihedral(sample: MaterialSample, quarter_turns: int, mirror: bool = False) -> MaterialSample:
    """Rotate by quarter turns (counter-clockwise) and optionally mirror left-right, every map.

    Normals are moved with their pixels and their X/Y components rotated/mirrored to match, and
    so is the light direction.
    """
    n = rotate_normals(_move(sample.normal, quarter_turns, mirror), quarter_turns, mirror)
    return MaterialSample(
        _move(sample.lit, quarter_turns, mirror),
        _move(sample.albedo, quarter_turns, mirror),
        n,
        _move(sample.height, quarter_turns, mirror),
        _move(sample.roughness, quarter_turns, mirror),
        None if sample.light is None else rotate_normals(sample.light, quarter_turns, mirror),
    )


def crop(sample: MaterialSample, top: int, left: int, size: int) -> MaterialSample:
    """A square crop of every map; normals are unchanged by translation."""
    h, w = sample.shape
    if size < 1 or top < 0 or left < 0 or top + size > h or left + size > w:
        raise InputError(f"crop {size}px at ({top}, {left}) does not fit a {h}x{w} sample")
    sl = (slice(top, top + size), slice(left, left + size))
    return MaterialSample(
        np.ascontiguousarray(sample.lit[sl]),
        np.ascontiguousarray(sample.albedo[sl]),
        np.ascontiguousarray(sample.normal[sl]),
        np.ascontiguousarray(sample.height[sl]),
        np.ascontiguousarray(sample.roughness[sl]),
        sample.light,
    )


def color_jitter(
    lit: FloatArray,
    rng: np.random.Generator,
    *,
    exposure_ev: float = 0.5,
    saturation: float = 0.25,
    white_balance: float = 0.08,
    gamma: float = 0.15,
) -> FloatArray:
    """Photometric jitter of a linear RGB photo: exposure, white balance, saturation, gamma.

    Args:
        lit: (H, W, 3) linear RGB.
        rng: random generator.
        exposure_ev: max exposure change in stops (uniform in +-).
        saturation: max relative saturation change.
        white_balance: max relative per-channel gain change.
        gamma: max relative change of a tone-curve exponent.

    Returns:
        (H, W, 3) linear RGB clipped to [0, 1].
    """
    gain = 2.0 ** rng.uniform(-exposure_ev, exposure_ev)
    wb = 1.0 + rng.uniform(-white_balance, white_balance, size=3)
    g = (gain * wb).astype(np.float32)
    # Channel by channel and in place: numpy broadcasts over a last axis of 3 slowly. Every value
    # is the one ``grey + (lit * g - grey) * s`` gives (tested against that form).
    out = np.empty(lit.shape, dtype=np.result_type(lit, np.float32))
    for c in range(3):
        np.multiply(lit[..., c], g[c], out=out[..., c])
    grey = out @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    s = 1.0 + rng.uniform(-saturation, saturation)
    for c in range(3):
        ch = out[..., c]
        np.subtract(ch, grey, out=ch)
        np.multiply(ch, s, out=ch)
        np.add(ch, grey, out=ch)
    np.clip(out, 0.0, 1.0, out=out)
    np.power(out, 1.0 + rng.uniform(-gamma, gamma), out=out)
    return np.asarray(out, dtype=np.float32)


def illumination_field(
    shape: tuple[int, int], rng: np.random.Generator, amplitude: float
) -> npt.NDArray[np.float32]:
    """A smooth random gain (H, W) for the photo: light that falls off across the frame.

    The log of the gain is a random mix of a linear ramp (a light off to one side) and a radial
    bowl around a random centre (a flash or a spot light), scaled so it spans
    ``uniform(0, amplitude)`` from its darkest to its brightest pixel, with mean zero. A diffuse
    surface under light whose strength varies slowly is the photo times such a field; the albedo,
    normals, height and roughness stay as they are.
    """
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x = 2.0 * x / max(w - 1, 1) - 1.0
    y = 2.0 * y / max(h - 1, 1) - 1.0
    theta = rng.uniform(0.0, 2.0 * np.pi)
    cx, cy = rng.uniform(-1.0, 1.0, size=2)
    mix = rng.uniform(0.0, 1.0)
    ramp = np.cos(theta) * x + np.sin(theta) * y
    bowl = -((x - cx) ** 2 + (y - cy) ** 2)
    field = (1.0 - mix) * ramp / max(float(np.ptp(ramp)), 1e-6) + mix * bowl / max(float(np.ptp(bowl)), 1e-6)
    span = rng.uniform(0.0, amplitude)
    field = span * (field - field.mean())
    return np.asarray(np.exp(field), dtype=np.float32)


def relight_smoothly(lit: FloatArray, rng: np.random.Generator, amplitude: float) -> FloatArray:
    """The photo under a random :func:`illumination_field` (half the time; clipped to [0, 1])."""
    if rng.random() >= 0.5:
        return lit
    gain = illumination_field((lit.shape[0], lit.shape[1]), rng, amplitude)
    return np.clip(lit * gain[..., None], 0.0, 1.0).astype(np.float32)


def augment(
    sample: MaterialSample,
    rng: np.random.Generator,
    *,
    crop_size: int | None = None,
    jitter: bool = True,
    illumination: float = 0.0,
) -> MaterialSample:
    """A random crop, a random dihedral transform and (optionally) colour jitter of the photo.

    Args:
        sample: the sample to augment (not modified).
        rng: random generator (pass a seeded one for reproducible batches).
        crop_size: square crop size in pixels; ``None`` keeps the full frame.
        jitter: jitter the photo's colour.
        illumination: if > 0, half the photos get a smooth light falloff over the whole sample
            (before the crop) spanning up to this much in natural log units
            (:func:`relight_smoothly`). 0 draws nothing, so batches stay as before.

    Returns:
        A new sample.
    """
    out = sample
    if illumination > 0:
        out = replace(out, lit=relight_smoothly(out.lit, rng, illumination))
    if crop_size is not None:
        h, w = sample.shape
        if crop_size > min(h, w):
            raise InputError(f"crop size {crop_size} exceeds the sample size {h}x{w}")
        top = int(rng.integers(0, h - crop_size + 1))
        left = int(rng.integers(0, w - crop_size + 1))
        out = crop(out, top, left, crop_size)
    out = dihedral(out, int(rng.integers(4)), bool(rng.integers(2)))
    if jitter:
        out = replace(out, lit=color_jitter(out.lit, rng))
    return out


class SampleMaps(Protocol):
    """The maps :func:`augment_with_context` reads: a :class:`MaterialSample`, or any object with
    the same arrays in another float dtype (the training set keeps float16 copies)."""

    @property
    def lit(self) -> npt.NDArray[Any]: ...
    @property
    def albedo(self) -> npt.NDArray[Any]: ...
    @property
    def normal(self) -> npt.NDArray[Any]: ...
    @property
    def height(self) -> npt.NDArray[Any]: ...
    @property
    def roughness(self) -> npt.NDArray[Any]: ...
    @property
    def light(self) -> FloatArray | None: ...


def augment_with_context(
    sample: SampleMaps,
    rng: np.random.Generator,
    *,
    crop_size: int,
    jitter: bool = True,
    illumination: float = 0.0,
    turn: tuple[int, bool] | None = None,
) -> tuple[MaterialSample, FloatArray]:
    """Like :func:`augment`, but also return the whole augmented photo (H, W, 3).

    ``turn``: use these ``(quarter_turns, mirror)`` instead of random ones (the random ones are
    still drawn, so the rest of the augmentation is the same); ``(0, False)`` keeps the photo's
    orientation, as a study under one fixed sun needs.

    The dihedral transform and the colour jitter are applied to the whole sample first and the
    crop is taken from it, so the crop and the whole photo agree (the context branch of
    :class:`mlvfx.nets.material.MaterialNet` reads the whole photo while the U-Net sees the crop).
    Only the photo is transformed whole, though: the other maps are cut from views of the turned
    arrays and only the crop is converted to float32 and copied. The result is the same as
    :func:`dihedral`, :func:`relight_smoothly`, :func:`color_jitter` and :func:`crop` in that
    order (tested); a training batch costs about half as much to build (bench/material_batch.py).
    """
    h, w = sample.lit.shape[:2]
    if crop_size > min(h, w):
        raise InputError(f"crop size {crop_size} exceeds the sample size {h}x{w}")
    quarter_turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
    if turn is not None:
        quarter_turns, mirror = int(turn[0]), bool(turn[1])
    lit = np.ascontiguousarray(_turned(sample.lit, quarter_turns, mirror), dtype=np.float32)
    if illumination > 0:
        lit = relight_smoothly(lit, rng, illumination)
    if jitter:
        lit = color_jitter(lit, rng)
    hh, ww = lit.shape[:2]
    top = int(rng.integers(0, hh - crop_size + 1))
    left = int(rng.integers(0, ww - crop_size + 1))
    window = (slice(top, top + crop_size), slice(left, left + crop_size))

    def part(a: npt.NDArray[Any]) -> FloatArray:
        return np.ascontiguousarray(_turned(a, quarter_turns, mirror)[window], dtype=np.float32)

    light = sample.light
    out = MaterialSample(
        np.ascontiguousarray(lit[window]),
        part(sample.albedo),
        rotate_normals(part(sample.normal), quarter_turns, mirror),
        part(sample.height),
        part(sample.roughness),
        None if light is None else rotate_normals(light, quarter_turns, mirror),
    )
    return out, lit


def normals_from_height(height: FloatArray, pixel_size: float = 1.0) -> FloatArray:
    """Unit OpenGL tangent-space normals of a height field by central differences.

    Args:
        height: (H, W); row 0 is the top of the image.
        pixel_size: width of one pixel in the units of ``height``.

    Returns:
        (H, W, 3) unit normals: ``normalize(-dh/dx, -dh/dy, 1)`` with +Y up (rows go down).
    """
    dh_drow, dh_dcol = np.gradient(height.astype(np.float64), pixel_size)
    n = np.stack([-dh_dcol, dh_drow, np.ones_like(dh_dcol)], axis=-1)
    return np.asarray(n / np.linalg.norm(n, axis=-1, keepdims=True), dtype=np.float32)
