"""Staggered (MAC) grid operators for 2D and 3D smoke, in torch.

Layout inside the solver (never at the API edge):

* Cell-centred scalars (density, pressure) are tensors of shape ``(Y, X)`` in 2D and
  ``(Z, Y, X)`` in 3D; index 0 along Y is the bottom of the domain (+Y is up).
* Velocity is a list of face tensors, one per component, in the order (x, y[, z]). Component
  ``c`` lives on the faces normal to its axis, so it has one more sample along that axis:
  ``u`` is ``(Y, X + 1)``, ``v`` is ``(Y + 1, X)`` in 2D, and in 3D ``u`` is ``(Z, Y, X + 1)``,
  ``v`` is ``(Z, Y + 1, X)`` and ``w`` is ``(Z + 1, Y, X)``.
* Positions are measured in cells: cell ``i`` spans ``[i, i + 1]`` along its axis, so its centre is
  at ``i + 0.5`` and the face between cells ``i - 1`` and ``i`` is at ``i``.

The component index ``c`` (0 = x, 1 = y, 2 = z) maps to tensor dimension ``ndim - 1 - c``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Faces = list[torch.Tensor]


def comp_dim(c: int, ndim: int) -> int:
    """Tensor dimension of velocity component ``c`` (0 = x, 1 = y, 2 = z) in an ``ndim``-D grid."""
    return ndim - 1 - c


def face_shape(shape: tuple[int, ...], c: int) -> tuple[int, ...]:
    """Shape of the face grid that stores component ``c`` for a cell grid of ``shape``."""
    dim = comp_dim(c, len(shape))
    return tuple(n + 1 if d == dim else n for d, n in enumerate(shape))


@dataclass(frozen=True)
class Walls:
    """Which domain walls are closed (solid, zero normal velocity) and which are open.

    ``closed[c] == (low, high)`` for velocity component / axis ``c`` in the order (x, y[, z]).
    An open wall is a pressure-zero outflow boundary: the ghost cell beyond it has pressure 0.
    """

    closed: tuple[tuple[bool, bool], ...]

    @staticmethod
    def from_spec(spec: str | tuple[str, ...], ndim: int) -> Walls:
        """Parse ``"closed"``, ``"open"``, ``"open_top"`` or a per-wall tuple.

        The tuple form lists ``2 * ndim`` entries, each ``"closed"`` or ``"open"``, in the order
        ``(x_low, x_high, y_low, y_high[, z_low, z_high])``.
        """
        from mlvfx.errors import InputError

        if isinstance(spec, str):
            if spec == "closed":
                return Walls(tuple((True, True) for _ in range(ndim)))
            if spec == "open":
                return Walls(tuple((False, False) for _ in range(ndim)))
            if spec == "open_top":
                return Walls(tuple((True, c != 1) for c in range(ndim)))
            raise InputError(f"unknown boundary {spec!r} (use closed, open, open_top or a per-wall tuple)")
        if len(spec) != 2 * ndim or any(s not in ("closed", "open") for s in spec):
            raise InputError(
                f"boundary tuple must hold {2 * ndim} entries of 'closed'/'open' "
                f"(x_low, x_high, y_low, y_high[, z_low, z_high]), got {spec!r}"
            )
        return Walls(tuple((spec[2 * c] == "closed", spec[2 * c + 1] == "closed") for c in range(ndim)))


def cell_positions(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Per-dimension coordinates (in cells) of the cell centres, broadcastable to ``shape``."""
    out = []
    for d, n in enumerate(shape):
        view = [1] * len(shape)
        view[d] = n
        out.append((torch.arange(n, dtype=dtype, device=device) + 0.5).view(view))
    return out


def grid_positions(
    shape: tuple[int, ...], stagger_dim: int | None, dtype: torch.dtype, device: torch.device
) -> list[torch.Tensor]:
    """Per-dimension coordinates of the samples of a cell grid (``stagger_dim`` None) or a face grid."""
    out = []
    for d, n in enumerate(shape):
        view = [1] * len(shape)
        if d == stagger_dim:
            view[d] = n + 1
            out.append(torch.arange(n + 1, dtype=dtype, device=device).view(view))
        else:
            view[d] = n
            out.append((torch.arange(n, dtype=dtype, device=device) + 0.5).view(view))
    return out


def interpolate(
    field: torch.Tensor,
    stagger_dim: int | None,
    pos: list[torch.Tensor],
    with_bounds: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Multilinear interpolation of a cell or face grid at arbitrary positions, clamped to the grid.

    Args:
        field: The samples, shape ``(Y, X)`` / ``(Z, Y, X)`` (cell grid) or one larger along
            ``stagger_dim`` (face grid).
        stagger_dim: Tensor dimension the grid is staggered along, or None for a cell grid.
        pos: One coordinate tensor per dimension (in cells, array-dimension order), all of the
            same broadcast shape. Points outside the grid are clamped to its border (constant
            extrapolation), which is what a solid or outflow wall needs.
        with_bounds: Also return the min and max of the corner samples with non-zero weight
            (for MacCormack clamping).

    Returns:
        ``(value, lo, hi)``; ``lo`` and ``hi`` are None unless ``with_bounds``.
    """
    if not with_bounds:
        return _grid_sample(field, stagger_dim, pos), None, None
    ndim = field.dim()
    shape = field.shape
    strides = [1] * ndim
    for d in range(ndim - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    base: torch.Tensor | None = None
    fracs: list[torch.Tensor] = []
    steps: list[int] = []
    for d in range(ndim):
        n = shape[d]
        idx = pos[d] if d == stagger_dim else pos[d] - 0.5
        idx = idx.clamp(0.0, float(n - 1))
        if n > 1:
            i0 = torch.floor(idx).clamp_(max=float(n - 2))
            fracs.append(idx - i0)
            steps.append(strides[d])
        else:
            i0 = torch.zeros_like(idx)
            fracs.append(torch.zeros_like(idx))
            steps.append(0)
        term = i0.long() * strides[d]
        base = term if base is None else base + term
    assert base is not None
    flat = field.reshape(-1)
    value: torch.Tensor | None = None
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None
    for corner in itertools.product((0, 1), repeat=ndim):
        offset = sum(steps[d] for d in range(ndim) if corner[d])
        sample = torch.take(flat, base + offset)
        weight: torch.Tensor | None = None
        for d in range(ndim):
            w = fracs[d] if corner[d] else 1.0 - fracs[d]
            weight = w if weight is None else weight * w
        assert weight is not None
        value = sample * weight if value is None else value + sample * weight
        if with_bounds:
            # Corners with zero weight are left out: a point exactly on a node must be bounded by
            # that node alone, whichever side the floor() tie fell on (keeps mirror symmetry).
            used = weight > 0
            low_c = torch.where(used, sample, torch.inf)
            high_c = torch.where(used, sample, -torch.inf)
            lo = low_c if lo is None else torch.minimum(lo, low_c)
            hi = high_c if hi is None else torch.maximum(hi, high_c)
    assert value is not None
    return value, lo, hi


def _grid_sample(field: torch.Tensor, stagger_dim: int | None, pos: list[torch.Tensor]) -> torch.Tensor:
    """The value part of :func:`interpolate` as one fused ``grid_sample`` call (same clamping)."""
    ndim = field.dim()
    coords = []
    for d in range(ndim - 1, -1, -1):  # grid_sample wants (x, y[, z]) = reversed array order
        n = field.shape[d]
        idx = pos[d] if d == stagger_dim else pos[d] - 0.5
        coords.append(idx * (2.0 / (n - 1)) - 1.0)
    shape = np.broadcast_shapes(*(tuple(c.shape) for c in coords))
    coords = [c.expand(shape) for c in coords]
    grid = torch.stack(coords, dim=-1).reshape((1,) * ndim + (-1, ndim))
    out = F.grid_sample(field[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(shape)


def velocity_at(vel: Faces, pos: list[torch.Tensor]) -> list[torch.Tensor]:
    """Velocity components (x, y[, z]) interpolated at positions ``pos`` (array-dimension order)."""
    ndim = len(vel)
    return [interpolate(vel[c], comp_dim(c, ndim), pos)[0] for c in range(ndim)]


def velocity_on_grid(vel: Faces, stagger_dim: int | None) -> list[torch.Tensor]:
    """All velocity components (x, y[, z]) at the sample points of a cell grid or a face grid.

    Equal to :func:`velocity_at` at those points (multilinear, border-clamped), computed with
    neighbour averages instead of gathers.
    """
    ndim = len(vel)
    out = []
    for c in range(ndim):
        own = comp_dim(c, ndim)
        if own == stagger_dim:
            out.append(vel[c])
            continue
        n = vel[c].shape[own]
        centred = 0.5 * (vel[c].narrow(own, 0, n - 1) + vel[c].narrow(own, 1, n - 1))
        if stagger_dim is None:
            out.append(centred)
            continue
        m = centred.shape[stagger_dim]
        padded = torch.cat(
            [centred.narrow(stagger_dim, 0, 1), centred, centred.narrow(stagger_dim, m - 1, 1)],
            dim=stagger_dim,
        )
        out.append(0.5 * (padded.narrow(stagger_dim, 0, m + 1) + padded.narrow(stagger_dim, 1, m + 1)))
    return out


def divergence(vel: Faces) -> torch.Tensor:
    """Unscaled discrete divergence ``sum_c (u_c[i + 1] - u_c[i])`` per cell (multiply by 1/dx for 1/s)."""
    ndim = len(vel)
    out: torch.Tensor | None = None
    for c in range(ndim):
        d = torch.diff(vel[c], dim=comp_dim(c, ndim))
        out = d if out is None else out + d
    assert out is not None
    return out


def centre_to_faces(centred: list[torch.Tensor]) -> Faces:
    """Cell-centred components (x, y[, z]) to face components by averaging neighbours.

    Boundary faces take the value of their one adjacent cell.
    """
    ndim = len(centred)
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        f = centred[c]
        first = f.narrow(dim, 0, 1)
        last = f.narrow(dim, f.shape[dim] - 1, 1)
        padded = torch.cat([first, f, last], dim=dim)
        n = padded.shape[dim]
        out.append(0.5 * (padded.narrow(dim, 0, n - 1) + padded.narrow(dim, 1, n - 1)))
    return out


def faces_to_centre(vel: Faces) -> list[torch.Tensor]:
    """Face components to cell-centred components (x, y[, z]) by averaging the two faces of each cell."""
    ndim = len(vel)
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        n = vel[c].shape[dim]
        out.append(0.5 * (vel[c].narrow(dim, 0, n - 1) + vel[c].narrow(dim, 1, n - 1)))
    return out


def scalar_to_faces(field: torch.Tensor, c: int) -> torch.Tensor:
    """A cell-centred scalar averaged onto the faces of component ``c`` (border faces copy the cell)."""
    ndim = field.dim()
    dim = comp_dim(c, ndim)
    first = field.narrow(dim, 0, 1)
    last = field.narrow(dim, field.shape[dim] - 1, 1)
    padded = torch.cat([first, field, last], dim=dim)
    n = padded.shape[dim]
    return 0.5 * (padded.narrow(dim, 0, n - 1) + padded.narrow(dim, 1, n - 1))


def central_gradient(field: torch.Tensor) -> list[torch.Tensor]:
    """Cell-centred gradient (x, y[, z]) by central differences in cells, one-sided at the border."""
    ndim = field.dim()
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        if field.shape[dim] < 2:
            out.append(torch.zeros_like(field))
            continue
        out.append(torch.gradient(field, dim=dim)[0])
    return out


def fixed_faces(solid: torch.Tensor, walls: Walls) -> list[torch.Tensor]:
    """Per component, the faces whose velocity is prescribed (zero): next to a solid cell or a closed wall."""
    ndim = solid.dim()
    out = []
    for c in range(ndim):
        dim = comp_dim(c, ndim)
        n = solid.shape[dim]
        low_closed, high_closed = walls.closed[c]
        pad_lo = torch.full_like(solid.narrow(dim, 0, 1), low_closed)
        pad_hi = torch.full_like(solid.narrow(dim, 0, 1), high_closed)
        padded = torch.cat([pad_lo, solid, pad_hi], dim=dim)
        out.append(padded.narrow(dim, 0, n + 1) | padded.narrow(dim, 1, n + 1))
    return out
