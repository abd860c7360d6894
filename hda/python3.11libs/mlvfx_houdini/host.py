"""Host glue shared by the nodes: typed errors and interruptible progress.

* Every :class:`mlvfx.errors.MlvfxError` (one-line message) becomes ``hou.NodeError`` with the
  same line, so the node shows the core's message and turns red.
* :func:`interruptible` opens a ``hou.InterruptableOperation`` and hands the core a
  :data:`~mlvfx.progress.ProgressFn` and a :class:`~mlvfx.progress.CancelToken`. Pressing Esc makes
  ``updateProgress`` raise ``hou.OperationInterrupted``; the progress function catches it and
  sets the token, and the core stops at its next check point with ``Cancelled``.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

import hou

from mlvfx_houdini._core import require_core

require_core("hou")  # one line on the node, not a traceback, when the venv is missing

from mlvfx.errors import MlvfxError
from mlvfx.progress import CancelToken, ProgressFn

__all__ = ["interruptible", "node_errors"]


@contextmanager
def node_errors() -> Generator[None, None, None]:
    """Turn an ``MlvfxError`` raised inside the block into ``hou.NodeError`` with its message."""
    try:
        yield
    except MlvfxError as exc:
        raise hou.NodeError(str(exc)) from None


@contextmanager
def interruptible(label: str, dialog: bool = True) -> Generator[tuple[ProgressFn, CancelToken], None, None]:
    """A ``(progress, cancel)`` pair driving a ``hou.InterruptableOperation``.

    Args:
        label: the operation's name in the status bar and the interrupt dialog.
        dialog: open Houdini's interrupt dialog (worth it for anything longer than a second).

    Yields:
        ``progress(fraction, message)`` for the core, and the token that Esc sets.
    """
    token = CancelToken()
    with hou.InterruptableOperation(label, open_interrupt_dialog=dialog) as operation:

        def progress(fraction: float, message: str) -> None:
            del message  # Houdini's status line shows the operation label; the fraction is the news.
            if token.cancelled:
                return
            try:
                operation.updateProgress(min(1.0, max(0.0, fraction)))
            except hou.OperationInterrupted:
                token.cancel()

        yield progress, token
