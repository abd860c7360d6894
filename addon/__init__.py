"""mlvfx for Blender: registration only. The operators live in their own modules."""

from __future__ import annotations

import atexit

from . import jobs, operators, panels, preferences, properties, smoke, texture_operators

_modules = (preferences, properties, operators, texture_operators, smoke, panels)


def register() -> None:
    for module in _modules:
        module.register()
    # Blender quitting mid-bake killed the daemon worker with its staging folder of frames on disk;
    # stopped at exit, the worker removes what it wrote.
    atexit.register(jobs.cancel_all)


def unregister() -> None:
    atexit.unregister(jobs.cancel_all)
    operators.stop_all_jobs()  # first: every module's jobs and their UI, while the operators exist
    for module in reversed(_modules):
        module.unregister()
