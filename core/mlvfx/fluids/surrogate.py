"""The learned smoke surrogate (Solver-in-the-Loop, Um et al. 2020).

The surrogate runs the reference solver on a grid ``factor`` (default 4) times coarser per axis
and adds a small CNN correction after every coarse step; for display, the coarse density is
brought back to the output resolution. Here:

* transfer operators between the fine and the coarse grid: :func:`restrict_density` (cell
  averages, conserves total density), :func:`restrict_faces` (face-flux averages, which keep a
  discretely divergence-free field divergence-free on the coarse grid), :func:`restrict_mask`
  and :func:`prolong_density`;
* :class:`CorrectionNet`, whose last layer starts at zero so an untrained surrogate *is* the
  coarse-only baseline, optionally mirror-symmetrised;
* :class:`SurrogateSolver`, the corrected coarse step (differentiable end to end for training;
  the projection's gradient is the projection itself, :class:`AdjointProjection`);
* :func:`unrolled_loss`, the Solver-in-the-Loop objective: unroll ``k`` corrected steps from a
  noise-perturbed reference state and compare with the restricted reference trajectory;
* :class:`SurrogateStepper` and :func:`load_stepper` / :func:`load_surrogate`: the zoo's trained
  models behind the numpy interface hosts call.

Training lives in :mod:`mlvfx.train.smoke` (``mlvfx train smoke2d|smoke3d``). Not built: a learned
upres (the output upsampling is bicubic in 2D, trilinear in 3D).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlvfx.errors import InputError, ModelNotFound
from mlvfx.fluids.grid import Faces, centre_to_faces, comp_dim, faces_to_centre
from mlvfx.fluids.pressure import Projection
from mlvfx.fluids.reference import Array, HostStepper, PreparedSource, ReferenceSolver, SmokeConfig, Source

__all__ = [
    "CorrectionNet",
    "SurrogateSolver",
    "SurrogateStepper",
    "coarse_config",
    "condition_values",
    "load_stepper",
    "load_surrogate",
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

    Input channels: density, the cell-centred velocity components (x, y[, z]), the obstacle mask,
    the source mask and ``conditions`` constant channels describing the shot (see
    :func:`condition_values`). Output: corrections of density and of each velocity component at
    cell centres. The last layer is zero-initialised, so the untrained net changes nothing.
    """

    def __init__(
        self, dims: int, width: int = 32, depth: int = 4, conditions: int = 0, symmetric: bool = False
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims}")
        if width < 1 or depth < 2 or conditions < 0:
            raise InputError(f"bad CorrectionNet size: width {width}, depth {depth}, conditions {conditions}")
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        channels_in = 1 + dims + 2 + conditions
        layers: list[nn.Module] = [conv(channels_in, width, 3, padding=1), nn.GELU()]
        for _ in range(depth - 2):
            layers += [conv(width, width, 3, padding=1), nn.GELU()]
        head = conv(width, 1 + dims, 3, padding=1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)  # type: ignore[arg-type]
        layers.append(head)
        self.body = nn.Sequential(*layers)
        self.dims = dims
        self.width = width
        self.depth = depth
        self.conditions = conditions
        self.symmetric = symmetric
        # Stored with the weights, so a loaded net knows whether it is mirror-symmetrised.
        self.register_buffer("symmetry", torch.tensor([1.0 if symmetric else 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + dims + 2 + conditions, [Z,] Y, X)`` -> ``(B, 1 + dims, [Z,] Y, X)``.

        A ``symmetric`` net averages its output with that of the X-mirrored input (mirrored back,
        X velocity negated), so it commutes exactly with the left-right mirror, as the solver
        does: a CNN on its own breaks the symmetry of a centred plume a little at every step, and
        the plume's instability amplifies that.
        """
        if not self.symmetric:
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
    """

    def __init__(
        self,
        fine_config: SmokeConfig,
        net: CorrectionNet,
        obstacles: Array | None = None,
        factor: int = 4,
        dtype: str | None = None,
        differentiable: bool = False,
    ) -> None:
        self.factor = factor
        self.fine_config = fine_config
        config = coarse_config(fine_config, factor)
        if dtype is not None:
            config = replace(config, dtype=dtype)
        if obstacles is not None:
            obstacles = restrict_mask(np.asarray(obstacles, dtype=float), factor) >= 0.5
        self.solver = ReferenceSolver(config, obstacles)
        if differentiable:
            self.solver._projection = AdjointProjection(self.solver.projection)  # type: ignore[assignment]
        self.net = net.to(device=self.solver.device, dtype=self.solver.dtype)
        self._conditions = condition_values(fine_config)[: net.conditions]

    def prepare_sources(self, sources: Sequence[Source]) -> list[PreparedSource]:
        """Restrict fine-grid sources to the coarse grid and validate them there."""
        coarse = [Source(restrict_mask(s.mask, self.factor), s.rate, s.velocity) for s in sources]
        return self.solver.prepare_sources(coarse)

    def correct(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, Faces]:
        """The learned correction of a state the coarse solver just produced (re-projected)."""
        solver = self.solver
        centred = faces_to_centre(vel)
        source_mask = torch.zeros_like(density)
        for src in sources:
            source_mask = source_mask + src.mask
        solid = solver.solid.to(density.dtype)
        channels = [density, *centred, solid, source_mask]
        channels += [torch.full_like(density, c) for c in self._conditions]
        delta = self.net(torch.stack(channels)[None])[0]
        density = (density + delta[0]).clamp(min=0.0).masked_fill(solver.solid, 0.0)
        vel = [v + dv for v, dv in zip(vel, centre_to_faces(list(delta[1:])), strict=True)]
        return density, solver.projection(vel)

    def advance(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, Faces]:
        """One coarse step, then the correction; the velocity is re-projected (divergence-free)."""
        density, vel = self.solver.advance(density, vel, sources)
        return self.correct(density, vel, sources)


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
        symmetric = bool(float(weights.get("symmetry", torch.zeros(1)).reshape(-1)[0]) > 0.5)
        net = CorrectionNet(dims, width=width, depth=len(convs), conditions=conditions, symmetric=symmetric)
        weights.setdefault("symmetry", torch.zeros(1))
        net.load_state_dict(weights)
    except (KeyError, IndexError, RuntimeError, InputError) as exc:
        raise InputError(f"{source}: not a smoke surrogate ({exc})") from None
    if factor < 1:
        raise InputError(f"{source}: bad coarsening factor {factor}")
    return net.eval(), factor


class SurrogateStepper(HostStepper):
    """The learned surrogate behind the same numpy interface as :class:`~mlvfx.fluids.reference.Stepper`.

    It keeps the coarse state between calls; inputs that are not its own last output (an artist
    edited the fields, or a host started from a cache) are restricted to the coarse grid.
    Outputs are at the config's (output) resolution: bicubic (2D) or trilinear (3D) density and
    linearly interpolated cell-centred velocity.
    """

    def __init__(self, config: SmokeConfig, net: CorrectionNet, factor: int, dtype: str = "float32") -> None:
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
        self._surrogate: SurrogateSolver | None = None
        self._obstacle_key: bytes | None = None

    def _prepare(self, sources: list[Source], obstacles: Array | None) -> list[PreparedSource]:
        from mlvfx.fluids.reference import _as_grid

        mask = None if obstacles is None else _as_grid(obstacles, self.config.shape, "obstacles") >= 0.5
        key = b"" if mask is None else mask.tobytes()
        if self._surrogate is None or key != self._obstacle_key:
            self._surrogate = SurrogateSolver(self.config, self.net, mask, self.factor, dtype=self.dtype)
            self._obstacle_key = key
            self._state = None
        return self._surrogate.prepare_sources(sources)

    def _advance(
        self, state: tuple[torch.Tensor, Faces], prepared: list[PreparedSource]
    ) -> tuple[torch.Tensor, Faces]:
        assert self._surrogate is not None
        return self._surrogate.advance(state[0], state[1], prepared)

    def _to_host(self, state: tuple[torch.Tensor, Faces]) -> tuple[Array, Array]:
        rho, vel = state
        out_rho = prolong_density(rho, self.factor).float().cpu().numpy()
        centred = torch.stack(faces_to_centre(vel))
        mode = "bilinear" if self.config.dims == 2 else "trilinear"
        fine_v = F.interpolate(centred[None], scale_factor=self.factor, mode=mode, align_corners=False)[0]
        return out_rho, fine_v.movedim(0, -1).float().cpu().numpy()

    def _from_host(self, density: Array | None, velocity: Array | None) -> tuple[torch.Tensor, Faces]:
        """Validate fine inputs (as the reference Stepper does) and restrict them to the coarse grid."""
        from mlvfx.fluids.reference import state_from_arrays

        assert self._surrogate is not None
        coarse = self._surrogate.solver
        rho_f, vel_f = state_from_arrays(density, velocity, self.config.shape, coarse.dtype, coarse.device)
        rho = restrict_density(rho_f, self.factor).masked_fill(coarse.solid, 0.0)
        vel = restrict_faces(vel_f, self.factor)
        vel = [v.masked_fill(m, 0.0) for v, m in zip(vel, coarse.projection.fixed, strict=True)]
        return rho, coarse.projection(vel)


def load_surrogate(model_id: str) -> tuple[CorrectionNet, int, str]:
    """``(net, factor, version)`` of the zoo's smoke surrogate ``model_id`` (fetched if needed).

    Raises:
        ModelNotFound: the model is not in the zoo manifest.
        OfflineError / DownloadError / IntegrityError: as :func:`mlvfx.zoo.fetch`.
    """
    from mlvfx import zoo

    try:
        entry = zoo.load_manifest().get(model_id)
    except ModelNotFound:
        raise ModelNotFound(
            f"smoke surrogate {model_id!r} is not in the model zoo; use the reference solver (--reference)"
        ) from None
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
