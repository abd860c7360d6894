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


class Job:
    """One background computation. States: running -> done | failed | cancelled."""

    def __init__(self, name: str, work: Work) -> None:
        self.name = name
        self.cancel_token = CancelToken()
        self.fraction = 0.0
        self.message = "starting"
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self._work = work
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
            self._events.put(("done", self._work(progress, self.cancel_token)))
        except BaseException as exc:  # every failure must reach the main thread
            self._events.put(("error", exc))
        finally:
            # Gone from the running set when the worker ends, polled or not: an operator Blender
            # cancelled (a file loaded mid-job) never polls again, and the plan's pixels must go.
            self._work = _finished_work
            _running.discard(self)

    def cancel(self) -> None:
        self.cancel_token.cancel()

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

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (used in tests and on unregister); returns whether it ended."""
        self._thread.join(timeout)
        self.poll()
        return self.finished


def _finished_work(progress: ProgressFn, cancel: CancelToken) -> Any:
    raise RuntimeError("this job has already run")


def cancel_all(timeout: float = 5.0) -> None:
    """Cancel every running job and wait for the workers (called on unregister)."""
    for job in list(_running):
        job.cancel()
    for job in list(_running):
        job.wait(timeout)
    _running.clear()
