"""Multi-scale patch-based texture synthesis on coordinate maps, with PatchMatch search, in torch.

The synthesiser never produces pixel values of its own: it produces a *coordinate map*, for every
output pixel the (y, x) position of the exemplar pixel it copies. All maps of a material set
(albedo, normal, height, roughness) are then gathered at the same coordinates, so they stay aligned
by construction, and the coordinate map is also the copy field the verbatim metric needs.

Coarse to fine (after Lefebvre & Hoppe 2005, "Parallel controllable texture synthesis", with
PatchMatch's propagation and random search as the candidate set):

* level ``l`` has an output grid ``2**l`` times coarser than the result; each cell stores a
  full-resolution exemplar coordinate. The exemplar is not downsampled but box-filtered over
  ``2**l`` pixels (a "stack"), so coordinates keep full precision at every level;
* the coarsest grid starts from random coordinates (``grow``/``paint``) or is pinned to the
  original (``make_tileable`` keeps its interior);
* each finer level starts from the coherent upsampling ``S[2p + d] = S[p] + d * 2**(l-1)`` and is
  corrected: every cell compares its synthesised neighbourhood (5x5 cells, PCA-projected) against
  exemplar neighbourhoods at candidate coordinates and keeps the best. Candidates are the
  propagated coordinates of the 4 neighbours (PatchMatch propagation, which grows coherent
  patches) and random samples around the current match at shrinking radii (random search),
  which must beat the coherent ones by a factor (coherence bias). Candidates that would leave
  the exemplar are dropped rather than clamped (clamping repeats edge rows as streaks);
* a little coordinate jitter after upsampling at the coarse levels breaks up long verbatim copies;
* cells are corrected in four interleaved sub-passes (2x2 parity), so that every update sees
  freshly updated neighbours, and the neighbourhood of a tileable output wraps around (toroidal),
  so the result tiles by construction.

Everything is vectorised over the whole grid: it runs on the CPU and uses CUDA when
``mlvfx.config.torch_device()`` selects it. Arrays here are torch tensors ``(C, H, W)``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

_DIRS4: tuple[tuple[int, int], ...] = ((-1, 0), (0, -1), (0, 1), (1, 0))
_DIRS8: tuple[tuple[int, int], ...] = (*_DIRS4, (-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(frozen=True)
class SynthesisConfig:
    """Tuning of the coordinate-map synthesiser.

    Attributes:
        neighbourhood: side of the square neighbourhood compared at every level, in level cells (odd).
        pca_dims: neighbourhoods are projected onto this many principal components before matching.
        coarsest_exemplar: the number of levels is chosen so that the smallest exemplar spans about
            this many cells at the coarsest level; fewer cells mean larger random features.
        passes: correction passes at level 0 (full resolution), 1, 2, ...; the last entry
            applies to all coarser levels. 0 passes at full resolution keeps the coherent
            upsampling of level 1, which costs nothing and measured as good as a pass there.
        random_candidates: random-search samples per cell and sub-pass (radius halves each time).
        coherence: random-search candidates must beat the propagated (coherent) ones by this
            factor, i.e. their cost is multiplied by ``1 + coherence``; larger coherent copies
            look more natural (Ashikhmin-style coherence bias).
        jitter: standard deviation of a random coordinate perturbation after upsampling to level
            0, 1, 2, ... (last entry for all coarser levels), in level cells. It breaks up
            coherent copies (less verbatim repetition) at some cost in look.
        propagation: propagate from the 4 or the 8 neighbours of a cell.
        occurrence: weight of the penalty on over-used exemplar regions (relative to the mean
            feature energy); it keeps a mixed exemplar's mix instead of collapsing to its easiest
            material.
        guide_weight: weight of the label guide in ``paint`` relative to the mean feature energy.
    """

    neighbourhood: int = 5
    pca_dims: int = 16
    coarsest_exemplar: int = 8
    passes: tuple[int, ...] = (0, 1, 1, 4)
    random_candidates: int = 1
    coherence: float = 2.0
    coherence_coarse: float | None = None
    jitter: tuple[float, ...] = (0.0, 0.0, 0.0, 0.5)
    guide_weight: float = 2.0  # 1.0 until stop 25, when the occurrence penalty stopped inflating
    propagation: int = 4
    occurrence: float = 1.0


def _box_stack(image: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the ``size`` x ``size`` block whose top-left is each pixel; edges replicate. (C, H, W)."""
    if size == 1:
        return image
    x = F.pad(image[None], (0, size - 1, 0, size - 1), mode="replicate")
    x = F.avg_pool2d(x, (size, 1), stride=1)
    x = F.avg_pool2d(x, (1, size), stride=1)
    return x[0]


def _pca_filters(stacks: Sequence[torch.Tensor], n: int, dilation: int, dims: int, seed: int) -> torch.Tensor:
    """PCA of the dilated n x n neighbourhoods of ``stacks`` as conv filters (dims, C, n, n)."""
    samples = []
    gen = torch.Generator().manual_seed(seed)
    per = max(1, 6000 // len(stacks))
    for s in stacks:
        c, h, w = s.shape
        r = (n // 2) * dilation
        x = F.pad(s[None], (r, r, r, r), mode="replicate")[0]
        # a random sample of neighbourhoods, gathered directly (unfolding all of them is slow)
        count = min(per, h * w)
        pick = torch.randint(0, h * w, (count,), generator=gen).to(s.device)
        py, px = pick // w, pick % w
        d = torch.arange(n, device=s.device) * dilation
        rows = (py[None, :, None] + d[:, None, None]).expand(n, count, n)
        cols = (px[None, :, None] + d[None, None, :]).expand(n, count, n)
        samples.append(x[:, rows, cols].permute(0, 1, 3, 2).reshape(c * n * n, count))
    data = torch.cat(samples, 1).double()
    data = data - data.mean(1, keepdim=True)
    cov = data @ data.T / max(1, data.shape[1] - 1)
    # numpy's LAPACK: torch.linalg.eigh is 10-100x slower for these tiny matrices on a busy CPU
    _, vec = np.linalg.eigh(cov.cpu().numpy())
    eigvec = torch.from_numpy(vec).to(cov.device)
    k = min(dims, cov.shape[0])
    basis = eigvec[:, -k:].flip(1).T.float()  # (k, C*n*n), strongest first
    c = stacks[0].shape[0]
    filters: torch.Tensor = basis.reshape(k, c, n, n).contiguous()
    return filters


@dataclass
class _Level:
    values: torch.Tensor  # (C, Ha*Wa) box-filtered exemplar atlas, flattened
    features: torch.Tensor  # (d, Ha*Wa) PCA neighbourhood features of the atlas
    filters: torch.Tensor  # (d, C, n, n)
    energy: float  # mean squared feature distance between random exemplar pixels
    energies: torch.Tensor  # (count,) the same within each exemplar (pairs from one exemplar)


class _Levels:
    """The atlas's levels, built when first asked for; only the last one asked for is kept.

    Every level holds full-resolution features of the whole exemplar (a stack, not a pyramid):
    about ``pca_dims`` floats per exemplar pixel. Synthesis works one level at a time, coarse to
    fine, so keeping them all would multiply the peak memory by the level count (a 2048² exemplar
    held all ten at once).
    """

    keep_all = False
    """Keep every level built (the earlier behaviour; ``bench/texture_memory.py`` compares)."""

    def __init__(self, atlas: ExemplarAtlas, count: int) -> None:
        # A weak reference: a strong one made atlas and levels a reference cycle, so each call's
        # full-resolution features stayed alive until Python's cycle collector happened to run
        # (a farm loop of 1024² grows held 96 MB more per call, GBs before a collection).
        self._atlas = weakref.ref(atlas)
        self._count = count
        self._cached: tuple[int, _Level] | None = None
        self._all: dict[int, _Level] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, level: int) -> _Level:
        if not 0 <= level < self._count:
            raise IndexError(f"level {level} of {self._count}")
        atlas = self._atlas()
        if atlas is None:
            raise RuntimeError("the exemplar atlas of these levels is gone")
        if self.keep_all:
            if level not in self._all:
                self._all[level] = atlas.build_level(level)
            return self._all[level]
        if self._cached is None or self._cached[0] != level:
            self._cached = None  # release the previous level before building the next
            self._cached = (level, atlas.build_level(level))
        return self._cached[1]


class ExemplarAtlas:
    """One or more exemplars side by side; each synthesis level is prepared when it is reached.

    Args:
        exemplars: tensors (C, h_k, w_k), all with the same C, already scaled for matching.
        levels: number of levels (level 0 is full resolution).
        config: synthesis settings.
        seed: seed of the PCA sample.
    """

    def __init__(
        self, exemplars: Sequence[torch.Tensor], levels: int, config: SynthesisConfig, seed: int = 0
    ) -> None:
        self.device = exemplars[0].device
        self.channels = exemplars[0].shape[0]
        self.count = len(exemplars)
        heights = [int(e.shape[1]) for e in exemplars]
        widths = [int(e.shape[2]) for e in exemplars]
        self.height = max(heights)
        self.width = sum(widths)
        x0 = [sum(widths[:k]) for k in range(self.count)]
        # rects: y0, x0, h, w per exemplar
        self.rects = torch.tensor(
            [[0, x0[k], heights[k], widths[k]] for k in range(self.count)],
            dtype=torch.long,
            device=self.device,
        )
        ids = torch.zeros(self.height, self.width, dtype=torch.long, device=self.device)
        for k in range(self.count):
            ids[:, x0[k] : x0[k] + widths[k]] = k
        self.ids = ids.reshape(-1)
        self._exemplars = list(exemplars)
        self._config = config
        self._seed = seed
        self._x0 = x0
        self.levels = _Levels(self, levels)

    def build_level(self, level: int) -> _Level:
        """Values and PCA neighbourhood features of the whole atlas at ``level``."""
        config, seed = self._config, self._seed
        heights = [int(e.shape[1]) for e in self._exemplars]
        widths = [int(e.shape[2]) for e in self._exemplars]
        n = config.neighbourhood
        step = 2**level
        stacks = [_box_stack(e, step) for e in self._exemplars]
        filters = _pca_filters(stacks, n, step, config.pca_dims, seed + level)
        d = filters.shape[0]
        values = torch.zeros(self.channels, self.height, self.width, device=self.device)
        feats = torch.zeros(d, self.height, self.width, device=self.device)
        r = (n // 2) * step
        for k, s in enumerate(stacks):
            x0 = self._x0[k]
            values[:, : heights[k], x0 : x0 + widths[k]] = s
            padded = F.pad(s[None], (r, r, r, r), mode="replicate")
            feats[:, : heights[k], x0 : x0 + widths[k]] = F.conv2d(padded, filters, dilation=step)[0]
        del stacks
        flat = feats.reshape(d, -1)
        gen = torch.Generator().manual_seed(seed)
        valid = self.valid_flat_indices(level)
        a = valid[torch.randint(0, valid.numel(), (4096,), generator=gen).to(self.device)]
        b = valid[torch.randint(0, valid.numel(), (4096,), generator=gen).to(self.device)]
        energy = float(((flat[:, a] - flat[:, b]) ** 2).sum(0).mean().clamp_min(1e-12))
        energies = torch.full((self.count,), energy, device=self.device)
        if self.count > 1:
            # Pairs across two unlike exemplars (brick and grass) inflate the atlas-wide energy; the
            # occurrence penalty scaled by it outweighed matching within an exemplar and broke a
            # structured one into speckle. Each exemplar's own energy scales its own penalty.
            ids = self.ids[valid]
            for k in range(self.count):
                own = valid[ids == k]
                a = own[torch.randint(0, own.numel(), (4096,), generator=gen).to(self.device)]
                b = own[torch.randint(0, own.numel(), (4096,), generator=gen).to(self.device)]
                energies[k] = ((flat[:, a] - flat[:, b]) ** 2).sum(0).mean().clamp_min(1e-12)
        return _Level(values.reshape(self.channels, -1), flat.contiguous(), filters, energy, energies)

    def valid_flat_indices(self, level: int) -> torch.Tensor:
        """Flat indices of every coordinate a level may copy from (blocks fully inside an exemplar)."""
        out = []
        step = 2**level
        for y0, x0, h, w in self.rects.tolist():
            ys = torch.arange(y0, y0 + max(1, h - step + 1), device=self.device)
            xs = torch.arange(x0, x0 + max(1, w - step + 1), device=self.device)
            out.append((ys[:, None] * self.width + xs[None, :]).reshape(-1))
        return torch.cat(out)

    def clamp(self, y: torch.Tensor, x: torch.Tensor, k: torch.Tensor | None, level: int) -> torch.Tensor:
        """Clamp coordinates into exemplar ``k`` (per element; None = exemplar 0), as flat indices."""
        step = 2**level
        if k is None or self.count == 1:
            y0, x0, h, w = self.rects[0].tolist()
            y = y.clamp(y0, y0 + max(0, h - step))
            x = x.clamp(x0, x0 + max(0, w - step))
        else:
            r = self.rects[k]  # (..., 4)
            lo_y, lo_x = r[..., 0], r[..., 1]
            y = torch.minimum(torch.maximum(y, lo_y), lo_y + (r[..., 2] - step).clamp_min(0))
            x = torch.minimum(torch.maximum(x, lo_x), lo_x + (r[..., 3] - step).clamp_min(0))
        return y * self.width + x

    def exemplar_of(self, flat: torch.Tensor) -> torch.Tensor | None:
        """Exemplar index of flat coordinates (None when there is only one exemplar)."""
        return None if self.count == 1 else self.ids[flat]

    def random_coords(
        self, k: torch.Tensor | None, shape: tuple[int, ...], level: int, gen: torch.Generator
    ) -> torch.Tensor:
        """Uniform random flat coordinates inside exemplar ``k`` (per element) at ``level``."""
        step = 2**level
        u = torch.rand((2, *shape), generator=gen).to(self.device)
        if k is None or self.count == 1:
            y0, x0, h, w = self.rects[0].tolist()
            y = y0 + (u[0] * max(1, h - step + 1)).long()
            x = x0 + (u[1] * max(1, w - step + 1)).long()
            return self.clamp(y, x, None, level)
        r = self.rects[k]
        y = r[..., 0] + (u[0] * (r[..., 2] - step + 1).clamp_min(1)).long()
        x = r[..., 1] + (u[1] * (r[..., 3] - step + 1).clamp_min(1)).long()
        return self.clamp(y, x, k, level)


def level_count(exemplar_min_side: int, out_h: int, out_w: int, config: SynthesisConfig) -> int:
    """How many levels to use: the exemplar spans ~``coarsest_exemplar`` cells at the top."""
    by_exemplar = math.floor(math.log2(max(1.0, exemplar_min_side / config.coarsest_exemplar)))
    by_output = math.floor(math.log2(max(1.0, min(out_h, out_w) / 4)))
    return max(1, min(by_exemplar, by_output) + 1)


def _pad(x: torch.Tensor, r: int, tileable: bool) -> torch.Tensor:
    if r == 0:
        return x
    dtype = x.dtype
    y = x[None].float() if not x.dtype.is_floating_point else x[None]
    y = F.pad(y, (r, r, r, r), mode="circular" if tileable else "replicate")
    return y[0].to(dtype)


def _pad_long(x: torch.Tensor, r: int, tileable: bool) -> torch.Tensor:
    """Pad an integer (H, W) map by ``r`` cells, wrapping or replicating (float pad would round)."""
    h, w = x.shape
    if tileable:
        iy = torch.arange(-r, h + r, device=x.device) % h
        ix = torch.arange(-r, w + r, device=x.device) % w
    else:
        iy = torch.arange(-r, h + r, device=x.device).clamp(0, h - 1)
        ix = torch.arange(-r, w + r, device=x.device).clamp(0, w - 1)
    return x[iy][:, ix]


def synthesize(
    atlas: ExemplarAtlas,
    size: tuple[int, int],
    *,
    config: SynthesisConfig,
    tileable: bool,
    seed: int,
    fixed: torch.Tensor | None = None,
    fixed_coords: torch.Tensor | None = None,
    guide: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """Synthesise a coordinate map into ``atlas``.

    Args:
        atlas: the prepared exemplar(s); its level count sets the pyramid depth.
        size: output (H, W).
        config: synthesis settings.
        tileable: the output wraps around (toroidal neighbourhoods), so it tiles seamlessly.
        seed: random seed; a different seed gives a different result.
        fixed: optional bool (H, W), True where the output is pinned to ``fixed_coords``.
        fixed_coords: long (H, W) flat atlas coordinates for the pinned pixels.
        guide: optional float (K, H, W) soft label map for ``paint`` (K = number of exemplars); a
            pixel prefers exemplar k in proportion to ``guide[k]``.
        progress: called with (fraction, message).
        cancel: checked between sub-passes.

    Returns:
        long (H, W) flat coordinates into the atlas (``y * atlas.width + x``).
    """
    out_h, out_w = size
    levels = len(atlas.levels)
    gen = torch.Generator().manual_seed(int(seed))
    dev = atlas.device
    n = config.neighbourhood
    r = n // 2
    coords: torch.Tensor | None = None
    # Patch boundaries cluster on the coarse-cell grid (coherent upsampling keeps whole cells
    # together). A tileable output is a torus, so its wrap border can be anywhere: synthesise in a
    # domain shifted by an odd offset, so that the border lies off that grid like any other line.
    shift = (max(0, 2 ** (levels - 2) - 1),) * 2 if tileable and levels > 1 else (0, 0)
    if shift != (0, 0):
        fixed = None if fixed is None else torch.roll(fixed, shift, (0, 1))
        fixed_coords = None if fixed_coords is None else torch.roll(fixed_coords, shift, (0, 1))
        guide = None if guide is None else torch.roll(guide, shift, (1, 2))
    work = [
        math.ceil(out_h / 2**lv) * math.ceil(out_w / 2**lv) * _passes(lv, levels, config)
        for lv in range(levels)
    ]
    total = float(sum(work)) or 1.0
    work = [max(w, 1) for w in work]
    done = 0.0
    for level in range(levels - 1, -1, -1):
        step = 2**level
        lh, lw = math.ceil(out_h / step), math.ceil(out_w / step)
        fixed_l, fixed_c = _fixed_at_level(fixed, fixed_coords, step, (lh, lw))
        guide_l, label_l = _guide_at_level(guide, step, (lh, lw))
        if coords is None:
            coords = atlas.random_coords(label_l, (lh, lw), level, gen)
        else:
            coords = _upsample(coords, atlas, (lh, lw), level)
            amount = config.jitter[min(level, len(config.jitter) - 1)]
            if amount > 0 and (fixed_l is None or not bool(fixed_l.all())):
                coords = _jitter(coords, atlas, level, amount, gen)
        if fixed_l is not None and fixed_c is not None:
            coords = torch.where(fixed_l, fixed_c, coords)
        lvl = atlas.levels[level]
        gpen = None
        if guide_l is not None:
            # ||g(p) - onehot(k)||^2 for every exemplar k, scaled against the feature energy
            sq = (guide_l**2).sum(0, keepdim=True)
            gpen = (sq - 2 * guide_l + 1) * (config.guide_weight * lvl.energy)
        passes = _passes(level, levels, config)
        if passes == 0 and level < levels - 1 and tileable:
            # An odd size here is the coarser grid doubled and cropped by a row (or column): on the
            # torus that row meets row 0 without being coherent with it, a straight seam through
            # the whole texture that a level without passes would keep. Re-match a band across it.
            lh_up, lw_up = math.ceil(out_h / 2 ** (level + 1)) * 2, math.ceil(out_w / 2 ** (level + 1)) * 2
            occ = _occurrence_penalty(coords, atlas, level, config) if config.occurrence > 0 else None
            extras = (fixed_l, gpen, label_l, occ)
            for axis, cropped in ((0, lh_up != lh), (1, lw_up != lw)):
                if cropped:
                    coords = _repair_wrap_band(
                        coords, atlas, level, r, config, gen, extras, axis=axis, cancel=cancel
                    )
        if passes == 0:
            report(progress, done / total, f"synthesis level {level}")
        for p in range(passes):
            occ = _occurrence_penalty(coords, atlas, level, config) if config.occurrence > 0 else None
            for py, px in ((0, 0), (1, 1), (0, 1), (1, 0)):
                check_cancel(cancel)
                coords = _correct(
                    coords, atlas, level, (py, px), r, tileable, config, gen, fixed_l, gpen, label_l, occ
                )
            done += work[level] / passes
            report(progress, done / total, f"synthesis level {level} pass {p + 1}/{passes}")
        del lvl, gpen  # so the atlas can drop this level before it builds the next
    assert coords is not None
    if shift != (0, 0):
        coords = torch.roll(coords, (-shift[0], -shift[1]), (0, 1))
    return coords.to(dev)


SEAM_SWEEPS = 4
"""Correction sweeps (4 sub-passes each) over the band across a cropped wrap line."""


def _repair_wrap_band(
    coords: torch.Tensor,
    atlas: ExemplarAtlas,
    level: int,
    r: int,
    config: SynthesisConfig,
    gen: torch.Generator,
    extras: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    *,
    axis: int,
    cancel: CancelToken | None,
) -> torch.Tensor:
    """Re-match the cells within a few neighbourhoods of the wrap line along ``axis`` (0: the line
    between the last row and row 0; 1: between the last column and column 0) of a torus.

    The torus is rolled so the line lies mid-band; the band is corrected as a torus of its own, so
    its far edges wrap onto each other and see wrong neighbourhoods: only cells within ``keep`` of
    the line, whose neighbourhoods lie inside the band, are written back. Where the written-back
    part ends, the re-matched cells meet cells that were not; a straight edge there would be two
    weaker lines for the one removed, so each edge wanders (a random walk across the texture).
    """
    fixed, gpen, label, occ = extras
    size = coords.shape[axis]
    keep_min = r + 1
    keep = 2 * r + 2  # at most this many cells each side of the line are written back
    half = 2 * keep + r  # band half-height: every kept cell's neighbourhood, and its propagation
    half += half % 2  # the band starts on an even cell, so parities match the full grid's
    if 2 * half >= size:  # a small texture: the band would be all of it; one full sweep instead
        half = 0
    mid = size // 2
    mid -= mid % 2
    roll = mid  # cell 0 moves to mid, the last cell to mid - 1: the line lies mid-band

    def spatial(x: torch.Tensor | None, dim: int) -> torch.Tensor | None:
        if x is None:
            return None
        x = torch.roll(x, roll, dim)
        return x if half == 0 else x.narrow(dim, mid - half, 2 * half)

    band = spatial(coords, axis)
    assert band is not None
    f_b = spatial(fixed, axis)
    g_b = spatial(gpen, axis + 1)
    l_b = spatial(label, axis)
    for _ in range(SEAM_SWEEPS):
        for parity in ((0, 0), (1, 1), (0, 1), (1, 0)):
            check_cancel(cancel)
            band = _correct(band, atlas, level, parity, r, True, config, gen, f_b, g_b, l_b, occ)
    out = torch.roll(coords, roll, axis)
    if half == 0:
        out = band
    else:
        length = coords.shape[1 - axis]

        def edge() -> torch.Tensor:  # cells kept on one side, per cell along the line
            walk = torch.randint(-1, 2, (length,), generator=gen).cumsum(0) + (keep_min + keep) // 2
            return walk.clamp(keep_min, keep).to(coords.device)

        before, after = edge(), edge()
        across = torch.arange(2 * half, device=coords.device)
        if axis == 0:
            take = (across[:, None] >= half - before[None, :]) & (across[:, None] < half + after[None, :])
        else:
            take = (across[None, :] >= half - before[:, None]) & (across[None, :] < half + after[:, None])
        region = out.narrow(axis, mid - half, 2 * half)
        region.copy_(torch.where(take, band, region))
    return torch.roll(out, -roll, axis)


def _occurrence_penalty(
    coords: torch.Tensor, atlas: ExemplarAtlas, level: int, config: SynthesisConfig
) -> torch.Tensor:
    """Per exemplar pixel, a cost for copying from regions the output already over-uses.

    Matching alone favours "easy" regions (flat, low-contrast ones match almost any neighbourhood),
    and coherent propagation lets them spread until the output is one material of a mixed
    exemplar. Counting how often each neighbourhood-sized region of the exemplar is copied and
    penalising use beyond the uniform share keeps the output's mix like the exemplar's (the
    occurrence control of Kaspar et al. 2015, "Self tuning texture optimization").
    """
    step = 2**level
    ha, wa = atlas.height, atlas.width
    counts = torch.bincount(coords.reshape(-1), minlength=ha * wa).to(torch.float32).reshape(1, 1, ha, wa)
    k = config.neighbourhood * step
    # k x k window sums by running sums (k reaches 160 cells; pooling would cost k per pixel)
    c = F.pad(counts.double(), (k // 2, k - 1 - k // 2, k // 2, k - 1 - k // 2)).cumsum(2)
    c = F.pad(c, (0, 0, 1, 0))
    c = (c[:, :, k:] - c[:, :, :-k]).cumsum(3)
    c = F.pad(c, (1, 0, 0, 0))
    local = ((c[:, :, :, k:] - c[:, :, :, :-k]) / float(k * k)).float().reshape(-1)
    valid = torch.zeros(ha * wa, device=coords.device)
    valid[atlas.valid_flat_indices(level)] = 1.0
    if atlas.count == 1:
        expected = coords.numel() / float(valid.sum())
        ratio = local / expected
    else:
        used = torch.bincount(atlas.ids[coords.reshape(-1)], minlength=atlas.count).to(torch.float32)
        area = torch.bincount(atlas.ids, weights=valid, minlength=atlas.count).clamp_min(1.0)
        ratio = local / (used / area).clamp_min(1e-6)[atlas.ids]
    if atlas.count == 1:
        return (ratio - 1.0).clamp_min(0.0) * (config.occurrence * atlas.levels[level].energy)
    scale = atlas.levels[level].energies[atlas.ids] * config.occurrence  # each exemplar's own
    return (ratio - 1.0).clamp_min(0.0) * scale


def _passes(level: int, levels: int, config: SynthesisConfig) -> int:
    return config.passes[min(level, len(config.passes) - 1)]


def _fixed_at_level(
    fixed: torch.Tensor | None, fixed_coords: torch.Tensor | None, step: int, shape: tuple[int, int]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if fixed is None or fixed_coords is None:
        return None, None
    if step == 1:
        return fixed, fixed_coords
    # a cell is pinned only if its whole block is; its coordinate is the block's top-left one
    free = F.max_pool2d((~fixed).float()[None, None], step, stride=step, ceil_mode=True)[0, 0] > 0
    return ~free[: shape[0], : shape[1]], fixed_coords[::step, ::step][: shape[0], : shape[1]]


def _guide_at_level(
    guide: torch.Tensor | None, step: int, shape: tuple[int, int]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if guide is None:
        return None, None
    g = guide if step == 1 else F.avg_pool2d(guide[None], step, stride=step, ceil_mode=True)[0]
    g = g[:, : shape[0], : shape[1]].contiguous()
    return g, g.argmax(0)


def _upsample(coords: torch.Tensor, atlas: ExemplarAtlas, shape: tuple[int, int], level: int) -> torch.Tensor:
    """Coherent upsampling: child (2i+a, 2j+b) copies parent (i, j) shifted by (a, b) * 2**level."""
    step = 2**level
    y, x = coords // atlas.width, coords % atlas.width
    y = y.repeat_interleave(2, 0).repeat_interleave(2, 1)[: shape[0], : shape[1]]
    x = x.repeat_interleave(2, 0).repeat_interleave(2, 1)[: shape[0], : shape[1]]
    ay = (torch.arange(shape[0], device=coords.device) % 2)[:, None] * step
    ax = (torch.arange(shape[1], device=coords.device) % 2)[None, :] * step
    ids = atlas.exemplar_of(coords)
    k = None if ids is None else ids.repeat_interleave(2, 0).repeat_interleave(2, 1)[: shape[0], : shape[1]]
    return atlas.clamp(y + ay, x + ax, k, level)


def _jitter(
    coords: torch.Tensor, atlas: ExemplarAtlas, level: int, amount: float, gen: torch.Generator
) -> torch.Tensor:
    step = 2**level
    y, x = coords // atlas.width, coords % atlas.width
    j = (torch.randn((2, *coords.shape), generator=gen) * amount).round().long().to(coords.device) * step
    return atlas.clamp(y + j[0], x + j[1], atlas.exemplar_of(coords), level)


def _correct(
    coords: torch.Tensor,
    atlas: ExemplarAtlas,
    level: int,
    parity: tuple[int, int],
    r: int,
    tileable: bool,
    config: SynthesisConfig,
    gen: torch.Generator,
    fixed: torch.Tensor | None,
    gpen: torch.Tensor | None,
    label: torch.Tensor | None,
    occ: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sub-pass: re-match the cells of one 2x2 parity class against their candidates."""
    py, px = parity
    lh, lw = coords.shape
    if py >= lh or px >= lw:
        return coords
    step = 2**level
    lvl = atlas.levels[level]
    width = atlas.width
    # synthesised neighbourhood features at this parity's cells (strided conv = only those cells)
    values = lvl.values.index_select(1, coords.reshape(-1)).reshape(-1, lh, lw)
    padded = _pad(values, r, tileable)
    feat = F.conv2d(padded[None, :, py:, px:], lvl.filters, stride=2)[0]
    hs, ws = feat.shape[1:]
    feat = feat.reshape(feat.shape[0], -1)
    cur = coords[py::2, px::2].reshape(-1)

    def cost(flat: torch.Tensor) -> torch.Tensor:
        diff = lvl.features.index_select(1, flat)
        diff.sub_(feat).square_()  # in place: this is the hot loop
        c = diff.sum(0)
        if occ is not None:
            c += occ.index_select(0, flat)
        ids = atlas.exemplar_of(flat)
        if gpen is not None and ids is not None:
            g = gpen[:, py::2, px::2].reshape(gpen.shape[0], -1)
            c = c + g.gather(0, ids[None])[0]
        return c

    best = cur
    best_cost = cost(cur)

    def consider(cand: torch.Tensor, factor: float = 1.0, valid: torch.Tensor | None = None) -> None:
        nonlocal best, best_cost
        c = cost(cand) * factor
        better = c < best_cost
        if valid is not None:
            better &= valid
        best = torch.where(better, cand, best)
        best_cost = torch.where(better, c, best_cost)

    cpad = _pad_long(coords, 1, tileable)
    for dy, dx in _DIRS8 if config.propagation == 8 else _DIRS4:
        q = cpad[1 + py + dy :: 2, 1 + px + dx :: 2][:hs, :ws].reshape(-1)
        qy, qx = q // width, q % width
        ty, tx = qy - dy * step, qx - dx * step
        cand = atlas.clamp(ty, tx, atlas.exemplar_of(q), level)
        # a propagated match that would leave the exemplar is dropped, not clamped: clamping
        # repeats the exemplar's edge row or column and shows as streaks
        consider(cand, valid=cand == ty * width + tx)
    by, bx = best // width, best % width
    coherence = config.coherence
    if level >= 3 and config.coherence_coarse is not None:
        coherence = config.coherence_coarse
    radius = float(max(atlas.height, atlas.width // atlas.count))
    for _ in range(config.random_candidates):
        radius = max(radius / 2.0, float(step))
        off = ((torch.rand((2, by.numel()), generator=gen) * 2 - 1) * radius).round().long().to(best.device)
        ty, tx = by + off[0], bx + off[1]
        cand = atlas.clamp(ty, tx, atlas.exemplar_of(best), level)
        consider(cand, 1.0 + coherence, valid=cand == ty * width + tx)
    if label is not None and atlas.count > 1:
        lab = label[py::2, px::2].reshape(-1)
        consider(atlas.random_coords(lab, (lab.numel(),), level, gen).reshape(-1))
    if fixed is not None:
        best = torch.where(fixed[py::2, px::2].reshape(-1), cur, best)
    out = coords.clone()
    out[py::2, px::2] = best.reshape(hs, ws)
    return out
