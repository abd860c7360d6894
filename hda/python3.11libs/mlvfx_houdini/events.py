"""Asset event handlers that must work even where mlvfx cannot be imported.

Deleting a node (or clearing the scene) runs its OnDeleted handler. Importing
:mod:`mlvfx_houdini.smoke` from there would run the core check and raise on a Houdini without the
mlvfx venv, and would import the core just to free nothing. So the handler frees the node's frames
only when the smoke module is already loaded, that is, when some node has cooked.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["smoke_deleted"]


def smoke_deleted(kwargs: Mapping[str, Any]) -> None:
    """OnDeleted of ``mlvfx::Sop/smoke_surrogate::1.0``: ``mlvfx_houdini.events.smoke_deleted(kwargs)``."""
    smoke = sys.modules.get("mlvfx_houdini.smoke")
    if smoke is not None:
        smoke.on_deleted(kwargs)
