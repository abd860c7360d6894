"""The mlvfx core, or one line on the node saying why it is missing.

The node modules import :mod:`mlvfx` at their top. Without this check, a Houdini whose package
file points at no venv (the usual install mistake) shows a Python traceback ending in
``ModuleNotFoundError`` on the node. :func:`require_core` raises the host's own one-line error
instead: ``hou.NodeError`` on a SOP or COP, ``pdg.CookError`` in a TOP callback (PDG shows both as
the node's message), and a plain ``ImportError`` with the same words outside Houdini.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Literal

__all__ = ["missing_core_message", "require_core"]


def missing_core_message(exc: ImportError) -> str:
    """What the node says when ``import mlvfx`` fails with ``exc``."""
    venv = os.environ.get("MLVFX_VENV", "")
    where = f"MLVFX_VENV is {venv}" if venv else "MLVFX_VENV is not set: is the mlvfx package file loaded?"
    return (
        f"mlvfx is not importable from Houdini's Python ({exc}); {where}. "
        "Install mlvfx into that venv with Python 3.11 (docs/houdini.md, Install)"
    )


def require_core(host: Literal["hou", "pdg"]) -> None:
    """Import :mod:`mlvfx` or raise the host's one-line error.

    Args:
        host: ``"hou"`` for SOP/COP cook code (raises ``hou.NodeError``), ``"pdg"`` for TOP
            callbacks (raises ``pdg.CookError``).

    Raises:
        hou.NodeError | pdg.CookError | ImportError: mlvfx (or one of its dependencies, such as
            torch) cannot be imported; the message names the import that failed and the venv.
    """
    try:
        importlib.import_module("mlvfx")
        importlib.import_module("mlvfx.errors")
        if importlib.util.find_spec("torch") is None:  # imported only when a node computes
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
    except ImportError as exc:
        message = missing_core_message(exc)
        error: type[BaseException] = ImportError
        try:
            module = importlib.import_module(host)
        except ImportError:  # outside Houdini (tests, a plain Python)
            pass
        else:
            error = getattr(module, "NodeError" if host == "hou" else "CookError", ImportError)
        raise error(message) from None
