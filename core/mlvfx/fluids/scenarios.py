"""Generic smoke shots for tests, benchmarks and (later) surrogate training data.

Four families: ``plume`` (one buoyant source), ``obstacle`` (a plume rising into a sphere),
``two_sources`` (two plumes that merge) and ``wind`` (a plume bent by a side wind through open
walls). With ``seed=None`` each family is a fixed canonical shot; with a seed, the source
position and size, inflow rate and velocity, buoyancy, vorticity, obstacle and wind are drawn
from ranges around it, so ``make_scenario(name, seed=i)`` for i = 0, 1, ... is a reproducible
training set and a disjoint seed range is a held-out set.

All positions are in domain units (the domain is ``[0, 1]`` along every axis; grids are cubic)
and in the order (x, y[, z]); +Y is up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mlvfx.errors import InputError
from mlvfx.fluids import SCENARIO_NAMES
from mlvfx.fluids.grid import Faces
from mlvfx.fluids.reference import (
    Array,
    ReferenceSolver,
    SmokeConfig,
    Source,
    mask_from_sdf,
    sphere_sdf,
)
from mlvfx.progress import CancelToken, ProgressFn, check_cancel, report

__all__ = ["SCENARIOS", "Scenario", "make_scenario", "random_scenario", "simulate"]

SCENARIOS = SCENARIO_NAMES


@dataclass(frozen=True)
class Scenario:
    """A shot: solver configuration, inflows and a static obstacle mask (``None`` for none)."""

    name: str
    config: SmokeConfig
    sources: tuple[Source, ...]
    obstacles: Array | None
    params: dict[str, Any]


def _pick(rng: np.random.Generator | None, default: float, low: float, high: float) -> float:
    return default if rng is None else float(rng.uniform(low, high))


def make_scenario(
    name: str,
    dims: int = 2,
    res: int = 64,
    *,
    seed: int | None = None,
    **config_overrides: Any,
) -> Scenario:
    """Build a canonical (``seed=None``) or randomised shot.

    Args:
        name: One of :data:`SCENARIOS`.
        dims: 2 (grid ``(res, res)``) or 3 (grid ``(res, res, res)``).
        res: Cells per axis.
        seed: None for the canonical shot, or an integer for a reproducible random variation.
        **config_overrides: Fields of :class:`SmokeConfig` to override (``dt``, ``advection``, ...).

    Returns:
        The scenario; ``params`` records every drawn value.

    Raises:
        InputError: Unknown name, or dims not 2 or 3.
    """
    if name not in SCENARIOS:
        raise InputError(f"unknown smoke scenario {name!r} (use {', '.join(SCENARIOS)})")
    if dims not in (2, 3):
        raise InputError(f"dims must be 2 or 3, got {dims}")
    rng = None if seed is None else np.random.default_rng([seed, SCENARIOS.index(name), dims])
    shape = (res,) * dims
    params: dict[str, Any] = {
        "buoyancy": _pick(rng, 1.0, 0.5, 2.0),
        "vorticity": _pick(rng, 0.05, 0.0, 0.15),
        "radius": _pick(rng, 0.08, 0.05, 0.11),
        "rate": _pick(rng, 2.0, 1.0, 3.0),
        "inflow": _pick(rng, 0.2, 0.0, 0.5),
        "source_y": _pick(rng, 0.12, 0.1, 0.2),
    }
    boundary: str | tuple[str, ...] = "open_top"
    wind: tuple[float, ...] = ()
    wind_rate = 0.0
    centers: list[float] = []
    if name == "two_sources":
        gap = _pick(rng, 0.2, 0.12, 0.25)
        mid = _pick(rng, 0.5, 0.4, 0.6)
        params["radius"] = min(params["radius"], gap * 0.8)
        centers = [mid - gap, mid + gap]
    else:
        centers = [_pick(rng, 0.5, 0.3, 0.7)]
    depth = _pick(rng, 0.5, 0.35, 0.65)
    params["source_x"] = centers
    params["source_z"] = depth
    if name == "wind":
        speed = _pick(rng, 0.3, 0.1, 0.5)
        angle = 0.0 if rng is None or dims == 2 else float(rng.uniform(0, 2 * np.pi))
        sign = 1.0 if rng is None else float(rng.choice([-1.0, 1.0]))
        wind = (sign * speed * np.cos(angle), 0.0, sign * speed * np.sin(angle))[:dims]
        wind_rate = _pick(rng, 1.0, 0.5, 2.0)
        boundary = "open"
        params["wind"] = list(wind)
        params["wind_rate"] = wind_rate
    fields: dict[str, Any] = {
        "shape": shape,
        "buoyancy": params["buoyancy"],
        "vorticity": params["vorticity"],
        "boundary": boundary,
        "wind": wind,
        "wind_rate": wind_rate,
    }
    fields.update(config_overrides)
    config = SmokeConfig(**fields)  # validates the resolution before any array is allocated
    dx = 1.0 / res  # scenario geometry lives in the unit domain
    sources = []
    for cx in centers:
        center = (cx, params["source_y"], depth)[:dims]
        velocity = (0.0, params["inflow"], 0.0)[:dims]
        sdf = sphere_sdf(shape, center, params["radius"])
        sources.append(Source(mask_from_sdf(sdf, dx), params["rate"], velocity))
    obstacles = None
    if name == "obstacle":
        o_radius = _pick(rng, 0.1, 0.06, 0.14)
        o_x = centers[0] + _pick(rng, 0.04, -0.08, 0.08)
        o_y = params["source_y"] + params["radius"] + o_radius + _pick(rng, 0.15, 0.08, 0.25)
        o_z = depth + _pick(rng, 0.0, -0.05, 0.05)
        obstacles = sphere_sdf(shape, (o_x, o_y, o_z)[:dims], o_radius) < 0
        params["obstacle"] = {"center": [o_x, o_y, o_z][:dims], "radius": o_radius}
    return Scenario(name, config, tuple(sources), obstacles, params)


def random_scenario(seed: int, dims: int = 2, res: int = 64, **config_overrides: Any) -> Scenario:
    """A randomised shot whose family is also drawn from ``seed``."""
    name = SCENARIOS[int(np.random.default_rng([seed, 99]).integers(len(SCENARIOS)))]
    return make_scenario(name, dims, res, seed=seed, **config_overrides)


def with_config(scenario: Scenario, **changes: Any) -> Scenario:
    """A copy of ``scenario`` with some :class:`SmokeConfig` fields changed (e.g. ``dtype``)."""
    return replace(scenario, config=replace(scenario.config, **changes))


def simulate(
    scenario: Scenario,
    steps: int,
    *,
    every: int = 1,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[int, torch.Tensor, Faces]]:
    """Run the reference solver and yield ``(step, density, face_velocity)`` every ``every`` steps.

    Density is ``(Y, X)`` / ``(Z, Y, X)`` on the solver's device; yielded tensors are not copied,
    so clone them to keep them past the next iteration.
    """
    if steps < 0 or every < 1:
        raise InputError(f"steps must be >= 0 and every >= 1, got {steps} and {every}")
    solver = ReferenceSolver(scenario.config, scenario.obstacles)
    sources = solver.prepare_sources(scenario.sources)
    density, vel = solver.zeros()
    for i in range(1, steps + 1):
        check_cancel(cancel)
        density, vel = solver.advance(density, vel, sources)
        if i % every == 0:
            yield i, density, vel
        report(progress, i / max(steps, 1), f"step {i}/{steps}")
