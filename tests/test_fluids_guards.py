"""Behaviours a mutation audit (stop 27) found unprotected by any test: smoke solver and stepper API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlvfx.errors import InputError
from mlvfx.fluids.reference import ReferenceSolver, SmokeConfig, Source, Stepper
from mlvfx.fluids.scenarios import make_scenario

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("advection", ["maccormack", "semi_lagrangian", "conservative"])
def test_clean_inflow_also_at_a_low_wall(advection: str) -> None:
    """The default wind shot (``make_scenario("wind", ...)`` without a seed) blows towards +x, so
    its upwind wall is x-low; the existing test only blows towards -x (the x-high wall)."""
    cfg = SmokeConfig(
        shape=(12, 16), boundary="open", buoyancy=0.0, wind=(0.4, 0.0), wind_rate=50.0,
        advection=advection, open_inflow="clean",  # type: ignore[arg-type]
    )  # fmt: skip
    solver = ReferenceSolver(cfg)
    density, vel = solver.zeros()
    density[:, 0] = 1.0  # the upwind column
    vel[0].fill_(0.4)
    with torch.no_grad():
        for _ in range(48):
            density, vel = solver.advance(density, vel)
    assert float(density[:, 0].sum()) < 1e-3 * 12


def test_no_smoke_is_left_inside_an_obstacle_that_appears_where_smoke_is() -> None:
    """A collider placed where there is smoke (an artist keys it in; the host passes back the last
    step's own arrays) must come out empty: the step clears solid cells at its end."""
    sc = make_scenario("plume", 2, 32, seed=1)
    stepper = Stepper(sc.config)
    density = velocity = None
    for _ in range(30):
        density, velocity = stepper.step(density, velocity, sc.sources)
    assert density is not None
    block = np.zeros(sc.config.shape, bool)
    block[density > 0.5 * density.max()] = True  # where the smoke is thickest now
    density, velocity = stepper.step(density, velocity, sc.sources, block)
    assert float(density.sum()) > 0
    assert float(np.abs(density[block]).max()) == 0.0


def test_negative_density_and_smoke_sinks_are_refused() -> None:
    """state_from_arrays documents 'density must be >= 0' and sources 'no smoke sinks'."""
    cfg = SmokeConfig(shape=(16, 16))
    stepper = Stepper(cfg)
    with pytest.raises(InputError, match="density must be >= 0"):
        stepper.step(-np.ones((16, 16), np.float32), None)
    mask = np.zeros((16, 16), np.float32)
    mask[2:5, 6:10] = 1.0
    with pytest.raises(InputError, match="no smoke sinks"):
        Stepper(cfg).step(None, None, [Source(mask, rate=-1.0)])


def test_the_surrogate_follows_obstacles_that_change_between_steps() -> None:
    """A host may hand over a different collider on a later step (an artist moves it): the
    surrogate must rebuild for it, not keep the first one."""
    from mlvfx.fluids.surrogate import CorrectionNet, SurrogateStepper

    cfg = SmokeConfig(shape=(32, 32))
    stepper = SurrogateStepper(cfg, CorrectionNet(2, width=4, depth=2), 4, dtype="float64")
    full = np.ones((32, 32), np.float32)
    first = np.zeros((32, 32), bool)
    first[:4] = True
    stepper.step(full, None, [], first)
    second = np.zeros((32, 32), bool)
    second[8:28, 4:28] = True  # whole coarse cells
    density, velocity = stepper.step(full, None, [], second)
    assert float(np.abs(density[16:20, 12:20]).max()) == 0.0  # no smoke in the new collider's middle
    assert float(np.abs(velocity[second]).max()) == 0.0  # still air inside the new collider


def test_smoke_a_host_puts_below_a_thin_plate_stays_visible() -> None:
    """The fine-region guard hides smoke in regions no source feeds, except where the host
    seeded it: smoke handed over below a thin plate must not vanish."""
    from mlvfx.fluids.surrogate import CorrectionNet, SurrogateStepper

    sc = make_scenario("plume", 2, 64)
    plate = np.zeros((64, 64), bool)
    plate[33, :] = True  # thinner than half a coarse cell
    fine = np.zeros((64, 64), np.float32)
    fine[:32] = 1.0
    stepper = SurrogateStepper(
        sc.config, CorrectionNet(2, width=4, depth=2, conditions=2), 4, dtype="float64"
    )
    density, velocity = stepper.step(fine, None, [], plate)
    for _ in range(3):
        density, velocity = stepper.step(density, velocity, [], plate)
    assert float(density[:32].sum()) > 0.5 * 32 * 64
