"""Texture generation: make a texture seamless, grow new variations, paint with a label map.

Each operator takes a single texture, a float32 (H, W, C) numpy array (linear colour or data), or
a whole material set, a mapping such as ``{"albedo": (H, W, 3) linear, "normal": (H, W, 3) unit
OpenGL vectors in [-1, 1], "height": (H, W), "roughness": (H, W)}``, and returns the same kind.
The maps of a set are synthesised jointly: every output pixel copies one exemplar pixel for all
maps at once, so albedo, normal, height and roughness stay aligned; normals are renormalised.

``grow`` and ``paint`` use multi-scale, patch-based synthesis of a coordinate map with PatchMatch
search (see :mod:`mlvfx.texture.patchmatch`); a tileable result is synthesised on a torus, so it
tiles by construction. ``make_tileable`` keeps the texture and, by default, stitches blocks of it
into a band round the wrap along minimum-error cuts (:mod:`mlvfx.texture.tiling`), also as a
coordinate map. :func:`mlvfx.texture.quilting.quilt` (Image Quilting) is the reference baseline
for ``grow``.

Example:
    >>> import numpy as np
    >>> from mlvfx.ops.texture import grow
    >>> rng = np.random.default_rng(0)
    >>> exemplar = rng.random((32, 32, 3), dtype=np.float32)
    >>> grow(exemplar, size=(64, 48), seed=1).shape
    (64, 48, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from mlvfx.errors import InputError, InvalidImageDataError
from mlvfx.progress import CancelToken, ProgressFn, report, scaled
from mlvfx.texture.maps import FloatArray, Maps, Stack, stack_maps, unstack
from mlvfx.texture.patchmatch import ExemplarAtlas, SynthesisConfig, level_count, synthesize
from mlvfx.texture.tiling import band_fits, tile_coords

__all__ = ["Maps", "SynthesisConfig", "grow", "labels_from_colors", "make_tileable", "paint"]

MAX_OUTPUT_SIDE = 32768
TILE_METHODS: tuple[str, ...] = ("stitch", "synthesis")


def _device(device: str | None) -> object:
    from mlvfx.config import torch_device

    return torch_device(device)


def _check_size(size: Sequence[int], name: str = "size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (height, width), got {size!r}") from None
    if h < 8 or w < 8:
        raise InputError(f"{name} must be at least 8x8, got {w}x{h}")
    if h > MAX_OUTPUT_SIDE or w > MAX_OUTPUT_SIDE:
        raise InputError(f"{name} {w}x{h} exceeds the largest supported side {MAX_OUTPUT_SIDE}")
    from mlvfx.config import max_pixels

    if h * w > max_pixels():
        raise InputError(
            f"{name} {w}x{h} is {h * w} pixels, more than MLVFX_MAX_PIXELS ({max_pixels()}); "
            "raise it if this machine has the memory"
        )
    return h, w


def _run(
    stacks: Sequence[Stack],
    size: tuple[int, int],
    *,
    tileable: bool,
    seed: int,
    config: SynthesisConfig | None,
    device: str | None,
    fixed: npt.NDArray[np.bool_] | None = None,
    guide: FloatArray | None = None,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> FloatArray:
    """Synthesise (H, W, C) values from one or more exemplar stacks (same channel layout)."""
    import torch

    cfg = config or SynthesisConfig()
    dev = _device(device)
    assert isinstance(dev, torch.device)
    report(progress, 0.0, "preparing exemplar")
    ex = [torch.from_numpy(np.ascontiguousarray(s.match.transpose(2, 0, 1))).to(dev) for s in stacks]
    levels = level_count(min(min(s.height, s.width) for s in stacks), size[0], size[1], cfg)
    atlas = ExemplarAtlas(ex, levels, cfg, seed=seed)
    report(progress, 0.05, "synthesising")
    fixed_t = fixed_c = None
    if fixed is not None:
        # make_tileable: output and exemplar share a size; pinned pixels copy themselves
        fixed_t = torch.from_numpy(fixed).to(dev)
        ys = torch.arange(size[0], device=dev)[:, None]
        xs = torch.arange(size[1], device=dev)[None, :]
        fixed_c = ys * atlas.width + xs
    guide_t = None if guide is None else torch.from_numpy(np.ascontiguousarray(guide)).to(dev)
    with torch.no_grad():
        coords = synthesize(
            atlas,
            size,
            config=cfg,
            tileable=tileable,
            seed=seed,
            fixed=fixed_t,
            fixed_coords=fixed_c,
            guide=guide_t,
            progress=scaled(progress, 0.05, 0.95),
            cancel=cancel,
        )
    flat = coords.reshape(-1).cpu().numpy()
    channels = stacks[0].values.shape[2]
    values = np.zeros((atlas.height, atlas.width, channels), np.float32)
    x0 = 0
    for s in stacks:
        values[: s.height, x0 : x0 + s.width] = s.values
        x0 += s.width
    out: FloatArray = values.reshape(-1, channels)[flat].reshape(size[0], size[1], channels)
    report(progress, 1.0, "done")
    return out


EQUALIZE_RADIUS = 0.125
"""Scale of the lighting ``equalize_lighting`` divides out: the blur's sigma over the longer side."""

COLOUR_MAPS = ("albedo", "basecolor", "color", "diffuse")
"""Names of the colour maps of a material set that ``equalize`` flattens (data maps are left)."""


EQUALIZE_WORK_SIDE = 256
"""The lighting is estimated on the luminance shrunk to this longer side (it is smooth at 1/8 of
the size, so nothing is lost, and a 4096² blur at full size took 51 s)."""


def equalize_lighting(image: FloatArray, radius: float = EQUALIZE_RADIUS) -> FloatArray:
    """``image`` with its large-scale brightness variation divided out (lighting falloff,
    vignetting, a shadow across the frame), keeping its overall brightness and its colour.

    A photo lit from one side is brighter on that side, and a seamless version of it shows that as
    a bright-dark step where the two sides meet (at the wrap, or wherever the tiler hides it). The
    log-luminance blurred at ``radius`` x the longer side is taken as the lighting (in the log, a
    few highlights do not brighten everything else), weighted by alpha so that transparent pixels
    do not count; every colour channel is multiplied by ``exp(mean - lighting)``. Alpha passes
    through, and an (H, W) image comes back (H, W).

    Raises:
        InvalidImageDataError: bad array.
        InputError: ``radius`` not in (0, 1].
    """
    import cv2

    from mlvfx.color import luminance
    from mlvfx.io.image import check_image

    if not 0.0 < radius <= 1.0:
        raise InputError(f"radius must be in (0, 1] (a fraction of the size), got {radius}")
    flat = np.ndim(image) == 2  # np.ndim: a torch tensor that needs grad has no __array__ to call
    img = check_image(image, "texture")
    h, w, c = img.shape
    colour = c if c in (1, 3) else c - 1
    lum = luminance(img[..., :colour]) if colour >= 3 else img[..., 0]
    # Alpha weighs the estimate; a float file's alpha can dip a hair below 0 (or above 1).
    weight = np.clip(img[..., -1], 0.0, 1.0) if c in (2, 4) else np.ones((h, w), np.float32)
    floor = max(1e-6, 1e-3 * float(np.average(np.abs(lum), weights=weight + 1e-12)))
    log = np.log(np.maximum(lum, floor)).astype(np.float32)
    scale = min(1.0, EQUALIZE_WORK_SIDE / max(h, w))
    small = (max(1, round(w * scale)), max(1, round(h * scale)))

    def shrink(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = cv2.resize(a, small, interpolation=cv2.INTER_AREA) if scale < 1.0 else a
        return np.asarray(out, np.float32)

    def blur(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        sigma = radius * max(a.shape[:2])
        return np.asarray(cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), np.float32)

    weight_s = shrink(weight)
    log_s = shrink(log * weight) / np.maximum(weight_s, 1e-6)  # transparent pixels do not count
    # The lighting's plane first (a least-squares fit, weighted): a blur alone bends a gradient at
    # the borders, where the reflected image runs the other way; what is left is blurred.
    yy, xx = np.mgrid[0 : log_s.shape[0], 0 : log_s.shape[1]].astype(np.float64)
    basis = np.stack([np.ones_like(xx), xx / xx.shape[1], yy / yy.shape[0]], -1).reshape(-1, 3)
    root_w = np.sqrt(weight_s.reshape(-1).astype(np.float64))
    coef, *_ = np.linalg.lstsq(basis * root_w[:, None], log_s.reshape(-1) * root_w, rcond=None)
    plane = (basis @ coef).reshape(log_s.shape).astype(np.float32)
    w_low = blur(weight_s)
    low = plane + blur((log_s - plane) * weight_s) / np.maximum(w_low, 1e-6)
    mean = float(np.sum(low * weight_s) / max(float(weight_s.sum()), 1e-12))
    gain = np.exp(mean - low).astype(np.float32)
    if scale < 1.0:
        gain = cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)
    # Back to the image's own (alpha-weighted) mean brightness: the log's mean is a geometric one.
    total = float(np.sum(weight))
    if total > 0:
        before = float(np.sum(lum * weight)) / total
        after = float(np.sum(lum * gain * weight)) / total
        if before > 0 and after > 0:
            gain *= np.float32(before / after)
    out = img.copy()
    out[..., :colour] *= gain.reshape(h, w, 1)
    return out[..., 0] if flat else out


def make_tileable(
    maps: Maps,
    *,
    band: float = 0.15,
    seed: int = 0,
    method: str = "stitch",
    equalize: bool = False,
    config: SynthesisConfig | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Maps:
    """A seamless version of a texture at the same size, keeping as much of the original as possible.

    The interior stays exactly as it was; a band around the wrap (along the four edges) is rebuilt
    from the texture itself, so the right edge continues into the left and the bottom into the top
    without a seam.

    * ``method="stitch"`` (default): the band is covered by blocks copied from the texture and
      stitched to the original and to each other along minimum-error cuts
      (:mod:`mlvfx.texture.tiling`), so where the original ends follows the texture's own
      structure. Bands narrower than :data:`~mlvfx.texture.tiling.MIN_BAND` pixels are synthesised.
    * ``method="synthesis"``: the band is synthesised pixel by pixel on a torus with the original
      interior pinned (:mod:`mlvfx.texture.patchmatch`). Continuing the original costs it nothing,
      so both sides' continuations tend to run on to the texture's edge and meet in a straight
      line next to the wrap (``bench/texture_tile_seam.py`` measures it).

    Args:
        maps: float32 (H, W, C) texture (linear colour or data), or a material set (see module doc).
        band: width of the rebuilt band on each side, as a fraction of the size (0 < band < 0.5).
        seed: random seed.
        method: ``"stitch"`` or ``"synthesis"`` (see above).
        equalize: first divide out large-scale lighting (:func:`equalize_lighting`) from the
            texture, or from a material set's colour map (``albedo``); the interior then keeps its
            detail but not its falloff. Off by default: the interior is kept exactly.
        config: synthesis settings (default :class:`SynthesisConfig`; ``"synthesis"`` only).
        device: torch device name (default: ``MLVFX_DEVICE``, else CUDA when present, else CPU;
            ``"synthesis"`` only: stitching runs on the CPU).
        progress: called with (fraction, message).
        cancel: a :class:`~mlvfx.progress.CancelToken`.

    Returns:
        The same kind as ``maps``, same size, tileable.

    Raises:
        InvalidImageDataError: bad array (rank, channels, NaN, size).
        InputError: bad ``band``, ``method`` or material set.
        Cancelled: ``cancel`` was set.
    """
    if not 0.0 < band < 0.5:
        raise InputError(f"band must be between 0 and 0.5 (a fraction of the size), got {band}")
    if method not in TILE_METHODS:
        raise InputError(f"unknown tiling method {method!r}; use one of {', '.join(TILE_METHODS)}")
    if equalize:
        if isinstance(maps, Mapping):
            colour = [k for k in maps if str(k).lower() in COLOUR_MAPS]
            if not colour:
                raise InputError(
                    f"equalize flattens the colour map, and this set has none ({', '.join(map(str, maps))})"
                )
            maps = {k: equalize_lighting(v) if k in colour else v for k, v in maps.items()}
        else:
            maps = equalize_lighting(maps)
    stack = stack_maps(maps)
    h, w = stack.height, stack.width
    by, bx = max(2, round(band * h)), max(2, round(band * w))
    if method == "stitch" and band_fits((h, w), (by, bx)):
        coords = tile_coords(stack.match, (by, bx), seed=seed, progress=progress, cancel=cancel)
        channels = stack.values.shape[2]
        values = stack.values.reshape(-1, channels)[coords.reshape(-1)].reshape(h, w, channels)
        return unstack(stack, np.ascontiguousarray(values, dtype=np.float32))
    fixed = np.zeros((h, w), bool)
    fixed[by : h - by, bx : w - bx] = True
    out = _run(
        [stack],
        (h, w),
        tileable=True,
        seed=seed,
        config=config,
        device=device,
        fixed=fixed,
        progress=progress,
        cancel=cancel,
    )
    return unstack(stack, out)


def check_grow_size(maps: Maps, size: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` if :func:`grow` can make ``maps`` at ``size``, else ``InputError`` (before any work)."""
    return _grow_stack(maps, size)[0]


def _grow_stack(maps: Maps, size: Sequence[int]) -> tuple[tuple[int, int], Stack]:
    out_size = _check_size(size)
    stack = stack_maps(maps, "exemplar")
    if stack.height > out_size[0] or stack.width > out_size[1]:
        raise InputError(
            f"exemplar {stack.width}x{stack.height} is larger than the output {out_size[1]}x{out_size[0]}; "
            "grow makes textures at least as large as the exemplar (crop or downscale it first)"
        )
    return out_size, stack


def grow(
    maps: Maps,
    size: Sequence[int],
    *,
    seed: int = 0,
    tileable: bool = True,
    config: SynthesisConfig | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Maps:
    """A new, non-repeating texture of any size with the look of the exemplar.

    Args:
        maps: float32 (h, w, C) exemplar (linear colour or data), or a material set.
        size: output (H, W), each at least the exemplar's.
        seed: random seed; a different seed gives a different variation.
        tileable: the result wraps around seamlessly. Grown textures are always synthesised on a
            torus (an open border would attract streaky copies of the exemplar's edge), so they
            tile either way; ``False`` only means the caller does not rely on it.
        config: synthesis settings (default :class:`SynthesisConfig`).
        device: torch device name (default: ``MLVFX_DEVICE``, else CUDA when present, else CPU).
        progress: called with (fraction, message).
        cancel: a :class:`~mlvfx.progress.CancelToken`.

    Returns:
        The same kind as ``maps``, (H, W, ...) float32.

    Raises:
        InvalidImageDataError: bad array.
        InputError: bad size, or an exemplar larger than the output (downscale it, or crop it).
        Cancelled: ``cancel`` was set.
    """
    out_size, stack = _grow_stack(maps, size)
    del tileable  # always toroidal, see the docstring
    out = _run(
        [stack],
        out_size,
        tileable=True,
        seed=seed,
        config=config,
        device=device,
        progress=progress,
        cancel=cancel,
    )
    return unstack(stack, out)


def labels_from_colors(
    image: npt.ArrayLike, colors: Sequence[tuple[int, int, int]], name: str = "labels"
) -> npt.NDArray[np.int64]:
    """Turn a flat-colour label image into an integer map by exact colour match.

    Args:
        image: (H, W, 3) or (H, W, 4) uint8 RGB(A), or float values in [0, 1] (as read from an
            8-bit PNG with ``kind="data"``); alpha is ignored.
        colors: the 8-bit RGB colour of label 0, 1, 2, ...
        name: how to name the image in error messages (a path).

    Returns:
        int64 (H, W) label indices into ``colors``.

    Raises:
        InputError: a colour in the image is not in ``colors`` (the message lists a few), or the
            image is not RGB.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"label image must be RGB, got shape {arr.shape}", name)
    rgb = arr[:, :, :3]
    if rgb.dtype != np.uint8:
        f = rgb.astype(np.float64)
        if not np.isfinite(f).all():
            raise InvalidImageDataError("label image contains NaN or inf", name)
        rgb = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    code = (rgb[:, :, 0].astype(np.int64) << 16) | (rgb[:, :, 1].astype(np.int64) << 8) | rgb[:, :, 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(colors)}
    uniq, inverse = np.unique(code, return_inverse=True)
    missing = [int(u) for u in uniq if int(u) not in table]
    if missing:
        shown = ", ".join(f"#{m:06x}" for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        given = ", ".join(f"#{(r << 16) | (g << 8) | b:06x}" for r, g, b in colors) or "none"
        given_rgb = np.array(colors, np.int64).reshape(-1, 3)
        near = [
            m
            for m in missing
            if given_rgb.size
            and int(np.abs(given_rgb - [(m >> 16) & 255, (m >> 8) & 255, m & 255]).max(axis=1).min()) <= 3
        ]
        if near and len(missing) <= 2:  # #fe0000 in the map, #ff0000 in the slot
            why = "they are within 3 levels of a given colour: the slot's colour must match the map's exactly"
        elif len(missing) <= 2:  # a slot forgotten, most likely: anti-aliasing leaves many colours
            why = "add an exemplar for each of them"
        elif str(name).lower().endswith((".jpg", ".jpeg", ".jfif", ".jpe")):
            why = "JPEG compression changes colours: save the label map as PNG, with flat colours"
        else:
            why = "label maps must use flat colours only (no anti-aliasing)"
        raise InputError(
            f"{len(missing)} colour(s) in the label image have no exemplar: {shown} (exemplars given for: "
            f"{given}); {why}",
            name,
        )
    lut = np.array([table[int(u)] for u in uniq], dtype=np.int64)
    return lut[inverse].reshape(code.shape)


def _blur(image: FloatArray, sigma: float, tileable: bool) -> FloatArray:
    # OpenCV's GaussianBlur has no wrap-around border; the classical filter pads by wrapping.
    from mlvfx.classical.filters import gaussian

    if sigma <= 0:
        return image
    out: FloatArray = np.stack([gaussian(ch, sigma, tileable) for ch in image]).astype(np.float32)
    return out


def _warp(image: FloatArray, amount: float, seed: int, tileable: bool) -> FloatArray:
    """Displace (K, H, W) maps by a smooth random field of about ``amount`` pixels.

    Painted edges are straight or blobby; the warp gives region borders an irregular, seed-dependent
    course at the scale of the transition, like real material boundaries.
    """
    import cv2

    if amount <= 0:
        return image
    _, h, w = image.shape
    rng = np.random.default_rng(seed)
    if tileable:  # the displacement must wrap too, or the borders jump at the tile's edge (an audit)
        dy, dx = (_periodic_noise(rng, h, w, amount) for _ in range(2))
    else:
        cells = max(2, min(max(h, w), round(max(h, w) / (4.0 * amount))))
        field = rng.standard_normal((2, cells + 1, cells + 1)).astype(np.float32) * np.float32(amount)
        dy = cv2.resize(field[0], (w, h), interpolation=cv2.INTER_CUBIC)
        dx = cv2.resize(field[1], (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    border = cv2.BORDER_WRAP if tileable else cv2.BORDER_REFLECT
    out: FloatArray = np.stack(
        [cv2.remap(ch, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=border) for ch in image]
    ).astype(np.float32)
    return out


def _periodic_noise(rng: np.random.Generator, h: int, w: int, amount: float) -> FloatArray:
    """A smooth random (h, w) field of about ``amount``, periodic in both axes: normal samples on a
    wrapped grid of about ``4 * amount`` pixels' spacing, Catmull-Rom interpolated."""
    # At most one grid point per pixel: a tiny transition on a large map asked for a grid of
    # (n / amount)² points (0.7 GB for 0.02 px on 512², a review).
    cy, cx = (max(2, min(n, round(n / (4.0 * amount)))) for n in (h, w))
    points = rng.standard_normal((cy, cx)).astype(np.float32) * np.float32(amount)

    def taps(n_out: int, n_cells: int) -> list[tuple[npt.NDArray[np.intp], FloatArray]]:
        u = (np.arange(n_out, dtype=np.float64) + 0.5) * n_cells / n_out - 0.5
        i = np.floor(u).astype(np.intp)
        t = u - i
        t2, t3 = t * t, t * t * t
        weights = (
            (-t3 + 2 * t2 - t) / 2,
            (3 * t3 - 5 * t2 + 2) / 2,
            (-3 * t3 + 4 * t2 + t) / 2,
            (t3 - t2) / 2,
        )
        return [((i + k - 1) % n_cells, wk.astype(np.float32)) for k, wk in enumerate(weights)]

    rows = np.zeros((cy, w), np.float32)
    for ix, wx in taps(w, cx):
        rows += points[:, ix] * wx
    out = np.zeros((h, w), np.float32)
    for iy, wy in taps(h, cy):
        out += rows[iy] * wy[:, None]
    return out


def paint(
    labels: npt.ArrayLike,
    exemplars: Mapping[int, Maps],
    *,
    seed: int = 0,
    transition: float | None = None,
    tileable: bool = False,
    config: SynthesisConfig | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Maps:
    """Fill each region of a label map with texture from its exemplar, with natural transitions.

    Regions are matched to exemplars by label. Near region borders the label guide is warped by a
    smooth random field and blurred (both at the ``transition`` scale), so the boundary takes an
    irregular course and, inside the soft zone, follows whichever exemplar continues the texture
    best instead of the painted edge.

    Args:
        labels: int (H, W) or (H, W, 1) label map (see :func:`labels_from_colors` for colour maps).
        exemplars: label -> texture or material set; all of the same kind and channel layout.
        seed: random seed.
        transition: width of the transition zone in pixels (Gaussian sigma of the guide; default
            1/8 of the smallest exemplar side, but at most half the half-width of the thinnest
            painted region, so that no region is blurred away).
        tileable: the result wraps around seamlessly.
        config: synthesis settings (default :class:`SynthesisConfig`).
        device: torch device name (default: ``MLVFX_DEVICE``, else CUDA when present, else CPU).
        progress: called with (fraction, message).
        cancel: a :class:`~mlvfx.progress.CancelToken`.

    Returns:
        The same kind as the exemplars, at the label map's size.

    Raises:
        InputError: a label without an exemplar, exemplars of different layouts, bad labels.
        InvalidImageDataError: a bad exemplar array.
        Cancelled: ``cancel`` was set.
    """
    lab = np.asarray(labels)
    if lab.ndim == 3 and lab.shape[2] == 1:
        lab = lab[:, :, 0]
    if lab.ndim != 2 or lab.size == 0:
        raise InputError(f"labels must be a non-empty (H, W) integer map, got shape {lab.shape}")
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not np.array_equal(lab, np.round(lab)):
            raise InputError("labels must be integers (got non-integer or NaN values)")
    elif lab.dtype.kind not in "iub":
        raise InputError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    size = _check_size(lab.shape, "label map size")
    if not exemplars:
        raise InputError("paint needs at least one exemplar")
    present = [int(v) for v in np.unique(lab)]
    missing = [v for v in present if v not in exemplars]
    if missing:
        raise InputError(
            f"label(s) {missing} in the label map have no exemplar (exemplars given for {sorted(exemplars)})"
        )
    stacks = [stack_maps(exemplars[v], f"exemplar {v}") for v in present]
    layout = stacks[0].layout()
    for v, s in zip(present, stacks, strict=True):
        if s.layout() != layout:
            raise InputError(
                f"exemplar {v} has maps/channels {s.names}/{s.channels} but exemplar {present[0]} has "
                f"{layout[0]}/{layout[1]}; all exemplars must be the same kind"
            )
    if len(stacks) > 1:
        stacks = _common_match_scale(stacks)
    sigma = transition if transition is not None else _default_transition(lab, present, stacks, tileable)
    widest = max(lab.shape)
    if not (math.isfinite(sigma) and 0 <= sigma <= widest):
        raise InputError(
            f"transition must be between 0 and the label map's size ({widest} px), got {transition}"
        )
    onehot = np.stack([(lab == v).astype(np.float32) for v in present])
    guide = _blur(_warp(onehot, float(sigma), seed, tileable), float(sigma) / 2, tileable)
    guide /= np.maximum(guide.sum(0, keepdims=True), 1e-6)
    out = _run(
        stacks,
        size,
        tileable=tileable,
        seed=seed,
        config=config,
        device=device,
        guide=guide,
        progress=progress,
        cancel=cancel,
    )
    return unstack(stacks[0], out)


THIN_LABEL_PX = 3
"""A label none of whose regions holds a block this many pixels on a side is reported as thin."""


def thin_labels(labels: npt.ArrayLike, tileable: bool = False) -> list[int]:
    """Labels of an (H, W) label map none of whose regions is :data:`THIN_LABEL_PX` pixels wide
    anywhere: lines and dots thinner than the synthesis can draw, which come out with the
    neighbours' texture (an audit painted a 1-px line and 2x2 dots: none of their texture came
    through). Hosts warn about them; :func:`paint` itself paints them as well as it can.
    """
    import cv2

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InputError(f"labels must be an (H, W) map, got shape {lab.shape}")
    thin = []
    kernel = np.ones((THIN_LABEL_PX, THIN_LABEL_PX), np.uint8)
    if np.issubdtype(lab.dtype, np.integer) and lab.size and 0 <= int(lab.min()) and int(lab.max()) < 1 << 24:
        values = np.flatnonzero(np.bincount(lab.ravel()))  # np.unique sorts: seconds at 4096²
    else:
        values = np.unique(lab)
    for value in values:
        mask = (lab == value).astype(np.uint8)
        if mask.all():
            continue
        if tileable:  # erode on the torus: pad by wrapping, then crop
            pad = THIN_LABEL_PX
            padded = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_WRAP)
            core = cv2.erode(padded, kernel, borderType=cv2.BORDER_REPLICATE)[pad:-pad, pad:-pad]
        else:  # the image's edge is an edge: a 2-px strip along it is as thin as anywhere
            core = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=(0,))
        if not core.any():
            thin.append(int(value))
    return thin


def _default_transition(
    lab: npt.NDArray[np.int64], present: Sequence[int], stacks: Sequence[Stack], tileable: bool
) -> float:
    """The default transition width: 1/8 of the smallest exemplar side, capped by the label map.

    The guide is warped and blurred at this scale, so a region much thinner than it loses the
    vote to its neighbours everywhere and vanishes (an audit painted stripes of 16-64 px with
    256-px exemplars: the 16-px stripe came out with none of its texture). The cap is half the
    half-width of the thinnest region: over every connected region of at least 16 pixels, the
    largest distance from its inside to another label; at least 1 px. The map's own border is
    not a boundary (it wraps around when ``tileable``, else the regions go on beyond it).
    Regions at least ``2 * sigma`` deep cannot lower the cap and are not measured further.
    """
    import cv2

    sigma = min(min(s.height, s.width) for s in stacks) / 8.0
    deep_enough = 2.0 * sigma
    pad = math.ceil(deep_enough) + 1
    thinnest = math.inf
    for v in present:
        mask = lab == v
        if mask.all():
            continue
        grown = np.pad(mask, pad, mode="wrap" if tileable else "edge").astype(np.uint8)
        count, comps, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=4)
        depth = cv2.distanceTransform(grown, cv2.DIST_L2, 3)
        keep = stats[:, cv2.CC_STAT_AREA] >= 16
        keep &= np.bincount(comps[pad:-pad, pad:-pad].ravel(), minlength=count) > 0  # in the map itself
        keep &= np.bincount(comps[depth >= deep_enough], minlength=count) == 0  # thin ones only
        keep[0] = False  # the other labels
        if not keep.any():
            continue
        thin = keep[comps]
        deepest = np.zeros(count, np.float32)
        np.maximum.at(deepest, comps[thin], depth[thin])
        thinnest = min(thinnest, float(deepest[keep].min()))
    if math.isfinite(thinnest):
        sigma = min(sigma, max(1.0, thinnest / 2.0))
    return sigma


def _common_match_scale(stacks: list[Stack]) -> list[Stack]:
    """Re-standardise the matching channels of several exemplars jointly.

    Each exemplar was standardised on its own, which would erase the difference between, say, a
    dark rock and a bright grass; matching must compare them on one scale.
    """
    from dataclasses import replace

    from mlvfx.texture.maps import MATCH_WEIGHTS

    allv = np.concatenate([s.values.reshape(-1, s.values.shape[2]) for s in stacks])
    mean = allv.mean(0)
    out = []
    c0 = 0
    scales = np.zeros(allv.shape[1], np.float32)
    for key, c in zip(stacks[0].names, stacks[0].channels, strict=True):
        weight = MATCH_WEIGHTS.get(key, 0.5) if stacks[0].is_set else 1.0
        std = float(allv[:, c0 : c0 + c].std())
        scales[c0 : c0 + c] = weight / (max(std, 1e-6) * np.sqrt(c))
        c0 += c
    for s in stacks:
        match = ((s.values - mean) * scales).astype(np.float32)
        out.append(replace(s, match=np.ascontiguousarray(match)))
    return out
