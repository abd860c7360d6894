"""The learned smoke surrogate (Solver-in-the-Loop, Um et al. 2020).

The surrogate runs the reference solver on a grid ``factor`` (default 4) times coarser per axis
and adds a small CNN correction after every coarse step; for display, the coarse density is
brought back to the output resolution. Here:

* transfer operators between the fine and the coarse grid: :func:`restrict_density` (cell
  averages, conserves total density), :func:`restrict_faces` (face-flux averages, which keep a
  discretely divergence-free field divergence-free on the coarse grid), :func:`restrict_mask`
  and :func:`prolong_density`;
* :class:`CorrectionNet`, whose last layer starts at zero so an untrained surrogate *is* the
  coarse-only baseline: mirror-averaged, or mirror-equivariant by construction
  (:class:`MirrorConv`), optionally mass-conserving;
* :class:`SurrogateSolver`, the corrected coarse step (differentiable end to end for training;
  the projection's gradient is the projection itself, :class:`AdjointProjection`);
* :func:`unrolled_loss`, the Solver-in-the-Loop objective: unroll ``k`` corrected steps from a
  noise-perturbed reference state and compare with the restricted reference trajectory;
* :class:`SurrogateStepper` and :func:`load_stepper` / :func:`load_surrogate`: the zoo's trained
  models behind the numpy interface hosts call;
* :class:`UpresNet`, the learned upres that brings the coarse density back to output resolution
  (a sub-pixel CNN on the coarse grid: a gain on the bicubic/trilinear upsampling), stored in the
  same weights file as the correction (keys ``upres.*``); :meth:`SurrogateSolver.output_density`.

Training lives in :mod:`mlvfx.train.smoke` (``mlvfx train smoke2d|smoke3d``).
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from mlvfx.errors import InputError, ModelNotFound
from mlvfx.fluids.grid import Faces, centre_to_faces, comp_dim, faces_to_centre
from mlvfx.fluids.pressure import Projection
from mlvfx.fluids.reference import (
    Array,
    HostStepper,
    OpenInflow,
    PreparedSource,
    ReferenceSolver,
    SmokeConfig,
    Source,
    check_source_outside,
)

__all__ = [
    "INFERENCE_OPEN_INFLOW",
    "SMOKE_MODELS_ENV",
    "CorrectionNet",
    "SurrogateSolver",
    "SurrogateStepper",
    "UpresNet",
    "coarse_config",
    "condition_values",
    "load_stepper",
    "load_surrogate",
    "pinned_smoke_version",
    "prolong_density",
    "restrict_density",
    "restrict_faces",
    "restrict_mask",
    "surrogate_from_state",
    "surrogate_state",
    "unrolled_loss",
]


def _check_factor(shape: Sequence[int], factor: int) -> None:
    if factor < 1 or any(n % factor for n in shape):
        raise InputError(f"grid {tuple(shape)} is not divisible by the coarsening factor {factor}")


def restrict_density(density: torch.Tensor, factor: int) -> torch.Tensor:
    """Average ``factor**d`` fine cells into one coarse cell; ``(Y, X)`` or ``(Z, Y, X)``.

    The total density times cell volume is unchanged.
    """
    _check_factor(density.shape, factor)
    pool = F.avg_pool2d if density.dim() == 2 else F.avg_pool3d
    return pool(density[None, None], factor)[0, 0]


def restrict_mask(mask: Array, factor: int) -> Array:
    """Average a [0, 1] fine mask (source coverage, obstacle fraction) onto the coarse grid."""
    t = torch.as_tensor(mask, dtype=torch.float64)
    return restrict_density(t, factor).numpy()


def restrict_faces(vel: Faces, factor: int) -> Faces:
    """Coarse face velocities that carry the same fluxes as the fine faces they cover.

    Component ``c`` keeps every ``factor``-th face along its own axis and averages the
    ``factor**(d-1)`` fine faces across it. The coarse divergence of a cell is then the sum of
    the fine divergences inside it divided by ``factor**(d-1)``, so a discretely divergence-free
    fine field stays divergence-free.
    """
    ndim = len(vel)
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        v = vel[c]
        n = v.shape[dim] - 1
        _check_factor([n], factor)
        index = torch.arange(0, n + 1, factor, device=v.device)
        v = v.index_select(dim, index)
        kernel = [1 if d == dim else factor for d in range(ndim)]
        pool = F.avg_pool2d if ndim == 2 else F.avg_pool3d
        out.append(pool(v[None, None], kernel)[0, 0])
    return out


@functools.lru_cache(maxsize=16)
def bicubic_matrix(n: int, factor: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(n * factor, n)`` matrix ``W`` with ``W @ x`` = torch's 1D bicubic upsampling of ``x``.

    The same kernel as ``F.interpolate(mode="bicubic", align_corners=False)``: Keys' cubic with
    a = -0.75, taps clamped at the borders. Cached per size, dtype and device.
    """
    a = -0.75
    out = torch.arange(n * factor, dtype=torch.float64)
    src = (out + 0.5) / factor - 0.5
    base = torch.floor(src)
    t = src - base

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    w = torch.zeros(n * factor, n, dtype=torch.float64)
    for k, tap in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))):
        index = (base.long() - 1 + k).clamp(0, n - 1)
        w.index_put_((out.long(), index), tap, accumulate=True)
    return w.to(dtype=dtype, device=device)


def prolong_density(coarse: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample a coarse density to the fine grid: bicubic in 2D, trilinear in 3D, clamped at 0.

    2D runs as two small matrix products with cached bicubic weights (:func:`bicubic_matrix`):
    the same numbers as ``F.interpolate`` to float rounding, about 5x faster at 64² → 256² on a
    CPU (``bench/smoke_step_profile.py``).
    """
    if coarse.dim() == 2:
        wy = bicubic_matrix(coarse.shape[0], factor, coarse.dtype, coarse.device)
        wx = bicubic_matrix(coarse.shape[1], factor, coarse.dtype, coarse.device)
        return torch.mm(torch.mm(wy, coarse), wx.T).clamp_(min=0.0)
    out = F.interpolate(coarse[None, None], scale_factor=factor, mode="trilinear", align_corners=False)
    return out[0, 0].clamp(min=0.0)


def prolong_velocity(vel: Faces, factor: int) -> torch.Tensor:
    """Coarse face velocities to cell-centred velocity ``(dims, *fine)`` at ``factor`` times the
    resolution, by linear (bilinear / trilinear) interpolation; a learned velocity upres adds its
    correction to this (:meth:`SurrogateSolver.output_velocity`)."""
    return prolong_centred(torch.stack(faces_to_centre(vel)), factor)


def prolong_centred(centred: torch.Tensor, factor: int) -> torch.Tensor:
    """Cell-centred velocity ``(dims, *coarse)`` linearly upsampled ``factor`` times."""
    mode = "bilinear" if centred.dim() == 3 else "trilinear"
    fine: torch.Tensor = F.interpolate(centred[None], scale_factor=factor, mode=mode, align_corners=False)[0]
    return fine


def coarse_config(config: SmokeConfig, factor: int = 4) -> SmokeConfig:
    """The same shot on a grid ``factor`` times coarser per axis (same physical parameters)."""
    _check_factor(config.shape, factor)
    shape = tuple(n // factor for n in config.shape)
    return replace(config, shape=shape)


class MirrorConv(nn.Module):
    """A 3-tap convolution that commutes with the X mirror, for channels that are even or odd.

    Under the mirror ``M`` (flip the last axis, negate the odd channels, such as the X velocity)
    an even-to-even or odd-to-odd kernel must be symmetric in X and an even-to-odd or odd-to-even
    one antisymmetric; odd outputs get no bias. With ``perm`` the mirror also swaps output
    channels (``perm[o]`` is the partner of ``o``: the sub-cells of an upres head), and the
    kernel of ``perm[o]`` is the mirrored kernel of ``o``. The kernel is projected onto that
    subspace at every call, so ``conv(M x) = M conv(x)`` holds exactly (zero padding is
    mirror-symmetric too) and one pass costs what a plain convolution costs: half of mirror
    averaging.
    """

    parity: torch.Tensor
    bias_sign: torch.Tensor
    perm: torch.Tensor

    def __init__(
        self,
        dims: int,
        odd_in: Sequence[bool],
        odd_out: Sequence[bool],
        perm: Sequence[int] | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if dilation < 1:
            raise InputError(f"a MirrorConv dilation must be >= 1, got {dilation}")
        shape = (len(odd_out), len(odd_in)) + (3,) * dims
        base = (nn.Conv2d if dims == 2 else nn.Conv3d)(len(odd_in), len(odd_out), 3, padding=1)
        self.weight = nn.Parameter(base.weight.detach().clone().reshape(shape))
        self.bias = nn.Parameter(base.bias.detach().clone())  # type: ignore[union-attr]
        o = torch.tensor([1.0 if b else 0.0 for b in odd_out])
        i = torch.tensor([1.0 if b else 0.0 for b in odd_in])
        parity = 1.0 - 2.0 * (o[:, None] - i[None, :]).abs()  # +1 same parity, -1 mixed
        self.register_buffer("parity", parity.reshape(parity.shape + (1,) * dims), persistent=False)
        self.register_buffer("bias_sign", 1.0 - 2.0 * o, persistent=False)
        index = list(range(len(odd_out))) if perm is None else [int(k) for k in perm]
        if sorted(index) != list(range(len(odd_out))) or any(index[index[k]] != k for k in index):
            raise InputError("a MirrorConv output permutation must be an involution")
        self.register_buffer("perm", torch.tensor(index), persistent=False)
        self.dims = dims
        self.dilation = dilation
        self._cache: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None

    def kernel(self) -> torch.Tensor:
        return 0.5 * (self.weight + self.parity * self.weight.flip(-1)[self.perm])

    def projected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected ``(kernel, bias)``; cached while no gradient is taken (inference).

        The cache is keyed on the parameters' identity, version counters (bumped by optimiser
        steps and ``load_state_dict``), device and dtype, so it never serves stale weights.
        """
        grad = torch.is_grad_enabled()
        w, b = self.weight, self.bias
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version, w.dtype, w.device)
        if not grad and self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        kernel = self.kernel()
        bias = 0.5 * (b + self.bias_sign * b[self.perm])
        if not grad:
            self._cache = (key, kernel, bias)
        return kernel, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.projected()
        return _conv(x, kernel, bias, self.dilation)


_ONEDNN = bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """A stride-1, 'same' 3-tap convolution (dilated by ``dilation``); oneDNN directly for float32 on the CPU.

    PyTorch's dispatcher keeps batch-1 3D convolutions with few channels and slices on its naive
    kernel (16x slower at 32^3 x 16 channels: ``bench/conv_onednn.py``); calling oneDNN directly
    avoids that. Float64 (tests), CUDA and ``torch.compile`` (which cannot trace the direct call
    and picks its own kernels) take the ordinary path.
    """
    dims = x.dim() - 2
    if x.device.type == "cpu" and x.dtype == torch.float32 and _ONEDNN and not torch.compiler.is_compiling():
        ones, pad = (1,) * dims, (dilation,) * dims
        out: torch.Tensor = torch.mkldnn_convolution(x, weight, bias, pad, ones, pad, 1)
        return out
    conv = F.conv2d if dims == 2 else F.conv3d
    return conv(x, weight, bias, padding=dilation, dilation=dilation)


class MirrorAct(nn.Module):
    """GELU on even channels, tanh (an odd function) on odd ones: the mirror commutes with it."""

    odd: torch.Tensor

    def __init__(self, odd: Sequence[bool], dims: int) -> None:
        super().__init__()
        flags = [bool(b) for b in odd]
        mask = torch.tensor(flags).reshape((1, -1) + (1,) * dims)
        self.register_buffer("odd", mask, persistent=False)
        # Hidden layers put their odd channels last: then each function runs on its half only.
        first_odd = flags.index(True) if True in flags else len(flags)
        self._split = first_odd if all(flags[first_odd:]) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self._split
        if k is None:
            return torch.where(self.odd, torch.tanh(x), F.gelu(x))
        return torch.cat([F.gelu(x[:, :k]), torch.tanh(x[:, k:])], dim=1)


def _subcell_mirror(factor: int, dims: int) -> list[int]:
    """For sub-cell channel ``c`` (X fastest) of an upres head, the channel the X mirror maps it to."""
    out = []
    for c in range(factor**dims):
        sx = c % factor
        out.append(c - sx + factor - 1 - sx)
    return out


def shuffle_up(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, factor**d, *coarse)`` -> ``(B, 1, *fine)``: sub-cell channels to fine cells (X fastest)."""
    if x.dim() == 4:
        return F.pixel_shuffle(x, factor)
    b, _, z, y, xx = x.shape
    f = factor
    fine = x.reshape(b, f, f, f, z, y, xx).permute(0, 4, 1, 5, 2, 6, 3)
    return fine.reshape(b, 1, z * f, y * f, xx * f)


def upres_layers(dims: int, width: int, depth: int, conditions: int) -> tuple[list[nn.Module], list[bool]]:
    """The hidden layers of an upres net on the coarse grid, and the parity of their ``width`` output
    channels (odd last): the coarse state's channels (as :meth:`SurrogateSolver.inputs` stacks
    them; the X velocity is odd under the X mirror) through ``depth - 1`` mirror-equivariant
    3-tap convolutions. A head on top maps them to the sub-cells."""
    channels_in = 1 + dims + 2 + conditions
    odd_in = [c == 1 for c in range(channels_in)]
    hidden = [c >= width // 2 for c in range(width)]
    layers: list[nn.Module] = [MirrorConv(dims, odd_in, hidden), MirrorAct(hidden, dims)]
    for _ in range(depth - 2):
        layers += [MirrorConv(dims, hidden, hidden), MirrorAct(hidden, dims)]
    return layers, hidden


def upres_body(
    dims: int, width: int, depth: int, conditions: int, odd_out: Sequence[bool], perm: Sequence[int]
) -> nn.Sequential:
    """:func:`upres_layers` plus a zero-initialised sub-cell head (channels ``odd_out``, which the
    mirror permutes by ``perm``): untrained, an upres built on it changes nothing."""
    layers, hidden = upres_layers(dims, width, depth, conditions)
    head = MirrorConv(dims, hidden, list(odd_out), perm=list(perm))
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class UpresNet(nn.Module):
    """The learned upres: a coarse surrogate state -> the density at output resolution.

    It reads the same channels as :class:`CorrectionNet` on the coarse grid and predicts, for
    every coarse cell, a gain for each of the ``factor**d`` fine cells inside it (a sub-pixel
    head) on the bicubic (2D) / trilinear (3D) upsampling (:meth:`upsample`). All convolutions
    run on the coarse grid, so it costs about what one correction costs. Mirror-equivariant by
    construction (the head's sub-cells swap under the mirror), and zero-initialised: untrained,
    it *is* the smooth upsampling.
    """

    def __init__(self, dims: int, factor: int, width: int = 12, depth: int = 3, conditions: int = 0) -> None:
        super().__init__()
        if dims not in (2, 3) or factor < 2 or width < 2 or depth < 2:
            raise InputError(f"bad UpresNet: dims {dims}, factor {factor}, width {width}, depth {depth}")
        odd_out = [False] * factor**dims
        self.body = upres_body(dims, width, depth, conditions, odd_out, _subcell_mirror(factor, dims))
        self.dims = dims
        self.factor = factor
        self.width = width
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, *coarse)`` -> the relative gain ``(B, 1, *fine)`` on the smooth upsampling."""
        return shuffle_up(self.body(x), self.factor)

    def upsample(self, smooth: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The upres density: ``max(0, smooth * (1 + gain))``, same shape as ``smooth``.

        Multiplicative, so smoke appears only where the smooth upsampling already has some: an
        additive residual left faint sub-cell ghosts in empty space (visible in renders).
        """
        gain: torch.Tensor = self(x).reshape(smooth.shape)
        return (smooth * (1.0 + gain)).clamp(min=0.0)


class VelocityUpres(nn.Module):
    """The learned velocity upres: a coarse surrogate state -> the velocity at output resolution.

    :class:`UpresNet`'s design (the same hidden layers, :func:`upres_layers`) with a sub-cell head
    of ``dims x factor**d`` channels: for every fine cell a correction of each cell-centred
    velocity component, added to the linear upsampling hosts got before
    (:func:`prolong_velocity`). The X component is odd under the X mirror, so the net commutes
    with it like the solver. Zero-initialised: untrained, it *is* the linear upsampling.
    """

    def __init__(self, dims: int, factor: int, width: int = 12, depth: int = 3, conditions: int = 0) -> None:
        super().__init__()
        if dims not in (2, 3) or factor < 2 or width < 2 or depth < 2:
            raise InputError(f"bad VelocityUpres: dims {dims}, factor {factor}, width {width}, depth {depth}")
        sub = factor**dims
        cell = _subcell_mirror(factor, dims)
        perm = [c * sub + cell[k] for c in range(dims) for k in range(sub)]
        odd_out = [c == 0 for c in range(dims) for _ in range(sub)]  # the X velocity flips sign
        self.body = upres_body(dims, width, depth, conditions, odd_out, perm)
        self.dims = dims
        self.factor = factor
        self.width = width
        self.depth = depth
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, *coarse)`` -> the correction ``(B, dims, *fine)`` of the linear upsampling."""
        y = self.body(x)
        parts = [shuffle_up(y[:, c * self.sub : (c + 1) * self.sub], self.factor) for c in range(self.dims)]
        return torch.cat(parts, dim=1)

    def upsample(self, linear: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The upres velocity ``(dims, *fine)``: ``linear`` (``(dims, *fine)``) plus the correction."""
        out: torch.Tensor = linear + self(x)[0]
        return out


class CorrectionNet(nn.Module):
    """A small residual CNN that corrects one coarse step.

    Input channels: density, the cell-centred velocity components (x, y[, z]), the obstacle mask,
    the source mask and ``conditions`` constant channels describing the shot (see
    :func:`condition_values`). Output: corrections of density and of each velocity component at
    cell centres. The last layer is zero-initialised, so the untrained net changes nothing.

    Args:
        symmetric: Mirror-average the output (runs the CNN twice); see :meth:`forward`.
        equivariant: Build every layer from :class:`MirrorConv` (half the hidden channels odd),
            which commutes with the mirror by construction in one pass. Implies ``symmetric``.
        conserve_mass: The corrected density is rescaled to the total the coarse step produced
            (:meth:`SurrogateSolver.correct`), so the net can move smoke but not create or drain it.
        mass_budget: Rescale instead to the physical budget of the step (the previous total,
            minus the flux through open walls, plus the inflow; :meth:`SurrogateSolver.mass_budget`).
            The coarse solver's MacCormack advection is not conservative and gains 8-26 % of the
            inflow in a closed box at 64² where the 256² reference stays within a few percent;
            the budget removes that gain (in an open box the total still follows where the flow
            carries smoke out: ``bench/smoke_mass.py``). Implies ``conserve_mass``.
        density_gain: The density output is a bounded relative gain, ``rho * (1 + tanh(out))``,
            instead of an additive change: smoke cannot appear in empty air (an additive
            correction with the mass constraint spread a haze that piled up over long runs).
        dilations: Dilation of each convolution (``depth`` entries; default all 1). Dilated
            layers widen the receptive field at no extra cost.
    """

    def __init__(
        self,
        dims: int,
        width: int = 32,
        depth: int = 4,
        conditions: int = 0,
        symmetric: bool = False,
        equivariant: bool = False,
        conserve_mass: bool = False,
        density_gain: bool = False,
        dilations: Sequence[int] | None = None,
        mass_budget: bool = False,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims}")
        if width < 1 or depth < 2 or conditions < 0:
            raise InputError(f"bad CorrectionNet size: width {width}, depth {depth}, conditions {conditions}")
        dil = [1] * depth if dilations is None else [int(d) for d in dilations]
        if len(dil) != depth or min(dil) < 1:
            raise InputError(f"CorrectionNet dilations {dil} must be {depth} integers >= 1")
        channels_in = 1 + dims + 2 + conditions
        layers: list[nn.Module] = []
        if equivariant:
            if width < 2:
                raise InputError("an equivariant CorrectionNet needs width >= 2")
            odd_in = [c == 1 for c in range(channels_in)]  # channel 1: the X velocity
            hidden = [c >= width // 2 for c in range(width)]
            odd_out = [c == 1 for c in range(1 + dims)]
            layers += [MirrorConv(dims, odd_in, hidden, dilation=dil[0]), MirrorAct(hidden, dims)]
            for i in range(depth - 2):
                layers += [MirrorConv(dims, hidden, hidden, dilation=dil[1 + i]), MirrorAct(hidden, dims)]
            head: nn.Module = MirrorConv(dims, hidden, odd_out, dilation=dil[-1])
        else:
            conv = nn.Conv2d if dims == 2 else nn.Conv3d
            layers += [conv(channels_in, width, 3, padding=dil[0], dilation=dil[0]), nn.GELU()]
            for i in range(depth - 2):
                layers += [conv(width, width, 3, padding=dil[1 + i], dilation=dil[1 + i]), nn.GELU()]
            head = conv(width, 1 + dims, 3, padding=dil[-1], dilation=dil[-1])
        nn.init.zeros_(head.weight)  # type: ignore[arg-type]
        nn.init.zeros_(head.bias)  # type: ignore[arg-type]
        layers.append(head)
        self.body = nn.Sequential(*layers)
        self.dims = dims
        self.width = width
        self.depth = depth
        self.conditions = conditions
        self.equivariant = equivariant
        self.symmetric = symmetric or equivariant
        self.conserve_mass = conserve_mass or mass_budget
        self.mass_budget = mass_budget
        self.density_gain = density_gain
        self.dilations = tuple(dil)
        # Stored with the weights, so a loaded net knows how it was built: symmetry 0 none,
        # 1 mirror-averaged, 2 equivariant; mass 1 when the density correction keeps the coarse
        # step's total, 2 when it keeps the step's mass budget; gain 1 for a multiplicative
        # density correction; the dilation of every convolution.
        mode = 2.0 if equivariant else 1.0 if symmetric else 0.0
        self.register_buffer("symmetry", torch.tensor([mode]))
        self.register_buffer("mass", torch.tensor([2.0 if mass_budget else 1.0 if conserve_mass else 0.0]))
        self.register_buffer("gain", torch.tensor([1.0 if density_gain else 0.0]))
        self.register_buffer("dilation", torch.tensor(dil, dtype=torch.float32))
        self.upres: UpresNet | None = None  # attached after training (see mlvfx.train.smoke)
        self.vupres: VelocityUpres | None = None  # likewise, for the velocity

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Weights and checkpoints from before these flags existed are nets without them.
        state_dict.setdefault(prefix + "mass", torch.zeros(1))
        state_dict.setdefault(prefix + "gain", torch.zeros(1))
        state_dict.setdefault(prefix + "dilation", torch.ones(self.depth))
        # The flags steer the dynamics: weights made with other ones must not load silently.
        flags = ("symmetry", "mass", "gain", "dilation")
        wrong = [
            k
            for k in flags
            if prefix + k in state_dict
            and not torch.equal(
                state_dict[prefix + k].reshape(-1).float().cpu(), getattr(self, k).reshape(-1).float().cpu()
            )
        ]
        if wrong:
            raise RuntimeError(f"the weights were made with other {', '.join(wrong)} settings than this net")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + dims + 2 + conditions, [Z,] Y, X)`` -> ``(B, 1 + dims, [Z,] Y, X)``.

        A ``symmetric`` net commutes exactly with the left-right mirror (X velocity negated), as
        the solver does: a CNN on its own breaks the symmetry of a centred plume a little at every
        step, and the plume's instability amplifies that. An averaging net gets there by averaging
        its output with that of the mirrored input (mirrored back); an equivariant one by
        construction.
        """
        if not self.symmetric or self.equivariant:
            out: torch.Tensor = self.body(x)
            return out
        sign = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
        sign[1] = -1.0  # channel 1 is the X velocity, in the input and in the output
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mirrored = x.flip(-1) * sign.view(shape)
        both = self.body(torch.cat([x, mirrored]))
        direct, back = both[: x.shape[0]], both[x.shape[0] :]
        out_sign = sign[: direct.shape[1]].view(shape)
        result: torch.Tensor = 0.5 * (direct + back.flip(-1) * out_sign)
        return result


CONDITIONS = ("buoyancy", "vorticity_x10")
"""The shot parameters a conditioned :class:`CorrectionNet` sees, as constant input channels."""


def condition_values(config: SmokeConfig) -> list[float]:
    """The :data:`CONDITIONS` of a shot, scaled to order one."""
    return [float(config.buoyancy), 10.0 * float(config.vorticity)]


class _ProjectFn(torch.autograd.Function):
    """``P(v)`` with the backward ``P(grad)``: the discrete projection is self-adjoint."""

    @staticmethod
    def forward(ctx: Any, projection: Projection, *vel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.projection = projection
        with torch.no_grad():
            return tuple(projection(list(vel)))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        with torch.no_grad():
            out = ctx.projection(list(grads))
        return (None, *out)


class AdjointProjection:
    """A pressure projection whose gradient is applied as the projection itself.

    The MAC projection ``P = I - G (D G)^-1 D`` (fixed faces masked) is an orthogonal projection,
    so ``P^T = P``: the vector-Jacobian product is one more solve, instead of backpropagating
    through every CG iteration (slow, and NaN once CG has converged to round-off).
    """

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.solver = inner.solver
        self.fixed = inner.fixed
        self.walls = inner.walls
        self.solid = inner.solid

    def __call__(self, vel: Faces) -> Faces:
        return list(_ProjectFn.apply(self.inner, *vel))  # type: ignore[no-untyped-call]


INFERENCE_OPEN_INFLOW: OpenInflow = "clean"
"""What air enters through open walls in what hosts and the CLI run: the surrogate's coarse grid
(hosts, ``smoke run``, ``smoke bench``) and the reference when a host, ``smoke run --reference``
or the demo runs it (training data and the benchmarks' reference keep ``"border"``).

The published models were trained with ``"border"`` (the reference's convention), but their
corrections leave faint smoke upwind, and with ``"border"`` smoke at a wall the wind blows in
through never leaves: smoke3d 0.2.0's validation wind shot ended at 6.94x the reference's total
after 400 steps, 1.02x with clean inflow (``bench/smoke_runaway.py --open-inflow``).
"""


class SurrogateSolver:
    """The coarse reference solver plus a learned correction after every step (torch level).

    Args:
        fine_config: The shot at output resolution; the solver runs it ``factor`` times coarser.
        net: The correction.
        obstacles: Fine obstacle mask (a coarse cell is solid when at least half of it is).
        factor: Coarsening factor per axis.
        dtype: ``"float32"`` or ``"float64"`` for the coarse solver (default: the config's).
        differentiable: Training: the projection's gradient is the projection itself
            (:class:`AdjointProjection`), which also gives the 2D sparse-LU solver a gradient.
        open_inflow: The coarse solver's ``open_inflow`` (default: the fine config's). Inference
            uses :data:`INFERENCE_OPEN_INFLOW`; training keeps the recipe's data as it was made.
        only_move_smoke: On a grid with obstacles, the additive correction may change only cells
            the coarse step left smoke in (it saw through thin walls and put smoke beyond them;
            stop 26). Default: on unless ``differentiable``; the training pipeline passes False.
    """

    def __init__(
        self,
        fine_config: SmokeConfig,
        net: CorrectionNet,
        obstacles: Array | None = None,
        factor: int = 4,
        dtype: str | None = None,
        differentiable: bool = False,
        open_inflow: OpenInflow | None = None,
        only_move_smoke: bool | None = None,
    ) -> None:
        self.factor = factor
        self.fine_config = fine_config
        config = coarse_config(fine_config, factor)
        if dtype is not None:
            config = replace(config, dtype=dtype)
        if open_inflow is not None:
            config = replace(config, open_inflow=open_inflow)
        self.fine_solid: torch.Tensor | None = None
        if obstacles is not None:
            fine = np.asarray(obstacles, dtype=float)
            obstacles = restrict_mask(fine, factor) >= 0.5
            if fine.shape == tuple(fine_config.shape) and (fine >= 0.5).any():
                self.fine_solid = torch.as_tensor(fine >= 0.5)
        self.solver = ReferenceSolver(config, obstacles)
        if differentiable:
            self.solver._projection = AdjointProjection(self.solver.projection)  # type: ignore[assignment]
        # Hosts and the benchmark; training and its rollouts (upres data, validation) pass False, so
        # the published recipes still rebuild their weights. Only on grids with obstacles.
        guard = not differentiable if only_move_smoke is None else only_move_smoke
        self._no_smoke_from_nothing = guard and bool(self.solver.solid.any())
        self.net = net.to(device=self.solver.device, dtype=self.solver.dtype)
        if self.fine_solid is not None:
            self.fine_solid = self.fine_solid.to(self.solver.device)
        self._conditions = condition_values(fine_config)[: net.conditions]
        # The same on the fine grid, where a thin obstacle may seal what the coarse grid does not:
        # the output shows smoke only in fine regions a source feeds or the host put smoke in.
        self._fine_regions: npt.NDArray[np.int32] | None = None
        self._fine_allowed: npt.NDArray[np.bool_] | None = None
        if self.fine_solid is not None:
            from scipy import ndimage  # type: ignore[import-untyped]

            fine_labels, fine_count = ndimage.label(~self.fine_solid.cpu().numpy())
            if fine_count > 1:
                self._fine_regions = fine_labels
                self._fine_allowed = np.zeros(int(fine_count) + 1, bool)
        # Fluid regions the obstacles seal off from each other (labels, 0 = solid), when there are
        # several: smoke must not cross between them (see _no_leaks).
        # Region sums go through numpy's bincount on the CPU: exact, deterministic (CUDA's adds
        # are atomic), float64 everywhere (MPS has none), and linear in the cells however many
        # pockets a collider has. The coarse grid is small, so the copy is cheap.
        self._regions: npt.NDArray[np.intp] | None = None
        self._region_count = 0
        if obstacles is not None:
            from scipy import ndimage

            labels, count = ndimage.label(~self.solver.solid.cpu().numpy())
            if count > 1:
                self._regions = labels.reshape(-1).astype(np.intp)
                self._region_count = int(count)

    def prepare_sources(self, sources: Sequence[Source]) -> list[PreparedSource]:
        """Restrict fine-grid sources to the coarse grid and validate them there.

        A source the fine obstacles cover entirely is refused here, on the fine grid: restricted,
        its cells may be less than half solid, and the coarse grid would then emit smoke from
        inside the obstacle.
        """
        from mlvfx.fluids.reference import _as_grid

        # The fine masks are checked here, where shapes and values are the user's, not the
        # coarse grid's (a wrong shape was reported at a quarter of its size).
        masks = [_as_grid(s.mask, self.fine_config.shape, f"source {i} mask") for i, s in enumerate(sources)]
        for i, mask in enumerate(masks):
            if mask.min() < 0 or mask.max() > 1:
                raise InputError(f"source {i} mask must lie in [0, 1]")
        if self.fine_solid is not None:
            solid = self.fine_solid.cpu().numpy()
            for i, mask in enumerate(masks):
                check_source_outside(i, mask, solid)
        if self._fine_allowed is not None and self._fine_regions is not None:
            for m, s in zip(masks, sources, strict=True):
                if s.rate > 0:  # a region a source feeds may show smoke from now on
                    self._fine_allowed[np.unique(self._fine_regions[m > 0])] = True
        coarse = [
            Source(restrict_mask(m, self.factor), s.rate, s.velocity)
            for m, s in zip(masks, sources, strict=True)
        ]
        return self.solver.prepare_sources(coarse)

    def allow_smoke_where(self, fine_density: Array) -> None:
        """Fine regions that hold smoke a host put there may show it (see :meth:`output_density`)."""
        if self._fine_allowed is not None and self._fine_regions is not None:
            self._fine_allowed[np.unique(self._fine_regions[np.asarray(fine_density) > 0])] = True

    def _sealed_off(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` (fine) with zero in the fine regions no source feeds and no host seeded: a wall
        thinner than half a coarse cell is not on the coarse grid, and the coarse smoke crosses it."""
        if self._fine_allowed is None or self._fine_regions is None:
            return out
        allowed = torch.as_tensor(self._fine_allowed[self._fine_regions], device=out.device)
        return out * allowed.to(out.dtype)

    def inputs(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> torch.Tensor:
        """The nets' input channels for a coarse state, ``(1, C, *coarse)``."""
        centred = faces_to_centre(vel)
        source_mask = torch.zeros_like(density)
        for src in sources:
            source_mask = source_mask + src.mask
        solid = self.solver.solid.to(density.dtype)
        channels = [density, *centred, solid, source_mask]
        channels += [torch.full_like(density, c) for c in self._conditions]
        return torch.stack(channels)[None]

    def outputs(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`output_density` and :meth:`output_velocity`, the nets' inputs built once."""
        learned = self.net.upres is not None or self.net.vupres is not None
        x = self.inputs(density, vel, sources) if learned else None
        return self.output_density(density, vel, sources, x), self.output_velocity(density, vel, sources, x)

    def output_density(
        self,
        density: torch.Tensor,
        vel: Faces,
        sources: Sequence[PreparedSource] = (),
        x: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The density at output resolution: the learned upres if the model has one, else smooth.

        ``x``: the nets' inputs for this state (:meth:`inputs`), when the caller has them already.
        """
        up = prolong_density(density, self.factor)
        upres = self.net.upres
        if upres is None:
            return self._sealed_off(up)
        out = upres.upsample(up, self.inputs(density, vel, sources) if x is None else x)
        out = out if self.fine_solid is None else out.masked_fill(self.fine_solid, 0.0)
        return self._sealed_off(out)

    def output_velocity(
        self,
        density: torch.Tensor,
        vel: Faces,
        sources: Sequence[PreparedSource] = (),
        x: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The cell-centred velocity ``(dims, *fine)`` at output resolution: the linear upsampling,
        plus the learned velocity upres's correction if the model has one; zero inside the fine
        obstacles (as the reference's: every face of a solid cell is closed)."""
        out = prolong_velocity(vel, self.factor)
        vupres = self.net.vupres
        if vupres is not None:
            out = vupres.upsample(out, self.inputs(density, vel, sources) if x is None else x)
        return out if self.fine_solid is None else out.masked_fill(self.fine_solid, 0.0)

    def mass_budget(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> torch.Tensor:
        """Total density one step after the state ``(density, vel)`` if mass were conserved.

        The current total, minus the upwind flux through open walls (border cells carry their
        value across the wall, as the solver's clamped sampling does), times the dissipation,
        plus every source's inflow. Closed walls and obstacles pass nothing.
        """
        cfg = self.solver.config
        k = cfg.dt / cfg.dx
        ndim = cfg.dims
        total = density.sum()
        for c in range(ndim):
            dim = comp_dim(c, ndim)
            n = density.shape[dim]
            low_closed, high_closed = self.solver.walls.closed[c]
            if not high_closed:
                total = total - k * (vel[c].narrow(dim, n, 1) * density.narrow(dim, n - 1, 1)).sum()
            if not low_closed:
                total = total + k * (vel[c].narrow(dim, 0, 1) * density.narrow(dim, 0, 1)).sum()
        if cfg.density_dissipation > 0:
            total = total * math.exp(-cfg.density_dissipation * cfg.dt)
        for src in sources:
            total = total + (src.rate * cfg.dt) * src.mask.sum()
        return total.clamp(min=0.0)

    def correct(
        self,
        density: torch.Tensor,
        vel: Faces,
        sources: Sequence[PreparedSource] = (),
        budget: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Faces]:
        """The learned correction of a state the coarse solver just produced (re-projected).

        ``budget``: the total a mass-conserving net rescales to (:meth:`mass_budget` of the state
        before the coarse step); by default the coarse step's own total.
        """
        solver = self.solver
        delta = self.net(self.inputs(density, vel, sources))[0]
        if self.net.density_gain:
            corrected = (density * (1.0 + torch.tanh(delta[0]))).masked_fill(solver.solid, 0.0)
        else:
            corrected = (density + delta[0]).clamp(min=0.0).masked_fill(solver.solid, 0.0)
            if self._no_smoke_from_nothing:
                # Beside obstacles, an additive correction puts smoke in cells the coarse step left
                # empty on the far side of a wall it sees through (stop 26's audit, 221 units over
                # a 4-voxel slab): it may move smoke, not make it where there is none.
                corrected = torch.where(density > 0, corrected, torch.zeros_like(corrected))
        if self.net.conserve_mass:
            # Rescale to the coarse step's total (or the budget): the net moves smoke but cannot
            # create or drain it.
            total = corrected.sum()
            before = density.sum() if budget is None else budget
            scaled = corrected * (before / total.clamp(min=1e-12))
            fallback = density if budget is None else density * (budget / density.sum().clamp(min=1e-12))
            corrected = torch.where(total > 1e-6 * before, scaled, fallback)
        density = corrected
        vel = [v + dv for v, dv in zip(vel, centre_to_faces(list(delta[1:])), strict=True)]
        return density, solver.projection(vel)

    def advance(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, Faces]:
        """One coarse step, then the correction; the velocity is re-projected (divergence-free)."""
        budget = self.mass_budget(density, vel, sources) if self.net.mass_budget else None
        before = self._region_totals(density)
        density, vel = self.solver.advance(density, vel, sources)
        density, vel = self.correct(density, vel, sources, budget)
        return self._no_leaks(density, before, sources), vel

    def _region_totals(self, density: torch.Tensor) -> npt.NDArray[np.float64] | None:
        if self._regions is None:
            return None
        flat = density.detach().reshape(-1).cpu().double().numpy()
        totals = np.bincount(self._regions, weights=flat, minlength=self._region_count + 1)
        return np.asarray(totals, np.float64)  # weighted: float64 already (the stubs say int)

    def _no_leaks(
        self, density: torch.Tensor, before: npt.NDArray[np.float64] | None, sources: Sequence[PreparedSource]
    ) -> torch.Tensor:
        """Smoke that crossed into a sealed-off region without a source, taken out again.

        The coarse semi-Lagrangian step can trace across a one-cell wall (the coarse grid's
        Courant number is 4x the fine one's), so smoke leaked through obstacles that seal a region
        off (stop 24's audit: 347 units of density above a plate that held all of it back in the
        reference). A region without a source can only lose smoke (open walls, dissipation), so
        its gain is removed. With a mass-conserving net the total was rescaled after the leak, so
        the regions with sources lost what leaked: it is given back to them, in proportion to
        their smoke. Smoke a host put in such a region keeps moving in it.
        """
        if before is None or self._regions is None:
            return density
        after = self._region_totals(density)
        assert after is not None
        fed = np.zeros(len(after), bool)
        for src in sources:
            if src.rate > 0:  # a source that emits nothing feeds no region
                covered = (src.mask.reshape(-1) > 0).cpu().numpy().astype(np.float64)
                fed |= np.bincount(self._regions, weights=covered, minlength=len(after)) > 0
        gained = ~fed & (after > before * (1.0 + 1e-9) + 1e-12)
        gained[0] = False  # the obstacles
        if not gained.any():
            return density
        scale = np.ones_like(after)
        scale[gained] = before[gained] / after[gained]
        removed = (after - before)[gained].sum()
        fed[0] = False
        fed_total = after[fed].sum()
        if self.net.conserve_mass and fed_total > 0:
            scale[fed] = 1.0 + removed / fed_total
        factor = torch.as_tensor(scale[self._regions].reshape(density.shape), device=density.device)
        return density * factor.to(density.dtype)


def unrolled_loss(
    surrogate: SurrogateSolver,
    start_density: torch.Tensor,
    start_vel: Faces,
    target_density: Sequence[torch.Tensor],
    target_vel: Sequence[Faces],
    sources: Sequence[PreparedSource] = (),
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    velocity_weight: float = 1.0,
    mass_weight: float = 0.0,
    energy_weight: float = 0.0,
) -> torch.Tensor:
    """Solver-in-the-Loop objective over ``len(target_density)`` unrolled corrected coarse steps.

    Args:
        surrogate: The corrected coarse solver (its net's parameters receive gradients).
        start_density: Restricted reference density at the start, coarse ``(Y, X)``/``(Z, Y, X)``.
        start_vel: Restricted reference face velocity at the start.
        target_density: Restricted reference densities after 1, 2, ... steps.
        target_vel: Restricted reference face velocities after 1, 2, ... steps.
        sources: Prepared coarse sources (:meth:`SurrogateSolver.prepare_sources`).
        noise: Standard deviation of Gaussian noise added to the start state, relative to its
            RMS (noise injection makes the correction robust to its own drift).
        generator: Random generator for the noise (reproducible training).
        velocity_weight: Weight of the velocity term against the density term.
        mass_weight: Weight of a total-density term: the squared relative error of the summed
            density at each step. The per-cell term barely sees a small, steady gain or drain that
            adds up over a long rollout; this term does (0: off).
        energy_weight: Weight of a kinetic-energy term: the squared relative error of the summed
            squared face velocities at each step. Over hundreds of steps the velocity correction
            stirs the flow up (``bench/smoke_runaway.py``), a slow gain the per-cell term barely
            sees (0: off).

    Returns:
        Mean over steps of the relative squared errors of density and velocity (and total density).

    Gradients flow through the DCT and CG projections; the 2D sparse-LU path (the default with
    obstacles in 2D) runs in SciPy and is not differentiable, so train such shots with
    ``pressure_solver="cg"``.
    """
    if len(target_density) != len(target_vel) or not target_density:
        raise InputError("unrolled_loss needs matching, non-empty density and velocity targets")
    # Training data is loaded on the CPU; the solver may run on CUDA.
    dev = surrogate.solver.device
    density, vel = start_density.to(dev), [v.to(dev) for v in start_vel]
    target_density = [t.to(dev) for t in target_density]
    target_vel = [[v.to(dev) for v in t] for t in target_vel]
    if noise > 0:
        scale = density.pow(2).mean().sqrt()
        eps = torch.randn(density.shape, generator=generator, dtype=density.dtype).to(density.device)
        density = (density + noise * scale * eps).clamp(min=0.0)
        vel = [
            v
            + noise
            * v.pow(2).mean().sqrt()
            * torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device)
            for v in vel
        ]
        vel = surrogate.solver.projection(vel)
    total = density.new_zeros(())
    for rho_t, vel_t in zip(target_density, target_vel, strict=True):
        density, vel = surrogate.advance(density, vel, sources)
        d_err = (density - rho_t).pow(2).sum() / rho_t.pow(2).sum().clamp(min=1e-12)
        v_num = sum((v - t).pow(2).sum() for v, t in zip(vel, vel_t, strict=True))
        v_den = sum(t.pow(2).sum() for t in vel_t)
        total = total + d_err + velocity_weight * v_num / torch.as_tensor(v_den).clamp(min=1e-12)
        if mass_weight > 0:
            want = rho_t.sum()
            total = total + mass_weight * ((density.sum() - want) / want.abs().clamp(min=1e-12)).pow(2)
        if energy_weight > 0:
            energy = sum(v.pow(2).sum() for v in vel)
            want_e = torch.as_tensor(v_den).clamp(min=1e-12)
            total = total + energy_weight * ((energy - want_e) / want_e).pow(2)
    return total / len(target_density)


FACTOR_KEY = "meta.factor"
"""Name of the one non-weight tensor in a surrogate's safetensors file: the coarsening factor."""


def surrogate_state(net: CorrectionNet, factor: int) -> dict[str, torch.Tensor]:
    """What a surrogate's safetensors file holds: the net's weights plus its coarsening factor."""
    state = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}
    state[FACTOR_KEY] = torch.tensor([factor], dtype=torch.int64)
    return state


def surrogate_from_state(
    state: dict[str, torch.Tensor], source: str = "weights"
) -> tuple[CorrectionNet, int]:
    """Rebuild ``(net, factor)`` from :func:`surrogate_state`; the architecture is read off the shapes."""
    try:
        factor = int(state[FACTOR_KEY].reshape(-1)[0])
        first = state["body.0.weight"]
        convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("body.") and k.endswith(".weight"))
        dims = first.dim() - 2
        width = int(first.shape[0])
        conditions = int(first.shape[1]) - 1 - dims - 2
        weights = {k: v for k, v in state.items() if k != FACTOR_KEY}
        upres_keys = sorted(
            int(k.split(".")[2]) for k in weights if k.startswith("upres.body.") and k.endswith(".weight")
        )
        vupres_keys = sorted(
            int(k.split(".")[2]) for k in weights if k.startswith("vupres.body.") and k.endswith(".weight")
        )
        mode = float(weights.get("symmetry", torch.zeros(1)).reshape(-1)[0])
        mass_code = float(weights.get("mass", torch.zeros(1)).reshape(-1)[0])
        gain = float(weights.get("gain", torch.zeros(1)).reshape(-1)[0]) > 0.5
        dilation = weights.get("dilation", torch.ones(len(convs))).reshape(-1)
        net = CorrectionNet(
            dims,
            width=width,
            depth=len(convs),
            conditions=conditions,
            symmetric=mode > 0.5,
            equivariant=mode > 1.5,
            conserve_mass=mass_code > 0.5,
            mass_budget=mass_code > 1.5,
            density_gain=gain,
            dilations=[round(float(d)) for d in dilation],
        )
        weights.setdefault("symmetry", torch.zeros(1))
        if upres_keys:
            up_first = weights["upres.body.0.weight"]
            net.upres = UpresNet(
                dims, factor, width=int(up_first.shape[0]), depth=len(upres_keys), conditions=conditions
            )
        if vupres_keys:
            v_first = weights["vupres.body.0.weight"]
            net.vupres = VelocityUpres(
                dims, factor, width=int(v_first.shape[0]), depth=len(vupres_keys), conditions=conditions
            )
        net.load_state_dict(weights)
    except (KeyError, IndexError, RuntimeError, InputError, ValueError, OverflowError, TypeError) as exc:
        # one line: a strict load lists every mismatch over many lines; NaN or huge meta values
        # failed int() as internal errors (a fuzz audit)
        said = " ".join(str(exc).split())
        raise InputError(f"{source}: not a smoke surrogate ({said[:200]})") from None
    if factor < 1:
        raise InputError(f"{source}: bad coarsening factor {factor}")
    return net.eval(), factor


class SurrogateStepper(HostStepper):
    """The learned surrogate behind the same numpy interface as :class:`~mlvfx.fluids.reference.Stepper`.

    It keeps the coarse state between calls; inputs that are not its own last output (an artist
    edited the fields, or a host started from a cache) are restricted to the coarse grid.
    Outputs are at the config's (output) resolution: the model's learned upres of the density
    (bicubic in 2D / trilinear in 3D for a model without one) and the cell-centred velocity
    (linearly interpolated, plus the model's learned velocity upres when it has one). Its coarse
    solver brings smoke-free air in through open walls (``open_inflow``, default
    :data:`INFERENCE_OPEN_INFLOW`), whatever the config's ``open_inflow``.
    """

    def __init__(
        self,
        config: SmokeConfig,
        net: CorrectionNet,
        factor: int,
        dtype: str = "float32",
        open_inflow: OpenInflow = INFERENCE_OPEN_INFLOW,
    ) -> None:
        if net.dims != config.dims:
            raise InputError(f"the smoke model is {net.dims}D but the shot is {config.dims}D")
        _check_factor(config.shape, factor)
        if min(config.shape) // factor < 4:
            raise InputError(
                f"grid {config.shape} is too small for a {factor}x coarser surrogate "
                f"(needs >= {4 * factor} cells per axis)"
            )
        super().__init__(config)
        self.factor = factor
        self.net = net
        self.dtype = dtype
        self.open_inflow = open_inflow
        self._surrogate: SurrogateSolver | None = None
        self._obstacle_key: bytes | None = None
        self._sources: list[PreparedSource] = []

    def _prepare(self, sources: list[Source], obstacles: Array | None) -> list[PreparedSource]:
        from mlvfx.fluids.reference import _as_grid

        mask = None if obstacles is None else _as_grid(obstacles, self.config.shape, "obstacles") >= 0.5
        key = b"" if mask is None else mask.tobytes()
        if self._surrogate is None or key != self._obstacle_key:
            self._surrogate = SurrogateSolver(
                self.config, self.net, mask, self.factor, dtype=self.dtype, open_inflow=self.open_inflow
            )
            self._obstacle_key = key
            self._state = None
        return self._surrogate.prepare_sources(sources)

    def _advance(
        self, state: tuple[torch.Tensor, Faces], prepared: list[PreparedSource]
    ) -> tuple[torch.Tensor, Faces]:
        assert self._surrogate is not None
        self._sources = prepared
        return self._surrogate.advance(state[0], state[1], prepared)

    @torch.inference_mode()
    def _to_host(self, state: tuple[torch.Tensor, Faces]) -> tuple[Array, Array]:
        assert self._surrogate is not None
        rho, vel = state
        out_rho, fine_v = self._surrogate.outputs(rho, vel, self._sources)
        return out_rho.float().cpu().numpy(), fine_v.movedim(0, -1).float().cpu().numpy()

    def _from_host(self, density: Array | None, velocity: Array | None) -> tuple[torch.Tensor, Faces]:
        """Validate fine inputs (as the reference Stepper does) and restrict them to the coarse grid."""
        from mlvfx.fluids.reference import state_from_arrays

        assert self._surrogate is not None
        coarse = self._surrogate.solver
        rho_f, vel_f = state_from_arrays(density, velocity, self.config.shape, coarse.dtype, coarse.device)
        if density is not None:
            self._surrogate.allow_smoke_where(rho_f.cpu().numpy())
        rho = restrict_density(rho_f, self.factor).masked_fill(coarse.solid, 0.0)
        vel = restrict_faces(vel_f, self.factor)
        vel = [v.masked_fill(m, 0.0) for v, m in zip(vel, coarse.projection.fixed, strict=True)]
        return rho, coarse.projection(vel)


TRAINED_DT = 1.0 / 24.0
"""The time step every published surrogate was trained with (``SmokeConfig``'s default: one step
per frame at 24 fps). The nets are not told the step, so another step is outside their training."""


def dt_warning(dt: float) -> str | None:
    """A one-line warning when a step of ``dt`` seconds differs from :data:`TRAINED_DT` by over 1 %.

    Measured on a 64³ plume at frame 24 against the reference at the same settings (stop 24's
    audit): 1 step per frame at 24 fps gave 0.27 relative error, 4 steps per frame 0.74 with a
    third of the smoke gone, 96 fps 0.49.
    """
    if abs(dt / TRAINED_DT - 1.0) <= 0.01:
        return None
    return (
        f"the smoke surrogates were trained with steps of 1/24 s (24 fps, 1 step per frame); at "
        f"1/{1.0 / dt:.4g} s they are outside their training and drift further from the "
        "reference (use 24 fps and 1 step per frame, or the reference solver)"
    )


TRAINED_RESOLUTION = {"smoke3d": 64, "smoke3d_128": 128}
"""The output grid (cells per axis) each published 3D surrogate was trained for."""


def resolution_warning(model: str, dims: int, cells: int) -> str | None:
    """A one-line warning when a named 3D zoo surrogate (``ID`` or ``ID@VERSION``) runs on a grid of
    ``cells`` along its longest axis nearer the other published model's training size, else None.

    Measured (held-out shots, t = 100): smoke3d at 128³ scores 0.99x coarse-only, smoke3d_128 0.72x
    (docs/BENCHMARKS.md, "On a GPU"). The issue's own example runs ``--res 128 --model smoke3d``.
    """
    base = model.partition("@")[0]
    trained = TRAINED_RESOLUTION.get(base)
    if dims != 3 or trained is None:
        return None
    nearer = min(TRAINED_RESOLUTION, key=lambda m: abs(TRAINED_RESOLUTION[m] - cells))
    if nearer == base or abs(TRAINED_RESOLUTION[nearer] - cells) >= abs(trained - cells):
        return None
    return (
        f"{base} was trained for {trained}³ output and this grid is {cells} cells across: {nearer} "
        f"(trained for {TRAINED_RESOLUTION[nearer]}³, what the automatic choice picks here) is the "
        f"better model for it"
    )


THIN_OBSTACLE_CELLS = 3
"""Coarse cells an obstacle should be thick for the learned models (12 voxels at 4x coarsening)."""


def thin_obstacle_warning(obstacles: Array | None, factor: int = 4) -> str | None:
    """A one-line warning when some part of an obstacle mask is thinner than
    :data:`THIN_OBSTACLE_CELLS` coarse cells, else None.

    The correction net sees through thin walls (stop 26's audit, ``bench/smoke_thin_obstacles.py``):
    under a slab 4 / 8 voxels thick, 221 / 179 units of density got right above it in 60 steps where
    the reference let none through. Since the correction may no longer put smoke in cells the coarse
    step left empty (on grids with obstacles), 56 / 0.0 (smoke3d_128: 11.3 / 0.26); from 12 voxels, none.

    Measured on the coarse grid the models run on (a coarse cell is solid when half of its voxels
    are, as :func:`restrict_mask` makes it): a coarse cell is thin when no cube of
    ``THIN_OBSTACLE_CELLS`` solid coarse cells covers it (a morphological opening), and solid voxels
    that grid drops count as thin unless they border a thick part. So a thin fin on a thick block
    counts, a wall on the domain's edge is measured from the inside only (outside the domain
    counts as solid), and the cost is that of a few filters over the coarse grid (about a second
    at 512³).
    """
    if obstacles is None:
        return None
    solid = np.asarray(obstacles) >= 0.5
    if not solid.any():
        return None
    from scipy import ndimage

    pad = [(0, (-n) % factor) for n in solid.shape]
    solid = np.pad(solid, pad, mode="edge")
    coarse_shape = [n // factor for n in solid.shape]
    split = [v for n in coarse_shape for v in (n, factor)]
    cells = tuple(range(1, 2 * solid.ndim, 2))
    # restrict_mask's average, on bools and in numpy: no float64 copy of a 512³ domain, and any shape.
    share = solid.reshape(split).mean(axis=cells)
    coarse = (share >= 0.5).astype(np.uint8)  # the coarse grid the model runs on
    size = THIN_OBSTACLE_CELLS
    coarse = np.pad(coarse, size, constant_values=1)  # beyond the domain: solid
    # An opening with a cube of that size: erode, then dilate with the mirrored window (for an even
    # size the window is [-size/2, size/2 - 1], its mirror one cell further on).
    kept = ndimage.maximum_filter(
        ndimage.minimum_filter(coarse, size), size, origin=-1 if size % 2 == 0 else 0
    )
    inner = tuple(slice(size, -size) for _ in range(coarse.ndim))
    thick = kept[inner].astype(bool)
    thin = coarse[inner].astype(bool) & ~thick
    # Solid voxels the coarse grid drops (under half a cell), away from any thick part: a plate the
    # model does not see at all.
    near_thick = ndimage.binary_dilation(thick, np.ones((3,) * thick.ndim, bool))
    thin |= (share > 0) & (share < 0.5) & ~near_thick
    if not thin.any():
        return None
    _, parts = ndimage.label(thin)
    return (
        f"{parts} obstacle part(s) are thinner than {size * factor} voxels: the learned smoke models "
        "let smoke through such walls (use the reference solver when the obstacles matter, or "
        "make them thicker)"
    )


FINE_3D_MODEL = "smoke3d_128"
"""The 3D surrogate fine-tuned for 128³ output; :func:`default_model` picks it for large grids."""


def default_model(dims: int, res: int) -> str:
    """The zoo surrogate to use when none is named, for a grid of about ``res`` cells per axis.

    ``smoke3d_128`` for 3D grids of 96 cells or more (nearer 128³ than 64³, the two resolutions the
    3D models were trained for), when the manifest has it; otherwise ``smoke2d`` / ``smoke3d``.
    """
    if dims == 3 and res >= 96:
        from mlvfx import zoo

        if FINE_3D_MODEL in zoo.load_manifest().ids():
            return FINE_3D_MODEL
    return f"smoke{dims}d"


SMOKE_MODELS_ENV = "MLVFX_SMOKE_MODELS"


def pinned_smoke_version(model_id: str) -> str | None:
    """The version ``MLVFX_SMOKE_MODELS`` pins ``model_id`` to, or None (the zoo's newest).

    The variable lists ``ID@VERSION`` pins separated by commas or spaces (``smoke3d@0.2.0,
    smoke3d_128@0.2.0``): a show's pins, honoured wherever a smoke model is named without a
    version (``smoke run --model smoke3d``, the default model, Blender's bake and Houdini's SOP;
    Blender's Smoke Models preference sets it). A re-bake otherwise moved to the zoo's newest model
    after an upgrade (an audit).

    Raises:
        InputError: an entry that is not ``ID@VERSION``.
    """
    return _smoke_pins().get(model_id)


def _smoke_pins() -> dict[str, str]:
    """``MLVFX_SMOKE_MODELS`` as ``{id: version}`` (see :func:`pinned_smoke_version`)."""
    raw = os.environ.get(SMOKE_MODELS_ENV, "").strip()
    pins: dict[str, str] = {}
    for ref in re.split(r"[,\s]+", raw) if raw else []:
        name, at, version = ref.partition("@")
        if not at or not name or not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version):
            raise InputError(
                f"{SMOKE_MODELS_ENV} (or Blender's Smoke Models preference) lists pins as ID@VERSION, "
                f"e.g. smoke3d@0.2.0; got {ref!r}"
            )
        pins[name] = version
    return pins


def _near_miss(name: str, known: list[str]) -> str | None:
    """The known id ``name`` is a slip of (``smoke3D`` or ``smoke-3d`` for ``smoke3d``), or None:
    it is known, or another id (``smoke2d``, ``smoke3d_512``: a model a newer zoo may have, which a
    studio's one pin list names; a review found a fuzzy match stopping bakes on those)."""
    if name in known:
        return None

    def key(text: str) -> str:
        return "".join(c for c in text.casefold() if c not in "-_ ")

    same = [k for k in known if key(k) == key(name)]
    return same[0] if same else None


def load_surrogate(model_id: str) -> tuple[CorrectionNet, int, str]:
    """``(net, factor, version)`` of the zoo's smoke surrogate ``model_id`` (fetched if needed):
    ``smoke3d`` for the version ``MLVFX_SMOKE_MODELS`` pins, else the newest; ``smoke3d@0.2.0``
    for that one (a show pins it).

    Raises:
        ModelNotFound: the model, or that version of it, is not in the zoo manifest.
        OfflineError / DownloadError / IntegrityError: as :func:`mlvfx.zoo.fetch`.
    """
    from mlvfx import zoo

    manifest = zoo.load_manifest()
    model_id, at, version = model_id.partition("@")
    if at and not version:
        raise InputError(f"model {model_id + at!r} names no version (use {model_id} or {model_id}@VERSION)")
    known = manifest.ids()
    for pin in _smoke_pins():
        near = _near_miss(pin, known)
        if near is not None:  # a typo pinned nothing, silently (a review); a pin of a model
            # this zoo does not have yet (a studio's list shared across installs) is left alone
            raise InputError(f"{SMOKE_MODELS_ENV} pins {pin!r}, which the model zoo does not have: {near}?")
    pinned = not at and pinned_smoke_version(model_id)
    version = version or pinned or ""
    try:
        entry = manifest.get(model_id, version or None)
    except ModelNotFound as exc:
        if pinned:
            raise ModelNotFound(f"{exc} (pinned by {SMOKE_MODELS_ENV})") from None
        if version:
            raise  # its message lists the versions there are
        raise ModelNotFound(
            f"smoke surrogate {model_id!r} is not in the model zoo (`mlvfx zoo list` shows what is); "
            "run the reference solver instead (`smoke run --reference`) or pass local weights (--weights)"
        ) from None
    if not entry.task.startswith("smoke."):  # before fetching megabytes of the wrong model
        smoke = [m for m in manifest.ids() if manifest.get(m).task.startswith("smoke.")]
        raise InputError(
            f"model {model_id!r} is a {entry.task} model, not a smoke surrogate "
            f"(smoke models: {', '.join(smoke) or 'none'})"
        )
    path = zoo.fetch(model_id, entry.version, fmt="safetensors")
    net, factor = surrogate_from_state(zoo.load_state_dict(path), source=str(path))
    return net, factor, entry.version


def load_stepper(model_id: str, config: SmokeConfig, *, device: str | None = None) -> SurrogateStepper:
    """The zoo's smoke surrogate ``model_id`` (``smoke2d``/``smoke3d``) as a stepper for ``config``.

    Raises:
        ModelNotFound: the model is not in the zoo manifest.
        OfflineError / DownloadError / IntegrityError: as :func:`mlvfx.zoo.fetch`.
        InputError: the model's dimensionality does not match the shot, or the grid is not a
            multiple of the model's coarsening factor.
    """
    net, factor, _ = load_surrogate(model_id)
    if device is not None:
        config = replace(config, device=device)
    return SurrogateStepper(config, net, factor)
