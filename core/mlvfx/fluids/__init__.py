"""Smoke simulation.

* :mod:`mlvfx.fluids.reference`: the reference Eulerian solver (2D/3D MAC grid, torch) and the
  numpy :class:`~mlvfx.fluids.reference.Stepper` hosts call.
* :mod:`mlvfx.fluids.pressure`: pressure projection (DCT, sparse LU, preconditioned CG).
* :mod:`mlvfx.fluids.scenarios`: canonical and randomised shots.
* :mod:`mlvfx.fluids.surrogate`: the learned surrogate (coarse solver + CNN correction) and its
  host stepper; :mod:`mlvfx.fluids.bench`: ``mlvfx smoke bench``.
* :mod:`mlvfx.fluids.cli`: ``mlvfx smoke`` (frames written with :mod:`mlvfx.io.volume`).

Importing this package is cheap (no torch); import the submodules for the functionality.
"""

SCENARIO_NAMES = ("plume", "obstacle", "two_sources", "wind")
