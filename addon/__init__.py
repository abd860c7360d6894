"""mlvfx for Blender: registration only. The operators live in their own modules."""

from __future__ import annotations

from . import operators, panels, preferences, properties, smoke, texture_operators

_modules = (preferences, properties, operators, texture_operators, smoke, panels)


def register() -> None:
    for module in _modules:
        module.register()


def unregister() -> None:
    operators.stop_all_jobs()  # first: every module's jobs and their UI, while the operators exist
    for module in reversed(_modules):
        module.unregister()
