"""Pressure projection on a MAC grid: exact fast-diagonalisation (DCT), sparse LU and preconditioned CG.

All solvers work on the *unscaled* problem: with ``D`` the face-difference divergence and ``G``
the cell-difference gradient (zero on fixed faces, a zero-pressure ghost cell beyond open walls),
they solve ``D G phi = D u`` on the fluid cells and the projection is ``u <- u - G phi``. The
grid spacing and time step cancel, so the discrete divergence after projection equals the
solver residual: round-off for the DCT and LU solvers, the tolerance for CG.

* :class:`FastDiagSolver` (empty box): the Laplacian is a Kronecker sum of 1D tridiagonal
  matrices, one per axis, so it is diagonalised by a separable orthogonal transform. With closed
  walls on both ends of an axis the transform is exactly the orthonormal DCT-II; an open wall
  (ghost pressure 0) gives the matching sine/cosine variant. The transforms are dense ``n x n``
  matrix products, so the solve is exact, deterministic and runs on any torch device.
* :class:`SparseLUSolver` (fixed obstacle mask, 2D): a ``scipy.sparse.linalg.splu`` factorisation
  built once per mask and reused every step.
* :class:`PCGSolver` (obstacles in 3D, or anywhere): conjugate gradients preconditioned by the
  empty-box inverse, on the torch device, to a relative residual tolerance.

Enclosed fluid regions with no open wall make the Laplacian singular; the right-hand side is
projected onto its range (zero mean per region) and each region's pressure is pinned or
mean-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from mlvfx.fluids.grid import Faces, Walls, comp_dim, divergence, fixed_faces

Array = npt.NDArray[Any]

__all__ = [
    "FastDiagSolver",
    "PCGSolver",
    "PressureSolver",
    "Projection",
    "SparseLUSolver",
    "gradient_faces",
    "laplacian",
    "make_solver",
]


def gradient_faces(phi: torch.Tensor, fixed: list[torch.Tensor], walls: Walls) -> Faces:
    """Unscaled face gradient of a cell field; zero on fixed faces, ghost value 0 beyond open walls."""
    ndim = phi.dim()
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        zero = torch.zeros_like(phi.narrow(dim, 0, 1))
        g = torch.diff(torch.cat([zero, phi, zero], dim=dim), dim=dim)
        out.append(g.masked_fill(fixed[c], 0.0))
    return out


def laplacian(phi: torch.Tensor, fixed: list[torch.Tensor], walls: Walls) -> torch.Tensor:
    """The unscaled pressure Laplacian ``D G phi`` (negative semi-definite)."""
    return divergence(gradient_faces(phi, fixed, walls))


def _axis_matrix(n: int, low_closed: bool, high_closed: bool) -> Array:
    t = np.zeros((n, n))
    idx = np.arange(n)
    t[idx, idx] = -2.0
    t[idx[:-1], idx[:-1] + 1] = 1.0
    t[idx[1:], idx[1:] - 1] = 1.0
    if low_closed:
        t[0, 0] += 1.0
    if high_closed:
        t[n - 1, n - 1] += 1.0
    return t


def axis_basis(n: int, low_closed: bool, high_closed: bool) -> tuple[Array, Array]:
    """Eigenvalues and orthonormal eigenvectors (columns) of one axis's 1D pressure Laplacian.

    For ``low_closed and high_closed`` the columns are the orthonormal DCT-II basis
    ``cos(pi * k * (j + 1/2) / n)`` with eigenvalues ``-4 sin^2(pi k / 2n)``, written in closed
    form; the other wall combinations are diagonalised numerically (float64, exact to round-off).
    """
    if n == 1:
        lam = np.array([-(0.0 if low_closed else 1.0) - (0.0 if high_closed else 1.0)])
        return lam, np.ones((1, 1))
    if low_closed and high_closed:
        j = np.arange(n)[:, None] + 0.5
        k = np.arange(n)[None, :]
        q = np.cos(np.pi * k * j / n)
        q /= np.linalg.norm(q, axis=0, keepdims=True)
        lam = -4.0 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2
        return lam, q
    lam, q = np.linalg.eigh(_axis_matrix(n, low_closed, high_closed))
    return lam, q


class FastDiagSolver:
    """Exact solver for the empty box (no obstacles) with any mix of closed and open walls."""

    def __init__(
        self, shape: tuple[int, ...], walls: Walls, dtype: torch.dtype, device: torch.device
    ) -> None:
        ndim = len(shape)
        self.shape = shape
        self.bases: list[torch.Tensor] = []  # per tensor dimension
        eig_sum: torch.Tensor | None = None
        for d in range(ndim):
            c = ndim - 1 - d
            lam, q = axis_basis(shape[d], *walls.closed[c])
            self.bases.append(torch.as_tensor(q, dtype=dtype, device=device))
            view = [1] * ndim
            view[d] = shape[d]
            term = torch.as_tensor(lam, dtype=dtype, device=device).view(view)
            eig_sum = term if eig_sum is None else eig_sum + term
        assert eig_sum is not None
        scale = eig_sum.abs().max().clamp(min=1.0)
        self.null = eig_sum.abs() < 1e-9 * scale
        self.inv_eig = torch.where(
            self.null, torch.zeros_like(eig_sum), 1.0 / torch.where(self.null, 1.0, eig_sum)
        )

    def _transform(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        ndim = x.dim()
        for d in range(ndim):
            q = self.bases[d] if inverse else self.bases[d].T
            moved = x.movedim(d, -1)
            x = torch.matmul(moved, q.T).movedim(-1, d)
        return x

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """Return ``phi`` with ``laplacian(phi) == rhs`` (least-squares/mean-free where singular)."""
        return self._transform(self._transform(rhs, inverse=False) * self.inv_eig, inverse=True)


def _label_regions(fluid: Array, walls: Walls) -> tuple[Array, int, Array]:
    """Face-connected fluid regions: labels, count and, per region, whether it touches an open wall."""
    from scipy import ndimage  # type: ignore[import-untyped]

    labels, count = ndimage.label(fluid)
    ndim = fluid.ndim
    is_open = np.zeros(count + 1, dtype=bool)
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        for side, closed in enumerate(walls.closed[c]):
            if closed:
                continue
            edge = np.take(labels, 0 if side == 0 else fluid.shape[dim] - 1, axis=dim)
            is_open[np.unique(edge)] = True
    is_open[0] = True  # label 0 is solid
    return labels, count, is_open


@dataclass
class _Regions:
    labels: torch.Tensor  # (cells) long, 0 = solid
    closed_ids: list[int]  # regions that need mean removal

    def remove_mean(self, rhs: torch.Tensor) -> torch.Tensor:
        for rid in self.closed_ids:
            sel = self.labels == rid
            rhs = torch.where(sel, rhs - rhs[sel].mean(), rhs)
        return rhs


def _regions(solid: torch.Tensor, walls: Walls) -> tuple[_Regions, Array, Array]:
    fluid = ~solid.cpu().numpy()
    labels, count, is_open = _label_regions(fluid, walls)
    closed_ids = [r for r in range(1, count + 1) if not is_open[r]]
    return _Regions(torch.as_tensor(labels, device=solid.device), closed_ids), labels, is_open


class SparseLUSolver:
    """Sparse LU of the fluid-cell Laplacian for a fixed obstacle mask (factorised once, CPU, float64)."""

    def __init__(self, solid: torch.Tensor, walls: Walls) -> None:
        import scipy.sparse as sp  # type: ignore[import-untyped]
        from scipy.sparse.linalg import splu  # type: ignore[import-untyped]

        self.regions, labels, _ = _regions(solid, walls)
        solid_np = solid.cpu().numpy()
        fluid = ~solid_np
        shape = fluid.shape
        index = -np.ones(shape, dtype=np.int64)
        self.fluid_flat = np.flatnonzero(fluid)
        m = self.fluid_flat.size
        index.reshape(-1)[self.fluid_flat] = np.arange(m)
        rows: list[Array] = []
        cols: list[Array] = []
        vals: list[Array] = []
        diag = np.zeros(m)
        ndim = len(shape)
        for c in range(ndim):
            dim = comp_dim(c, ndim)
            n = shape[dim]
            a = index.take(np.arange(n - 1), axis=dim)
            b = index.take(np.arange(1, n), axis=dim)
            both = (a >= 0) & (b >= 0)
            ia, ib = a[both], b[both]
            rows += [ia, ib]
            cols += [ib, ia]
            vals += [np.ones(ia.size), np.ones(ia.size)]
            np.add.at(diag, ia, -1.0)
            np.add.at(diag, ib, -1.0)
            for side, closed in enumerate(walls.closed[c]):
                if closed:
                    continue
                edge = np.asarray(index.take([0 if side == 0 else n - 1], axis=dim))
                e = edge[edge >= 0]
                np.add.at(diag, e, -1.0)
        # Pin one cell of every enclosed region so the system is non-singular.
        self.pinned: list[int] = []
        lab_fluid = labels.reshape(-1)[self.fluid_flat]
        for rid in self.regions.closed_ids:
            self.pinned.append(int(np.flatnonzero(lab_fluid == rid)[0]))
        r = np.concatenate([*rows, np.arange(m)])
        cc = np.concatenate([*cols, np.arange(m)])
        v = np.concatenate([*vals, diag])
        mat = sp.coo_matrix((-v, (r, cc)), shape=(m, m)).tocsr()
        if self.pinned:
            keep = np.ones(m)
            keep[self.pinned] = 0.0
            d = sp.diags(keep)
            mat = d @ mat @ d + sp.diags(1.0 - keep)
        self.lu = splu(mat.tocsc())
        self.shape = shape

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        rhs = self.regions.remove_mean(rhs)
        b = -rhs.detach().cpu().double().numpy().reshape(-1)[self.fluid_flat]
        if self.pinned:
            b[self.pinned] = 0.0
        x = self.lu.solve(b)
        phi = np.zeros(int(np.prod(self.shape)))
        phi[self.fluid_flat] = x
        return torch.as_tensor(phi.reshape(self.shape), dtype=rhs.dtype, device=rhs.device)


STALL = 50
"""CG stops after this many iterations in a row without a new best residual."""
FAIL_RESIDUAL = 1e-3
"""A CG solve whose best relative residual stays above this raises :class:`SolverError`."""


class PCGSolver:
    """Conjugate gradients on the fluid cells, preconditioned by the exact empty-box inverse."""

    def __init__(
        self,
        solid: torch.Tensor,
        walls: Walls,
        fixed: list[torch.Tensor],
        dtype: torch.dtype,
        tol: float,
        max_iter: int,
    ) -> None:
        self.fluid = ~solid
        self.walls = walls
        self.fixed = fixed
        self.tol = tol
        self.max_iter = max_iter
        self.box = FastDiagSolver(tuple(solid.shape), walls, dtype, solid.device)
        self.regions = _regions(solid, walls)[0]
        self.last_iterations = 0
        self.last_residual = 0.0

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return (-laplacian(x, self.fixed, self.walls)).masked_fill(~self.fluid, 0.0)

    def _precondition(self, r: torch.Tensor) -> torch.Tensor:
        return (-self.box.solve(r)).masked_fill(~self.fluid, 0.0)

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        b = -self.regions.remove_mean(rhs.masked_fill(~self.fluid, 0.0))
        x = torch.zeros_like(b)
        b_norm = float(torch.linalg.vector_norm(b.detach()))
        self.last_iterations = 0
        self.last_residual = 0.0
        if b_norm == 0.0:
            return x
        r = b.clone()
        z = self._precondition(r)
        p = z.clone()
        rz = torch.sum(r * z)
        # In low precision the residual can stall above a tight tolerance and then blow up (seen
        # in float32 with tol 1e-9). Keep the best iterate; stop on a non-finite residual or when
        # STALL iterations in a row brought no improvement, and refuse a result far from converged.
        best_x, best_res, worse = x, math.inf, 0
        for it in range(1, self.max_iter + 1):
            ap = self._apply(p)
            alpha = rz / torch.sum(p * ap)
            x = x + alpha * p
            r = r - alpha * ap
            res = float(torch.linalg.vector_norm(r.detach())) / b_norm
            self.last_iterations = it
            if not math.isfinite(res):
                break
            if res < best_res:
                best_x, best_res, worse = x, res, 0
            else:
                worse += 1
            if res <= self.tol or worse >= STALL:
                break
            z = self._precondition(r)
            rz_new = torch.sum(r * z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        self.last_residual = best_res
        if best_res > FAIL_RESIDUAL:
            from mlvfx.errors import SolverError

            raise SolverError(
                f"pressure solve failed: CG residual {best_res:.3g} after {self.last_iterations} "
                f"iterations (tolerance {self.tol:g}); check the obstacles and sources, or use float64"
            )
        return best_x


PressureSolver = FastDiagSolver | SparseLUSolver | PCGSolver


def make_solver(
    kind: str,
    solid: torch.Tensor,
    walls: Walls,
    dtype: torch.dtype,
    tol: float = 1e-9,
    max_iter: int = 2000,
) -> tuple[PressureSolver, list[torch.Tensor]]:
    """Build a pressure solver for a fixed obstacle mask.

    Args:
        kind: ``"auto"`` (DCT when there are no obstacles, LU in 2D, CG in 3D), ``"dct"``, ``"lu"``
            or ``"cg"``.
        solid: Boolean cell mask ``(Y, X)`` / ``(Z, Y, X)``, True inside obstacles.
        walls: Closed/open domain walls.
        dtype: Float dtype of the solve.
        tol: Relative residual tolerance for CG.
        max_iter: Iteration cap for CG.

    Returns:
        The solver and the per-component fixed-face masks.
    """
    from mlvfx.errors import InputError

    fixed = fixed_faces(solid, walls)
    has_obstacles = bool(solid.any())
    if kind == "auto":
        kind = "dct" if not has_obstacles else ("lu" if solid.dim() == 2 else "cg")
    if kind == "dct":
        if has_obstacles:
            raise InputError(
                "the DCT pressure solver only handles an empty box; use 'lu' or 'cg' with obstacles"
            )
        return FastDiagSolver(tuple(solid.shape), walls, dtype, solid.device), fixed
    if kind == "lu":
        return SparseLUSolver(solid, walls), fixed
    if kind == "cg":
        return PCGSolver(solid, walls, fixed, dtype, tol, max_iter), fixed
    raise InputError(f"unknown pressure solver {kind!r} (use auto, dct, lu or cg)")


@dataclass
class Projection:
    """A pressure projection bound to one obstacle mask and wall set."""

    solver: PressureSolver
    fixed: list[torch.Tensor]
    walls: Walls
    solid: torch.Tensor

    def __call__(self, vel: Faces) -> Faces:
        """Make ``vel`` discretely divergence-free on the fluid cells; fixed faces stay zero."""
        vel = [v.masked_fill(f, 0.0) for v, f in zip(vel, self.fixed, strict=True)]
        rhs = divergence(vel).masked_fill(self.solid, 0.0)
        phi = self.solver.solve(rhs)
        grad = gradient_faces(phi, self.fixed, self.walls)
        return [v - g for v, g in zip(vel, grad, strict=True)]
