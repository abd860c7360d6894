"""Metrics and evaluation harnesses (``mlvfx eval``)."""
