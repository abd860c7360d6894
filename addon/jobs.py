"""Long work off Blender's UI thread.

A :class:`Job` runs a function that touches no Blender data in a worker thread. Progress and the
result come back through a queue that the main thread drains (from a modal operator's timer), so
Blender data is only ever touched on the main thread. Cancelling sets the core's CancelToken; the
worker stops at its next check point.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from mlvfx.progress import CancelToken, ProgressFn

Work = Callable[[ProgressFn, CancelToken], Any]

_running: set[Job] = set()
_undelivered: set[Job] = set()
"""Jobs whose result waits in their queue for the operator's poll and has a discard hook: the worker
has left ``_running``, and without this set :func:`cancel_all` would miss it (a review)."""


class Job:
    """One background computation. States: running -> done | failed | cancelled."""

    def __init__(self, name: str, work: Work, discard: Callable[[Any], None] | None = None) -> None:
        """``discard`` undoes a result that will never be applied (see :meth:`abandon`)."""
        self.name = name
        self.cancel_token = CancelToken()
        self.fraction = 0.0
        self.message = "starting"
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self._work = work
        self._discard = discard
        self._lock = threading.Lock()
        self._abandoned = False
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"mlvfx: {name}", daemon=True)

    def start(self) -> Job:
        _running.add(self)
        self._thread.start()
        return self

    def _run(self) -> None:
        def progress(fraction: float, message: str) -> None:
            self._events.put(("progress", (fraction, message)))

        try:
            result = self._work(progress, self.cancel_token)
            with self._lock:
                abandoned = self._abandoned
                if not abandoned:
                    self._events.put(("done", result))
                    if self._discard is not None:
                        _undelivered.add(self)
            if abandoned:  # nobody will apply it
                self._throw_away(result)
                self._events.put(("done", None))
        except BaseException as exc:  # every failure must reach the main thread
            self._events.put(("error", exc))
        finally:
            # Gone from the running set when the worker ends, polled or not: an operator Blender
            # cancelled (a file loaded mid-job) never polls again, and the plan's pixels must go.
            self._work = _finished_work
            _running.discard(self)

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def abandon(self) -> None:
        """Cancel, and throw the result away: its operator is gone (Blender cancelled it when a file
        was loaded, the add-on is unregistered, Blender quits) and will never apply it. A result
        already delivered is discarded here, a later one by the worker. A bake's result is a folder
        of frames beside the cache, which nothing else would remove (an audit)."""
        self.cancel()
        with self._lock:
            self._abandoned = True
        self.poll()
        if self.finished and self.error is None:
            result, self.result = self.result, None
            self._throw_away(result)

    def _throw_away(self, result: Any) -> None:
        if self._discard is not None and result is not None:
            self._discard(result)

    def poll(self) -> bool:
        """Drain the queue (main thread). Returns True once the job has finished or failed."""
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                return self.finished
            if kind == "progress":
                self.fraction, self.message = payload
            elif kind == "done":
                self.result, self.finished = payload, True
            else:
                self.error, self.finished = payload, True
            if self.finished:
                _running.discard(self)
                _undelivered.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (used in tests and on unregister); returns whether it ended."""
        self._thread.join(timeout)
        self.poll()
        return self.finished


def _finished_work(progress: ProgressFn, cancel: CancelToken) -> Any:
    raise RuntimeError("this job has already run")


def cancel_all(timeout: float = 5.0) -> None:
    """Abandon every running job and wait for the workers (on unregister, and when Python exits:
    a worker stopped there cleans up what it wrote, where a daemon thread killed mid-bake left it)."""
    for job in list(_running | _undelivered):
        job.abandon()
    for job in list(_running):
        job.wait(timeout)
    _running.clear()
    _undelivered.clear()
