"""Smoke simulation: the reference Eulerian solver (:mod:`mlvfx.fluids.reference`) and scenarios."""
