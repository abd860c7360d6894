"""The reference Eulerian smoke solver: 2D and 3D, staggered MAC grid, torch (CPU or CUDA).

One step (:meth:`ReferenceSolver.advance`) does, in order:

1. advection of density and velocity by the current (divergence-free) velocity: semi-Lagrangian
   with an RK2 back-trace, by default MacCormack with min/max clamping (Selle et al. 2008) for
   density and plain semi-Lagrangian for velocity; or, for density, ``"conservative"``: a
   flux-form finite-volume update (MUSCL reconstruction with the van Leer limiter, SSP-RK2,
   sub-stepped to a CFL number of 0.5) that conserves total density to round-off in a closed box
   and keeps it non-negative;
2. dissipation (exponential decay of density and velocity);
3. sources: density is added at ``rate * dt * mask`` and, when a source has an inflow velocity,
   the face velocity is blended towards it by the mask;
4. forces: buoyancy (``buoyancy * density`` along +Y), wind (relaxation towards a target
   velocity) and vorticity confinement (Fedkiw et al. 2001);
5. static obstacles (zero velocity on their faces, zero density inside) and the pressure
   projection (:mod:`mlvfx.fluids.pressure`).

Units: the domain is ``domain_width`` wide along X, so a cell is ``dx = domain_width / X``;
velocities are domain units per second, ``dt`` is seconds per step and buoyancy is an
acceleration per unit density. The same physical parameters therefore describe the same shot at
any resolution (what a coarse surrogate needs).

Array conventions at the API edge (:class:`Stepper`):

* 3D: density ``(Z, Y, X)`` float32, velocity cell-centred ``(Z, Y, X, 3)`` with components in
  the order **(x, y, z)** (so ``velocity[..., 0]`` is the X component), +Y is up and index 0
  along Y is the bottom.
* 2D: density ``(Y, X)`` and velocity ``(Y, X, 2)`` with components (x, y); or, equivalently, the
  volume form ``(1, Y, X)`` / ``(1, Y, X, 3)`` (z component zero), which is returned in kind.

Inside, velocity is staggered; converting cell-centred input to faces averages neighbours, which
smooths it slightly. The stepper therefore keeps its exact internal state and reuses it when the
caller passes back, unchanged, the arrays it returned from the previous step.

The computation is deterministic: no random numbers, no atomics (gathers and dense matrix
products only), and the same inputs give bit-identical outputs on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from mlvfx.errors import InputError, SolverError
from mlvfx.fluids.grid import (
    Faces,
    Walls,
    central_gradient,
    centre_to_faces,
    comp_dim,
    divergence,
    face_shape,
    faces_to_centre,
    grid_positions,
    interpolate,
    scalar_to_faces,
    velocity_at,
    velocity_on_grid,
)
from mlvfx.fluids.pressure import PCGSolver, Projection, make_solver

Array = npt.NDArray[Any]

__all__ = [
    "PreparedSource",
    "ReferenceSolver",
    "SmokeConfig",
    "Source",
    "Stepper",
    "box_sdf",
    "mask_from_sdf",
    "relative_divergence",
    "sphere_sdf",
]

MAX_CELLS = 512**3
MIN_CELLS_PER_AXIS = 4

Advection = Literal["semi_lagrangian", "maccormack", "conservative"]
VelocityAdvection = Literal["semi_lagrangian", "maccormack"]
OpenInflow = Literal["border", "clean"]


@dataclass(frozen=True)
class SmokeConfig:
    """Parameters of a smoke simulation.

    Attributes:
        shape: Grid resolution in array order, ``(Y, X)`` for 2D or ``(Z, Y, X)`` for 3D.
        dt: Seconds per step.
        domain_width: Extent of the domain along X in domain units (cell size ``domain_width / X``).
        advection: Density scheme: ``"maccormack"`` (default), ``"semi_lagrangian"`` or
            ``"conservative"`` (flux form; exact mass balance, more diffusive, costs more at
            high CFL numbers).
        velocity_advection: Velocity scheme, ``"semi_lagrangian"`` (default, also for None) or
            ``"maccormack"``. MacCormack on the velocity leaves grid-scale combs in sheared,
            strongly forced flow (seen in the ``wind`` scenario), so it is opt-in.
        rk_order: Order of the back-trace (1 = Euler, 2 = midpoint).
        buoyancy: Upward (+Y) acceleration per unit density, domain units / s^2.
        density_dissipation: Density decay rate, 1/s (0 keeps density).
        velocity_dissipation: Velocity decay rate, 1/s.
        vorticity: Vorticity-confinement strength (dimensionless, 0 disables).
        wind: Target velocity (x, y[, z]) in domain units / s; empty for none.
        wind_rate: Relaxation rate towards ``wind``, 1/s.
        boundary: ``"closed"``, ``"open"``, ``"open_top"`` (closed except +Y) or a per-wall tuple
            ``(x_low, x_high, y_low, y_high[, z_low, z_high])`` of ``"closed"``/``"open"``.
        open_inflow: What density air carries in where the flow enters through an open wall.
            ``"border"`` (default, the reference's data so far): the border cell's own density,
            as clamped sampling gives, so smoke that reaches a wall the wind blows in through
            stays there and feeds itself. ``"clean"``: smoke-free air (a ghost layer of zero
            density beyond open walls; closed walls are unchanged). The surrogate's coarse solver
            uses ``"clean"`` at inference: its corrections leave faint smoke upwind, which
            ``"border"`` traps and piles up (``bench/smoke_runaway.py --open-inflow``).
        pressure_solver: ``"auto"``, ``"dct"``, ``"lu"`` or ``"cg"`` (see :func:`make_solver`).
        cg_tol: Relative residual tolerance of CG.
        cg_max_iter: Iteration cap of CG.
        dtype: ``"float64"`` (default, the reference) or ``"float32"``.
        device: Torch device name; None picks ``MLVFX_DEVICE``, else CUDA when present, else CPU.
        max_cells: Largest grid accepted (guards against typos such as ``--res 20480``).
    """

    shape: tuple[int, ...]
    dt: float = 1.0 / 24.0
    domain_width: float = 1.0
    advection: Advection = "maccormack"
    velocity_advection: VelocityAdvection | None = None
    rk_order: int = 2
    buoyancy: float = 1.0
    density_dissipation: float = 0.0
    velocity_dissipation: float = 0.0
    vorticity: float = 0.0
    wind: tuple[float, ...] = ()
    wind_rate: float = 0.0
    boundary: str | tuple[str, ...] = "closed"
    open_inflow: OpenInflow = "border"
    pressure_solver: str = "auto"
    cg_tol: float = 1e-9
    cg_max_iter: int = 2000
    dtype: str = "float64"
    device: str | None = None
    max_cells: int = MAX_CELLS

    def __post_init__(self) -> None:
        if (
            not isinstance(self.shape, Sequence | np.ndarray)
            or isinstance(self.shape, str | bytes)
            or np.ndim(self.shape) != 1
        ):
            raise InputError(f"smoke grid shape must be a tuple such as (64, 64, 64), got {self.shape!r}")
        shape = tuple(self.shape)
        if any(not isinstance(n, int | np.integer) for n in shape):
            raise InputError(f"smoke grid shape must hold whole numbers of cells, got {shape}")
        if len(shape) not in (2, 3):
            raise InputError(f"smoke grid must be 2D (Y, X) or 3D (Z, Y, X), got shape {shape}")
        if any(not isinstance(n, int | np.integer) or n < MIN_CELLS_PER_AXIS for n in shape):
            raise InputError(
                f"smoke resolution must be at least {MIN_CELLS_PER_AXIS} cells per axis, got {shape}"
            )
        cells = math.prod(int(n) for n in shape)
        if cells > self.max_cells:
            raise InputError(
                f"smoke resolution {shape} has {cells} cells, more than the limit of {self.max_cells}"
            )
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        for name in ("dt", "domain_width"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise InputError(f"smoke {name} must be a positive finite number, got {value}")
        for name in ("buoyancy", "density_dissipation", "velocity_dissipation", "vorticity", "wind_rate"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"smoke {name} must be finite, got {value}")
        for name in ("density_dissipation", "velocity_dissipation", "vorticity", "wind_rate"):
            if getattr(self, name) < 0:
                raise InputError(f"smoke {name} must be >= 0, got {getattr(self, name)}")
        if self.advection not in ("semi_lagrangian", "maccormack", "conservative"):
            raise InputError(
                f"unknown advection {self.advection!r} (use maccormack, semi_lagrangian or conservative)"
            )
        if self.velocity_advection not in (None, "semi_lagrangian", "maccormack"):
            raise InputError(
                f"unknown velocity advection {self.velocity_advection!r} (use maccormack or semi_lagrangian)"
            )
        if self.open_inflow not in ("border", "clean"):
            raise InputError(f"unknown open_inflow {self.open_inflow!r} (use border or clean)")
        if self.rk_order not in (1, 2):
            raise InputError(f"rk_order must be 1 or 2, got {self.rk_order}")
        if self.wind and (len(self.wind) != self.dims or not all(math.isfinite(w) for w in self.wind)):
            raise InputError(f"wind must hold {self.dims} finite components (x, y[, z]), got {self.wind}")
        if self.dtype not in ("float32", "float64"):
            raise InputError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.pressure_solver not in ("auto", "dct", "lu", "cg"):
            raise InputError(f"unknown pressure solver {self.pressure_solver!r} (use auto, dct, lu or cg)")
        if not (0 < self.cg_tol < 1) or self.cg_max_iter < 1:
            raise InputError("cg_tol must be in (0, 1) and cg_max_iter >= 1")
        Walls.from_spec(self.boundary, self.dims)

    @property
    def dims(self) -> int:
        return len(self.shape)

    @property
    def dx(self) -> float:
        """Cell size in domain units."""
        return self.domain_width / self.shape[-1]

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


def sphere_sdf(
    shape: tuple[int, ...], center: Sequence[float], radius: float, domain_width: float = 1.0
) -> Array:
    """Signed distance (domain units, negative inside) to a circle/sphere, sampled at cell centres.

    Args:
        shape: Grid shape ``(Y, X)`` or ``(Z, Y, X)``.
        center: Centre in domain units, in the order (x, y[, z]).
        radius: Radius in domain units.
        domain_width: Domain extent along X.

    Returns:
        float32 array of ``shape``.
    """
    coords = _cell_coords(shape, domain_width)
    dist2 = sum((coords[c] - center[c]) ** 2 for c in range(len(shape)))
    return (np.sqrt(dist2) - radius).astype(np.float32)


def box_sdf(
    shape: tuple[int, ...], center: Sequence[float], half_size: Sequence[float], domain_width: float = 1.0
) -> Array:
    """Signed distance (domain units, negative inside) to an axis-aligned box; ``(x, y[, z])`` order."""
    coords = _cell_coords(shape, domain_width)
    q = [np.abs(coords[c] - center[c]) - half_size[c] for c in range(len(shape))]
    outside: Array = np.sqrt(sum(np.maximum(qc, 0.0) ** 2 for qc in q))
    largest = q[0]
    for qc in q[1:]:
        largest = np.maximum(largest, qc)
    inside: Array = np.minimum(largest, 0.0)
    result: Array = (outside + inside).astype(np.float32)
    return result


def _cell_coords(shape: tuple[int, ...], domain_width: float) -> list[Array]:
    """Cell-centre coordinates in domain units per component (x, y[, z]), broadcastable to ``shape``."""
    dx = domain_width / shape[-1]
    ndim = len(shape)
    out = []
    for c in range(ndim):
        d = ndim - 1 - c
        view = [1] * ndim
        view[d] = shape[d]
        out.append(((np.arange(shape[d]) + 0.5) * dx).reshape(view))
    return out


def mask_from_sdf(sdf: Array, dx: float) -> Array:
    """A soft [0, 1] coverage mask from a signed distance field (negative inside), one cell of ramp."""
    return np.clip(0.5 - np.asarray(sdf, dtype=np.float64) / dx, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Source:
    """An inflow: density emitted into a masked region, optionally with an inflow velocity.

    Attributes:
        mask: Coverage in [0, 1], shape of the density grid (``(Y, X)`` / ``(Z, Y, X)``; 2D also
            accepts ``(1, Y, X)``). Use :meth:`from_sdf` for a signed distance field.
        rate: Density added per second where the mask is 1.
        velocity: Inflow velocity (x, y[, z]) in domain units / s, or empty to leave velocity alone.
    """

    mask: Array
    rate: float = 1.0
    velocity: tuple[float, ...] = ()

    @staticmethod
    def from_sdf(sdf: Array, dx: float, rate: float = 1.0, velocity: tuple[float, ...] = ()) -> Source:
        """A source covering the inside (negative values) of a signed distance field in domain units."""
        return Source(mask_from_sdf(sdf, dx), rate, velocity)


@dataclass
class PreparedSource:
    """A :class:`Source` validated and moved to the solver's device (see ``prepare_sources``)."""

    mask: torch.Tensor
    face_masks: list[torch.Tensor] | None
    rate: float
    velocity: tuple[float, ...]


@dataclass
class StepStats:
    """Diagnostics of the last step."""

    cg_iterations: int = 0
    cg_residual: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class ReferenceSolver:
    """The torch-level solver: state tensors in, state tensors out (staggered velocity)."""

    def __init__(self, config: SmokeConfig, obstacles: Array | None = None) -> None:
        from mlvfx.config import torch_device

        self.config = config
        self.device = torch_device(config.device)
        self.dtype = config.torch_dtype
        if self.device.type == "mps" and self.dtype == torch.float64:
            # Apple's MPS has no float64; torch's own error named no remedy (an audit).
            raise InputError(
                "the reference solver runs in float64, which Apple's MPS device does not support: "
                "run it on the CPU (MLVFX_DEVICE=cpu) or in float32"
            )
        self.walls = Walls.from_spec(config.boundary, config.dims)
        self.stats = StepStats()
        self._positions: dict[int, list[torch.Tensor]] = {}
        self._projection: Projection | None = None
        self._obstacle_key: bytes | None = None
        self.set_obstacles(obstacles)

    # -- setup -----------------------------------------------------------------------------------

    def set_obstacles(self, obstacles: Array | None) -> None:
        """Set the static obstacle mask (bool or [0, 1], >= 0.5 is solid); refactorises only on change."""
        shape = self.config.shape
        solid_np = (
            np.zeros(shape, dtype=bool)
            if obstacles is None
            else _as_grid(obstacles, shape, "obstacles") >= 0.5
        )
        key = solid_np.tobytes()
        if self._projection is not None and key == self._obstacle_key:
            return
        if solid_np.all():
            raise InputError("obstacles cover the whole smoke domain")
        solid = torch.as_tensor(solid_np, device=self.device)
        solver, fixed = make_solver(
            self.config.pressure_solver,
            solid,
            self.walls,
            self.dtype,
            tol=self.config.cg_tol,
            max_iter=self.config.cg_max_iter,
        )
        self._projection = Projection(solver, fixed, self.walls, solid)
        self._obstacle_key = key

    @property
    def projection(self) -> Projection:
        assert self._projection is not None
        return self._projection

    @property
    def solid(self) -> torch.Tensor:
        return self.projection.solid

    def zeros(self) -> tuple[torch.Tensor, Faces]:
        """An empty state: zero density ``(Y, X)``/``(Z, Y, X)`` and zero face velocities."""
        shape = self.config.shape
        density = torch.zeros(shape, dtype=self.dtype, device=self.device)
        vel = [
            torch.zeros(
                tuple(n + 1 if d == comp_dim(c, len(shape)) else n for d, n in enumerate(shape)),
                dtype=self.dtype,
                device=self.device,
            )
            for c in range(len(shape))
        ]
        return density, vel

    def prepare_sources(self, sources: Sequence[Source]) -> list[PreparedSource]:
        """Validate sources against the grid and obstacles and move them to the device."""
        shape = self.config.shape
        solid_np = self.solid.cpu().numpy()
        out = []
        for i, src in enumerate(sources):
            mask = _as_grid(src.mask, shape, f"source {i} mask")
            if mask.min() < 0 or mask.max() > 1:
                raise InputError(f"source {i} mask must lie in [0, 1]")
            if not math.isfinite(src.rate) or src.rate < 0:
                raise InputError(f"source {i} rate must be finite and >= 0 (no smoke sinks), got {src.rate}")
            if src.velocity and (
                len(src.velocity) != self.config.dims or not all(math.isfinite(v) for v in src.velocity)
            ):
                raise InputError(
                    f"source {i} velocity must hold {self.config.dims} finite components (x, y[, z])"
                )
            check_source_outside(i, mask, solid_np)
            m = torch.as_tensor(mask, dtype=self.dtype, device=self.device).masked_fill(self.solid, 0.0)
            faces = [scalar_to_faces(m, c) for c in range(self.config.dims)] if src.velocity else None
            out.append(PreparedSource(m, faces, float(src.rate), tuple(float(v) for v in src.velocity)))
        return out

    # -- the step --------------------------------------------------------------------------------

    def advance(
        self, density: torch.Tensor, vel: Faces, sources: Sequence[PreparedSource] = ()
    ) -> tuple[torch.Tensor, Faces]:
        """One time step on device tensors; returns new density and divergence-free face velocity."""
        cfg = self.config
        dt = cfg.dt
        ndim = cfg.dims
        vel_scheme = cfg.velocity_advection or "semi_lagrangian"
        traces = {g: self._traces(g, vel, vel_scheme) for g in range(ndim)}
        if cfg.advection == "conservative":
            density = self._advect_conservative(density, vel)
        else:
            density = self._advect_density(density, self._traces(-1, vel, cfg.advection))
        vel = [self._advect(vel[c], comp_dim(c, ndim), traces[c]) for c in range(ndim)]
        if cfg.density_dissipation > 0:
            density = density * math.exp(-cfg.density_dissipation * dt)
        if cfg.velocity_dissipation > 0:
            decay = math.exp(-cfg.velocity_dissipation * dt)
            vel = [v * decay for v in vel]
        for src in sources:
            density = density + (src.rate * dt) * src.mask
            if src.face_masks is not None:
                vel = [
                    v + fm * (src.velocity[c] - v)
                    for c, (v, fm) in enumerate(zip(vel, src.face_masks, strict=True))
                ]
        if cfg.buoyancy != 0:
            vel[1] = vel[1] + (dt * cfg.buoyancy) * scalar_to_faces(density, 1)
        if cfg.wind and cfg.wind_rate > 0:
            blend = 1.0 - math.exp(-cfg.wind_rate * dt)
            vel = [v + blend * (cfg.wind[c] - v) for c, v in enumerate(vel)]
        if cfg.vorticity > 0:
            force = self._vorticity_force(vel)
            vel = [v + dt * scalar_to_faces(f, c) for c, (v, f) in enumerate(zip(vel, force, strict=True))]
        density = density.masked_fill(self.solid, 0.0)
        vel = self.projection(vel)
        solver = self.projection.solver
        if isinstance(solver, PCGSolver):
            self.stats.cg_iterations = solver.last_iterations
            self.stats.cg_residual = solver.last_residual
        return density, vel

    def _grid_positions(self, g: int) -> list[torch.Tensor]:
        if g not in self._positions:
            shape = self.config.shape
            stagger = None if g < 0 else comp_dim(g, len(shape))
            pos = grid_positions(shape, stagger, self.dtype, self.device)
            full = tuple(n + 1 if d == stagger else n for d, n in enumerate(shape))
            self._positions[g] = [p.expand(full).contiguous() for p in pos]
        return self._positions[g]

    def _traces(
        self, g: int, vel: Faces, scheme: str
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Back-traced (and, for MacCormack, forward-traced) positions of grid ``g`` (-1 = cells)."""
        pos = self._grid_positions(g)
        # The first RK stage samples at the grid's own points, where interpolation reduces to
        # neighbour averages: exact and much cheaper than a general gather.
        u0 = velocity_on_grid(vel, None if g < 0 else comp_dim(g, len(pos)))
        back = self._trace(pos, vel, u0, -1.0)
        fwd = self._trace(pos, vel, u0, 1.0) if scheme == "maccormack" else None
        return back, fwd

    def _trace(
        self, pos: list[torch.Tensor], vel: Faces, u0: list[torch.Tensor], sign: float
    ) -> list[torch.Tensor]:
        ndim = len(pos)
        k = sign * self.config.dt / self.config.dx
        u = u0
        if self.config.rk_order == 2:
            mid = [pos[d] + (0.5 * k) * u[ndim - 1 - d] for d in range(ndim)]
            u = velocity_at(vel, mid)
        return [pos[d] + k * u[ndim - 1 - d] for d in range(ndim)]

    def _advect(
        self,
        f: torch.Tensor,
        stagger: int | None,
        traces: tuple[list[torch.Tensor], list[torch.Tensor] | None],
    ) -> torch.Tensor:
        back, fwd = traces
        if fwd is None:
            return interpolate(f, stagger, back)[0]
        value, lo, hi = interpolate(f, stagger, back, with_bounds=True)
        assert lo is not None and hi is not None
        returned = interpolate(value, stagger, fwd)[0]
        corrected = value + 0.5 * (f - returned)
        return torch.minimum(torch.maximum(corrected, lo), hi)

    def _advect_density(
        self, density: torch.Tensor, traces: tuple[list[torch.Tensor], list[torch.Tensor] | None]
    ) -> torch.Tensor:
        """Semi-Lagrangian / MacCormack density advection with the config's open-wall inflow."""
        if self.config.open_inflow == "border" or all(all(c) for c in self.walls.closed):
            return self._advect(density, None, traces)
        # The back-trace samples a grid with one ghost layer per side: zero density beyond open
        # walls, a copy of the border beyond closed ones (there clamping already gave the border
        # value). MacCormack's forward trace keeps the clamped border: beyond an outflow wall the
        # advected field is the smoke that left, not clean air (zeros there would read as an
        # error and add smoke at the outflow wall).
        back, fwd = traces
        back = [p + 1.0 for p in back]
        value, lo, hi = interpolate(self._ghosted(density), None, back, with_bounds=fwd is not None)
        if fwd is None:
            return value
        assert lo is not None and hi is not None
        returned = interpolate(value, None, fwd)[0]
        corrected = value + 0.5 * (density - returned)
        return torch.minimum(torch.maximum(corrected, lo), hi)

    def _ghosted(self, field: torch.Tensor) -> torch.Tensor:
        """``field`` padded by one cell per side: zeros beyond open walls, border copies beyond closed."""
        ndim = field.dim()
        for c in range(ndim):
            dim = comp_dim(c, ndim)
            n = field.shape[dim]
            low_closed, high_closed = self.walls.closed[c]
            low = field.narrow(dim, 0, 1)
            high = field.narrow(dim, n - 1, 1)
            low = low if low_closed else torch.zeros_like(low)
            high = high if high_closed else torch.zeros_like(high)
            field = torch.cat([low, field, high], dim=dim)
        return field

    def _advect_conservative(self, density: torch.Tensor, vel: Faces) -> torch.Tensor:
        """Flux-form advection: exact mass balance (fluxes through closed walls and obstacles are 0)."""
        ndim = density.dim()
        courant = self.config.dt / self.config.dx
        speed = sum(float(v.detach().abs().max()) for v in vel) * courant
        substeps = max(1, math.ceil(speed / 0.5))
        k = courant / substeps
        clean = self.config.open_inflow == "clean"

        def rate(rho: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(rho)
            for c in range(ndim):
                dim = comp_dim(c, ndim)
                n = rho.shape[dim]
                # Zero-gradient ghosts: open walls let smoke leave with the boundary value.
                padded = torch.cat([rho.narrow(dim, 0, 1), rho, rho.narrow(dim, n - 1, 1)], dim=dim)
                diff = torch.diff(padded, dim=dim)  # n + 1 differences
                left, right = diff.narrow(dim, 0, n), diff.narrow(dim, 1, n)
                slope = torch.where(left * right > 0, 2 * left * right / (left + right + 1e-300), 0.0)
                hi = rho + 0.5 * slope  # value at each cell's high face
                lo = rho - 0.5 * slope  # value at each cell's low face
                # Face i sits between cell i - 1 (its hi side) and cell i (its lo side). Beyond a
                # wall the ghost carries the border value, or clean air (zero) with "clean"
                # (closed walls pass no flux either way).
                ghost_l, ghost_r = lo.narrow(dim, 0, 1), hi.narrow(dim, n - 1, 1)
                if clean:
                    ghost_l, ghost_r = torch.zeros_like(ghost_l), torch.zeros_like(ghost_r)
                upwind_l = torch.cat([ghost_l, hi], dim=dim)
                upwind_r = torch.cat([lo, ghost_r], dim=dim)
                u = vel[c]
                flux = torch.where(u > 0, u * upwind_l, u * upwind_r)
                out = out - torch.diff(flux, dim=dim)
            return out * k

        for _ in range(substeps):
            stage = density + rate(density)
            density = 0.5 * (density + stage + rate(stage))
        return density

    def _vorticity_force(self, vel: Faces) -> list[torch.Tensor]:
        """Vorticity-confinement force per component (x, y[, z]) at cell centres, domain units / s^2."""
        dx = self.config.dx
        eps = self.config.vorticity
        uc = faces_to_centre(vel)
        grads = [central_gradient(u) for u in uc]  # grads[i][j] = d u_i / d x_j (per cell)
        tiny = 1e-12 / dx
        tiny2 = tiny * tiny  # inside every sqrt: its gradient at exactly 0 (solid cells, still air) is NaN
        if len(uc) == 2:
            omega = (grads[1][0] - grads[0][1]) / dx
            gmag = central_gradient(omega.abs())
            norm = _soft_norm(torch.sqrt(gmag[0] ** 2 + gmag[1] ** 2 + tiny2), tiny)
            nx, ny = gmag[0] / norm, gmag[1] / norm
            return [eps * dx * ny * omega, -eps * dx * nx * omega]
        wx = (grads[2][1] - grads[1][2]) / dx
        wy = (grads[0][2] - grads[2][0]) / dx
        wz = (grads[1][0] - grads[0][1]) / dx
        mag = torch.sqrt(wx**2 + wy**2 + wz**2 + tiny2)
        gmag = central_gradient(mag)
        norm = _soft_norm(torch.sqrt(gmag[0] ** 2 + gmag[1] ** 2 + gmag[2] ** 2 + tiny2), tiny)
        nx, ny, nz = gmag[0] / norm, gmag[1] / norm, gmag[2] / norm
        return [
            eps * dx * (ny * wz - nz * wy),
            eps * dx * (nz * wx - nx * wz),
            eps * dx * (nx * wy - ny * wx),
        ]

    # -- diagnostics -----------------------------------------------------------------------------

    def divergence_residual(self, vel: Faces) -> float:
        """Max |discrete divergence| over fluid cells, relative to max |face velocity| (dimensionless)."""
        return relative_divergence(vel, self.solid)

    def mass(self, density: torch.Tensor) -> float:
        """Total density times cell volume (domain units^dims)."""
        return float(density.sum()) * self.config.dx**self.config.dims


def check_source_outside(index: int, mask: Array, solid: Array) -> None:
    """Raise ``InputError`` if the source's covered cells (``mask > 0``) are all ``solid``."""
    covered = mask > 0
    if covered.any() and solid[covered].all():
        raise InputError(f"source {index} lies entirely inside the obstacles")


def _soft_norm(length: torch.Tensor, tiny: float) -> torch.Tensor:
    """``length`` floored at 1e-4 of its maximum, so N = grad|w| / |grad|w|| stays continuous.

    At an extremum of ``|w|`` the gradient is pure round-off and plain normalisation would turn it
    into an arbitrary unit vector (and a full-strength force), which breaks mirror symmetry within
    a few steps; flooring the length damps the force there instead.
    """
    return torch.clamp(length, min=1e-4 * float(length.detach().max()) + tiny)


def relative_divergence(vel: Faces, solid: torch.Tensor | None = None) -> float:
    """``max |sum of face differences|`` over fluid cells divided by ``max |u|`` (0 for a still field)."""
    div = divergence(vel)
    if solid is not None:
        div = div.masked_fill(solid, 0.0)
    scale = max(float(v.abs().max()) for v in vel)
    return 0.0 if scale == 0.0 else float(div.abs().max()) / scale


def _as_grid(array: Array, shape: tuple[int, ...], what: str) -> Array:
    """Check ``array`` against the grid ``shape`` (2D also accepts ``(1, Y, X)``) and that it is finite."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InputError(f"{what} must be a real numeric array, got dtype {a.dtype}")
    if len(shape) == 2 and a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.shape != shape:
        raise InputError(f"{what} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(a)  # a flipped or strided view: torch takes no negative strides


class HostStepper:
    """The numpy ``step(...) -> (density, velocity)`` interface hosts call, over any torch-level solver.

    Subclasses say how to prepare sources and obstacles, convert host arrays into solver state,
    advance it, and turn it back into arrays at the host's resolution. The state is kept between
    calls: when the host passes back exactly what the last step returned, the solver continues
    from its own (unrounded) state instead of converting the arrays again.
    """

    config: SmokeConfig

    def __init__(self, config: SmokeConfig) -> None:
        self.config = config
        self._state: Any = None
        self._last: tuple[Array, Array] | None = None

    def reset(self) -> None:
        """Forget the internal state (the next step converts its inputs afresh)."""
        self._state = None
        self._last = None

    def step(
        self,
        density: Array | None,
        velocity: Array | None,
        sources: Sequence[Source] | None = None,
        obstacles: Array | None = None,
    ) -> tuple[Array, Array]:
        """Advance the smoke by one step of ``config.dt`` seconds.

        Args:
            density: ``(Z, Y, X)`` (3D) or ``(Y, X)`` / ``(1, Y, X)`` (2D) float array, or None for
                zero.
            velocity: Cell-centred velocity ``(Z, Y, X, 3)`` (3D) or ``(Y, X, 2)`` / ``(1, Y, X, 3)``
                (2D), components in the order (x, y[, z]), domain units / s; None for still air.
            sources: Inflows (:class:`Source`), or None.
            obstacles: Static obstacle mask of the density shape (bool, or [0, 1] with >= 0.5
                solid), or None; for a signed distance field pass ``sdf < 0``. Changing it
                refactorises the pressure solver (seconds in 2D at 256^2), so keep it fixed.

        Returns:
            ``(density, velocity)`` as float32 arrays; in 2D the volume form ``(1, Y, X)`` /
            ``(1, Y, X, 3)`` when the density or velocity came in that form, else ``(Y, X)`` /
            ``(Y, X, 2)``.

        Raises:
            InputError: Wrong shapes, NaN/inf values, or a source entirely inside the obstacles.
            SolverError: the step's result is not finite (inputs far beyond a smoke shot's range).
        """
        ndim = self.config.dims
        volume_form = ndim == 3 or (
            (density is not None and np.asarray(density).ndim == 3)
            or (velocity is not None and np.asarray(velocity).ndim == 4)
        )
        if isinstance(sources, Source):  # one source, not in a list
            sources = [sources]
        prepared = self._prepare(list(sources or []), obstacles)
        if (
            self._state is not None
            and self._last is not None
            and _same(density, self._last[0])
            and _same(velocity, self._last[1])
        ):
            state = self._state
        else:
            state = self._from_host(density, velocity)
        # inference_mode, not no_grad: no version counters or view tracking on the many small
        # tensors of a step, which is 17 % of a 2D surrogate step (docs/BENCHMARKS.md, stop 22).
        with torch.inference_mode():
            state = self._advance(state, prepared)
            out_rho, out_vel = self._to_host(state)
        if not (np.isfinite(out_rho).all() and np.isfinite(out_vel).all()):
            # Finite but huge inputs (1e38) came back as NaN without a word (a fuzz audit).
            self.reset()
            raise SolverError(
                "the simulation went non-finite (NaN or inf) in this step: the density or velocity "
                "passed in is far outside a smoke shot's range"
            )
        self._state = state
        if ndim == 2 and volume_form:
            out_rho = out_rho[None]
            out_vel = np.concatenate([out_vel, np.zeros_like(out_vel[..., :1])], axis=-1)[None]
        self._last = (out_rho, out_vel)
        return out_rho.copy(), out_vel.copy()

    def _prepare(self, sources: list[Source], obstacles: Array | None) -> Any:
        raise NotImplementedError

    def _from_host(self, density: Array | None, velocity: Array | None) -> Any:
        raise NotImplementedError

    def _advance(self, state: Any, prepared: Any) -> Any:
        raise NotImplementedError

    def _to_host(self, state: Any) -> tuple[Array, Array]:
        raise NotImplementedError


class Stepper(HostStepper):
    """Stateful numpy stepper for hosts (Blender bake, Houdini SOP): ``step(...) -> (density, velocity)``.

    Example:
        >>> cfg = SmokeConfig(shape=(16, 16, 16))
        >>> stepper = Stepper(cfg)
        >>> src = Source.from_sdf(sphere_sdf(cfg.shape, (0.5, 0.2, 0.5), 0.1), cfg.dx, rate=2.0)
        >>> density, velocity = stepper.step(None, None, [src])
        >>> density.shape, velocity.shape
        ((16, 16, 16), (16, 16, 16, 3))
    """

    def __init__(self, config: SmokeConfig) -> None:
        super().__init__(config)
        self.solver = ReferenceSolver(config)

    def _prepare(self, sources: list[Source], obstacles: Array | None) -> list[PreparedSource]:
        self.solver.set_obstacles(obstacles)
        return self.solver.prepare_sources(sources)

    def _from_host(self, density: Array | None, velocity: Array | None) -> tuple[torch.Tensor, Faces]:
        return self._to_tensors(density, velocity, self.config.shape)

    def _advance(
        self, state: tuple[torch.Tensor, Faces], prepared: list[PreparedSource]
    ) -> tuple[torch.Tensor, Faces]:
        return self.solver.advance(state[0], state[1], prepared)

    def _to_host(self, state: tuple[torch.Tensor, Faces]) -> tuple[Array, Array]:
        rho_t, vel_t = state
        out_rho = rho_t.float().cpu().numpy()
        centred = torch.stack(faces_to_centre(vel_t), dim=-1).float().cpu().numpy()
        return out_rho, centred

    def _to_tensors(
        self, density: Array | None, velocity: Array | None, shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, Faces]:
        solver = self.solver
        rho_t, vel_t = state_from_arrays(density, velocity, shape, solver.dtype, solver.device)
        rho_t = rho_t.masked_fill(solver.solid, 0.0)
        vel_t = [f.masked_fill(m, 0.0) for f, m in zip(vel_t, solver.projection.fixed, strict=True)]
        return rho_t, vel_t


def state_from_arrays(
    density: Array | None,
    velocity: Array | None,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, Faces]:
    """Validate host arrays (see :meth:`Stepper.step`) and turn them into a solver state.

    Returns density ``(Y, X)``/``(Z, Y, X)`` and face velocities, zero where an input is None.

    Raises:
        InputError: Wrong shapes, negative density, or NaN/inf values.
    """
    ndim = len(shape)
    rho_t = torch.zeros(shape, dtype=dtype, device=device)
    vel_t = [torch.zeros(face_shape(shape, c), dtype=dtype, device=device) for c in range(ndim)]
    if density is not None:
        rho = _as_grid(density, shape, "density")
        if rho.min() < 0:
            raise InputError("density must be >= 0")
        rho_c = np.ascontiguousarray(rho)  # a flipped view too
        if not rho_c.flags.writeable:  # a host's read-only array: torch warns on sharing it
            rho_c = rho_c.copy()
        rho_t = torch.as_tensor(rho_c, dtype=dtype, device=device)
    if velocity is not None:
        v = np.asarray(velocity)
        if ndim == 2 and v.ndim == 4 and v.shape[0] == 1 and v.shape[-1] == 3:
            v = v[0, ..., :2]
        if v.shape != (*shape, ndim):
            raise InputError(f"velocity has shape {np.asarray(velocity).shape}, expected {(*shape, ndim)}")
        if not np.isfinite(v).all():
            raise InputError("velocity contains NaN or infinite values")
        v = np.ascontiguousarray(v)
        if not v.flags.writeable:
            v = v.copy()
        t = torch.as_tensor(v, dtype=dtype, device=device)
        vel_t = centre_to_faces([t[..., c] for c in range(ndim)])
    return rho_t, vel_t


def _same(given: Array | None, last: Array) -> bool:
    if given is None:
        return False
    a = np.asarray(given)
    return a.shape == last.shape and bool(np.array_equal(a, last))
