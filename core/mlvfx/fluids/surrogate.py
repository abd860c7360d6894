"""Building blocks of the learned smoke surrogate (Solver-in-the-Loop, Um et al. 2020).

The surrogate runs the reference solver on a grid ``factor`` (default 4) times coarser per axis
and adds a small CNN correction after every coarse step; for display, the coarse density is
brought back to the output resolution. This module has the parts that do not need trained
weights, each tested:

* transfer operators between the fine and the coarse grid: :func:`restrict_density` (cell
  averages, conserves total density), :func:`restrict_faces` (face-flux averages, which keep a
  discretely divergence-free field divergence-free on the coarse grid), :func:`restrict_mask`
  and :func:`prolong_density`;
* :class:`CorrectionNet`, whose last layer starts at zero so an untrained surrogate *is* the
  coarse-only baseline;
* :class:`SurrogateSolver`, the corrected coarse step (differentiable end to end with the DCT or
  CG projection, which training needs);
* :func:`unrolled_loss`, the Solver-in-the-Loop objective: unroll ``k`` corrected steps from a
  noise-perturbed reference state and compare with the restricted reference trajectory.

Not here yet (issue 7, later sessions): the training recipe and data set, trained weights, the
learned upres, and :func:`load_stepper` returning a real model (it raises ``ModelNotFound``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from mlvfx.errors import InputError, ModelNotFound
from mlvfx.fluids.grid import Faces, centre_to_faces, comp_dim, faces_to_centre
from mlvfx.fluids.reference import Array, PreparedSource, ReferenceSolver, SmokeConfig, Source

__all__ = [
    "CorrectionNet",
    "SurrogateSolver",
    "coarse_config",
    "load_stepper",
    "prolong_density",
    "restrict_density",
    "restrict_faces",
    "restrict_mask",
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


def prolong_density(coarse: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample a coarse density to the fine grid: bicubic in 2D, trilinear in 3D, clamped at 0."""
    mode = "bicubic" if coarse.dim() == 2 else "trilinear"
    out = F.interpolate(coarse[None, None], scale_factor=factor, mode=mode, align_corners=False)
    return out[0, 0].clamp(min=0.0)


def coarse_config(config: SmokeConfig, factor: int = 4) -> SmokeConfig:
    """The same shot on a grid ``factor`` times coarser per axis (same physical parameters)."""
    _check_factor(config.shape, factor)
    shape = tuple(n // factor for n in config.shape)
    return replace(config, shape=shape)


class CorrectionNet(nn.Module):
    """A small residual CNN that corrects one coarse step.

    Input channels: density, the cell-centred velocity components (x, y[, z]), the obstacle mask
    and the source mask. Output: corrections of density and of each velocity component at cell
    centres. The last layer is zero-initialised, so the untrained net changes nothing.
    """

    def __init__(self, dims: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims}")
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        channels_in = 1 + dims + 2
        layers: list[nn.Module] = [conv(channels_in, width, 3, padding=1), nn.GELU()]
        for _ in range(depth - 2):
            layers += [conv(width, width, 3, padding=1), nn.GELU()]
        head = conv(width, 1 + dims, 3, padding=1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)  # type: ignore[arg-type]
        layers.append(head)
        self.body = nn.Sequential(*layers)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + dims + 2, [Z,] Y, X)`` -> ``(B, 1 + dims, [Z,] Y, X)``."""
        out: torch.Tensor = self.body(x)
        return out


class SurrogateSolver:
    """The coarse reference solver plus a learned correction after every step (torch level)."""

    def __init__(
        self,
        fine_config: SmokeConfig,
        net: CorrectionNet,
        obstacles: Array | None = None,
        factor: int = 4,
    ) -> None:
        self.factor = factor
        self.fine_config = fine_config
        config = coarse_config(fine_config, factor)
        if obstacles is not None:
            obstacles = restrict_mask(obstacles.astype(float), factor) >= 0.5
        self.solver = ReferenceSolver(config, obstacles)
        self.net = net.to(device=self.solver.device, dtype=self.solver.dtype)

    def prepare_sources(self, sources: Sequence[Source]) -> list[PreparedSource]:
        """Restrict fine-grid sources to the coarse grid and validate them there."""
        coarse = [Source(restrict_mask(s.mask, self.factor), s.rate, s.velocity) for s in sources]
        return self.solver.prepare_sources(coarse)

    def advance(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, Faces]:
        """One coarse step, then the correction; the velocity is re-projected (divergence-free)."""
        solver = self.solver
        density, vel = solver.advance(density, vel, sources)
        centred = faces_to_centre(vel)
        source_mask = torch.zeros_like(density)
        for src in sources:
            source_mask = source_mask + src.mask
        solid = solver.solid.to(density.dtype)
        x = torch.stack([density, *centred, solid, source_mask])[None]
        delta = self.net(x)[0]
        density = (density + delta[0]).clamp(min=0.0).masked_fill(solver.solid, 0.0)
        vel = [v + dv for v, dv in zip(vel, centre_to_faces(list(delta[1:])), strict=True)]
        return density, solver.projection(vel)


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

    Returns:
        Mean over steps of the relative squared errors of density and velocity.

    Gradients flow through the DCT and CG projections; the 2D sparse-LU path (the default with
    obstacles in 2D) runs in SciPy and is not differentiable, so train such shots with
    ``pressure_solver="cg"``.
    """
    if len(target_density) != len(target_vel) or not target_density:
        raise InputError("unrolled_loss needs matching, non-empty density and velocity targets")
    density, vel = start_density, list(start_vel)
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
    return total / len(target_density)


def load_stepper(model_id: str, config: SmokeConfig) -> object:
    """Entry point hosts call for a learned smoke model; no trained surrogate has shipped yet.

    Raises:
        ModelNotFound: always, until the smoke surrogate is trained and in the zoo.
    """
    raise ModelNotFound(
        f"smoke surrogate {model_id!r} has no trained weights in this mlvfx version; use the reference solver"
    )
