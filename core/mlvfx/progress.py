"""Progress reporting and cooperative cancellation for long operations.

Every long operation takes ``progress: ProgressFn | None`` and ``cancel: CancelToken | None``.
``progress(fraction, message)`` is called with a fraction in [0, 1]; hosts map it to a tqdm bar,
Blender's status bar or Houdini's ``InterruptableOperation``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlvfx.errors import Cancelled

ProgressFn = Callable[[float, str], None]


class CancelToken:
    """A thread-safe flag a host sets to stop a running operation at its next check point.

    Example:
        >>> token = CancelToken()
        >>> token.cancel()
        >>> token.cancelled
        True
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise ``Cancelled`` if ``cancel`` is set; a ``None`` token never cancels."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    """Call ``progress`` if given, clamping the fraction to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, fraction)), message)


def scaled(progress: ProgressFn | None, start: float, stop: float) -> ProgressFn | None:
    """A progress function that maps [0, 1] of a sub-step onto [start, stop] of the whole."""
    if progress is None:
        return None
    outer = progress

    def inner(fraction: float, message: str) -> None:
        outer(start + (stop - start) * min(1.0, max(0.0, fraction)), message)

    return inner
