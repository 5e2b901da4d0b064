"""Progress: the user's ``fn(task, status)`` callback and a progress display, both driven from the driver thread.

The display is a tqdm bar on a terminal (``tqdm.auto``: a widget in a notebook). Elsewhere (stderr is a
file or a pipe: batch jobs, ``2>log``) a bar would fill the file with ``\\r`` frames, so a plain line is
written instead, at most every ``LINE_INTERVAL`` seconds and once at the end::

    molexp: 40/100 tasks done, 2 running, 1 failed
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

from ..state.result import TaskStatus

log = logging.getLogger("molexp")

LINE_INTERVAL = 5.0   # seconds between plain progress lines (when stderr is not a terminal)


def _interactive() -> bool:
    """True in a notebook (a Jupyter kernel) or when stderr is a terminal."""
    shell = sys.modules.get("IPython")
    if shell is not None:
        try:
            ip = shell.get_ipython()
        except Exception:
            ip = None
        if ip is not None and type(ip).__name__ == "ZMQInteractiveShell":
            return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Dispatches task transitions, in order, from one thread. A failing callback is logged, never fatal."""

    def __init__(self, callback: Callable | None, total: int, *, bar: bool, description: str = "",
                 watcher: Callable | None = None):
        self.callback = callback
        self.watcher = watcher   # molexp's own listener (the running file of a checkpointed run): never raises
        self._bar = None
        self._lines = False
        self._total = total
        self._done = self._failed = 0
        self._running: set[str] = set()
        self._last_line = time.monotonic()
        if bar and total:
            if _interactive():
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=description or None, unit="task", leave=True,
                                 dynamic_ncols=True)
            else:
                self._lines = True
        self._callback_broken = False

    def __call__(self, task, status: TaskStatus) -> None:
        if self.watcher is not None:
            self.watcher(task, status)
        if self.callback is not None:
            try:
                self.callback(task, status)
            except Exception:
                if not self._callback_broken:
                    log.exception("progress callback raised on %s -> %s; the run goes on", task.name, status)
                    self._callback_broken = True
        if status.final:
            self._done += 1
            self._running.discard(task.name)
            if status is TaskStatus.FAILED:
                self._failed += 1
                if self._bar is not None:
                    self._bar.set_postfix(failed=self._failed, refresh=False)
            if self._bar is not None:
                self._bar.update(1)
        elif self._lines:
            self._running.add(task.name)
        if self._lines and time.monotonic() - self._last_line >= LINE_INTERVAL:
            self._line()

    def line(self) -> str:
        """The plain progress line: ``molexp: 40/100 tasks done, 2 running, 1 failed``."""
        text = f"molexp: {self._done}/{self._total} tasks done"
        if self._running:
            text += f", {len(self._running)} running"
        if self._failed:
            text += f", {self._failed} failed"
        return text

    def _line(self) -> None:
        self._last_line = time.monotonic()
        try:
            print(self.line(), file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):   # no stderr, or it is gone
            self._lines = False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._lines:
            self._line()
            self._lines = False
