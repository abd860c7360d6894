"""Texture-synthesis metrics: seam score, look distance, verbatim-copy share.

All functions take numpy float arrays (H, W) or (H, W, C) in the same space as the exemplar
(linear colour or data); they are method-agnostic, so the synthesiser and the Image Quilting
baseline are measured the same way.

* :func:`seam_score`: mean absolute gradient across the wrap-around borders of a tileable image
  divided by the mean interior gradient. 1.0 means the borders are statistically invisible;
  a visible seam scores well above 1 (target <= 1.1).
* :func:`look_distance`: sliced Wasserstein distance between the 7x7 patch distributions of output
  and exemplar at 3 scales (lower is closer in look).
* :func:`verbatim_share`: share of output pixels inside coherent copied regions (connected pixels
  with one and the same nearest-neighbour offset) larger than 1/4 of the exemplar's area; the
  nearest-neighbour field comes from :func:`nearest_neighbour_field`, a PatchMatch search.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from mlvfx.errors import InputError, InvalidImageDataError
from mlvfx.progress import ProgressFn, report

FloatArray = npt.NDArray[np.float32]


def _as_hwc(a: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidImageDataError(f"expected a non-empty (H, W) or (H, W, C) array, got {arr.shape}", name)
    if not np.isfinite(arr).all():
        raise InvalidImageDataError("contains NaN or inf", name)
    return arr


def seam_score(image: npt.ArrayLike) -> float:
    """Wrap-around seam visibility of a tileable texture.

    Args:
        image: float (H, W) or (H, W, C), at least 3x3.

    Returns:
        mean |difference| across the left/right and top/bottom wrap borders divided by the mean
        |difference| between neighbouring interior pixels (both directions, all channels).
    """
    a = _as_hwc(image, "image").astype(np.float64)
    if a.shape[0] < 3 or a.shape[1] < 3:
        raise InputError(f"seam score needs at least 3x3 pixels, got {a.shape[1]}x{a.shape[0]}")
    dx = np.abs(np.diff(a, axis=1))
    dy = np.abs(np.diff(a, axis=0))
    border = np.concatenate([np.abs(a[:, 0] - a[:, -1]).ravel(), np.abs(a[0] - a[-1]).ravel()])
    interior = np.concatenate([dx.ravel(), dy.ravel()])
    mean_int = float(interior.mean())
    if mean_int <= 1e-12:
        return 1.0 if float(border.mean()) <= 1e-12 else math.inf
    return float(border.mean()) / mean_int


def _to_tensor(a: FloatArray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _patches(x: torch.Tensor, patch: int, limit: int, gen: torch.Generator) -> torch.Tensor:
    """``limit`` random (or all) patches of x (C, H, W) as columns (C*patch*patch, N)."""
    c, h, w = x.shape
    ny, nx = h - patch + 1, w - patch + 1
    if ny * nx <= limit:
        return F.unfold(x[None], patch)[0]
    pick = torch.randperm(ny * nx, generator=gen)[:limit].to(x.device)
    py, px = pick // nx, pick % nx
    d = torch.arange(patch, device=x.device)
    rows = (py[None, :, None] + d[:, None, None]).expand(patch, limit, patch)  # (dy, N, dx)
    cols = (px[None, :, None] + d[None, None, :]).expand(patch, limit, patch)
    g = x[:, rows, cols]  # (C, dy, N, dx)
    return g.permute(0, 1, 3, 2).reshape(c * patch * patch, limit)


def _quantiles(v: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted values of each row resampled to ``count`` evenly spaced quantiles."""
    s, _ = torch.sort(v, dim=1)
    pos = torch.linspace(0, s.shape[1] - 1, count)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    t = pos - lo
    return s[:, lo] * (1 - t) + s[:, hi] * t


def look_distance(
    output: npt.ArrayLike,
    exemplar: npt.ArrayLike,
    *,
    patch: int = 7,
    scales: int = 3,
    projections: int = 128,
    samples: int = 16384,
    seed: int = 0,
) -> float:
    """Sliced Wasserstein distance between the patch distributions of output and exemplar.

    At each of ``scales`` scales (halving with area averaging) all ``patch`` x ``patch`` patches are
    collected (randomly subsampled to ``samples``), projected on ``projections`` fixed random unit
    directions, and the 1-D distributions compared by the mean absolute difference of their
    quantiles. The result is the mean over scales and directions. Deterministic for a given seed.

    Args:
        output: float (H, W, C) synthesised texture.
        exemplar: float (h, w, C) exemplar, same channels.
        patch: patch side.
        scales: number of scales.
        projections: number of random directions.
        samples: patches per image and scale at most.
        seed: seed of the directions and the subsampling.

    Returns:
        The distance (0 for identical distributions).
    """
    a = _as_hwc(output, "output")
    b = _as_hwc(exemplar, "exemplar")
    if a.shape[2] != b.shape[2]:
        raise InputError(f"output has {a.shape[2]} channels but the exemplar has {b.shape[2]}")
    ta, tb = _to_tensor(a), _to_tensor(b)
    gen = torch.Generator().manual_seed(seed)
    dims = a.shape[2] * patch * patch
    total = 0.0
    used = 0
    for s in range(scales):
        if min(ta.shape[1:]) < patch or min(tb.shape[1:]) < patch:
            break
        dirs = torch.randn(projections, dims, generator=gen)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        pa = dirs @ _patches(ta, patch, samples, gen)
        pb = dirs @ _patches(tb, patch, samples, gen)
        count = min(pa.shape[1], pb.shape[1], 4096)
        total += float((_quantiles(pa, count) - _quantiles(pb, count)).abs().mean())
        used += 1
        if s + 1 < scales:
            ta = F.avg_pool2d(ta[None], 2)[0]
            tb = F.avg_pool2d(tb[None], 2)[0]
    if used == 0:
        raise InputError(f"images are smaller than the {patch}x{patch} patch")
    return total / used


def nearest_neighbour_field(
    output: npt.ArrayLike,
    exemplar: npt.ArrayLike,
    *,
    patch: int = 7,
    dims: int = 8,
    iterations: int = 2,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressFn | None = None,
) -> npt.NDArray[np.int64]:
    """Approximate nearest-neighbour field of output patches in the exemplar (PatchMatch).

    Patches are compared on their first ``dims`` principal components. Search is PatchMatch with
    jump-flood propagation (neighbours at distances 2^k, so coherent offsets cross the image in
    one iteration) and random search, vectorised over all pixels.

    Args:
        output: float (H, W, C).
        exemplar: float (h, w, C), at least ``patch`` x ``patch``.
        patch: patch side (odd).
        dims: PCA dimensions.
        iterations: PatchMatch iterations.
        seed: random seed.
        device: torch device (default CPU).
        progress: called with (fraction, message) after every propagation step.

    Returns:
        int64 (H, W, 2): for every output pixel the (y, x) centre of its best exemplar patch.
    """
    a = _as_hwc(output, "output")
    b = _as_hwc(exemplar, "exemplar")
    if a.shape[2] != b.shape[2]:
        raise InputError(f"output has {a.shape[2]} channels but the exemplar has {b.shape[2]}")
    if min(b.shape[:2]) < patch:
        raise InputError(f"exemplar {b.shape[1]}x{b.shape[0]} is smaller than the {patch}x{patch} patch")
    dev = device or torch.device("cpu")
    ta, tb = _to_tensor(a).to(dev), _to_tensor(b).to(dev)
    r = patch // 2
    gen = torch.Generator().manual_seed(seed)
    cols = _patches(tb, patch, 20000, gen).double()
    mean = cols.mean(1, keepdim=True)
    cov = (cols - mean) @ (cols - mean).T / max(1, cols.shape[1] - 1)
    _, vec_np = np.linalg.eigh(cov.numpy())  # numpy: much faster than torch for tiny matrices
    vec = torch.from_numpy(vec_np)
    k = min(dims, vec.shape[0])
    filters = vec[:, -k:].T.float().reshape(k, a.shape[2], patch, patch).contiguous()
    fb = F.conv2d(tb[None], filters)[0]  # valid centres: (k, h - 2r, w - 2r)
    fa = F.conv2d(F.pad(ta[None], (r, r, r, r), mode="replicate"), filters)[0]
    hb, wb = fb.shape[1:]
    H, W = fa.shape[1:]
    fbf = fb.reshape(k, -1)
    faf = fa.reshape(k, -1)

    def cost(idx: torch.Tensor) -> torch.Tensor:
        return ((fbf.index_select(1, idx.reshape(-1)) - faf) ** 2).sum(0).reshape(H, W)

    ny = (torch.rand(H, W, generator=gen) * hb).long().to(dev)
    nx = (torch.rand(H, W, generator=gen) * wb).long().to(dev)
    best = cost(ny * wb + nx)
    jumps = [2**j for j in range(int(math.log2(max(H, W))) - 1, -1, -1)]

    def consider(cy: torch.Tensor, cx: torch.Tensor) -> None:
        nonlocal ny, nx, best
        cy = cy.clamp(0, hb - 1)
        cx = cx.clamp(0, wb - 1)
        c = cost(cy * wb + cx)
        better = c < best
        ny = torch.where(better, cy, ny)
        nx = torch.where(better, cx, nx)
        best = torch.where(better, c, best)

    steps = max(1, iterations * (len(jumps) + 1))
    for it in range(iterations):
        for n, j in enumerate(jumps):
            # neighbour q = p - d proposes its match shifted by d (rolling wraps; costs decide)
            for dy, dx in ((j, 0), (-j, 0), (0, j), (0, -j)):
                consider(torch.roll(ny, (dy, dx), (0, 1)) + dy, torch.roll(nx, (dy, dx), (0, 1)) + dx)
            report(progress, (it * (len(jumps) + 1) + n + 1) / steps, "nearest-neighbour field")
        radius = float(max(hb, wb)) / 2
        while radius >= 1:
            off = ((torch.rand(2, H, W, generator=gen) * 2 - 1) * radius).round().long().to(dev)
            consider(ny + off[0], nx + off[1])
            radius /= 4
        report(progress, (it + 1) * (len(jumps) + 1) / steps, "nearest-neighbour field")
    field = torch.stack([ny + r, nx + r], -1).cpu().numpy()
    return np.asarray(field, dtype=np.int64)


def verbatim_share(
    output: npt.ArrayLike,
    exemplar: npt.ArrayLike,
    *,
    field: npt.NDArray[np.int64] | None = None,
    min_fraction: float = 0.25,
    **nnf_kwargs: Any,
) -> float:
    """Share of output pixels in coherent copied regions larger than ``min_fraction`` of the exemplar.

    Args:
        output: float (H, W, C).
        exemplar: float (h, w, C).
        field: a precomputed (H, W, 2) nearest-neighbour field (else computed here).
        min_fraction: region size threshold as a fraction of the exemplar's pixel count.
        **nnf_kwargs: passed to :func:`nearest_neighbour_field`.

    Returns:
        A share in [0, 1].
    """
    from skimage.measure import label

    b = _as_hwc(exemplar, "exemplar")
    if field is None:
        field = nearest_neighbour_field(output, b, **nnf_kwargs)
    H, W = field.shape[:2]
    oy = field[..., 0] - np.arange(H)[:, None]
    ox = field[..., 1] - np.arange(W)[None, :]
    code = (oy + H + 1) * (W + b.shape[1] + 3) + (ox + W + 1)  # unique non-negative id per offset
    regions = label(code + 1, background=0, connectivity=1)  # type: ignore[no-untyped-call]
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    big = sizes > min_fraction * b.shape[0] * b.shape[1]
    return float(big[regions].sum()) / float(H * W)
