"""Progress: the user's ``fn(task, status)`` callback and a tqdm bar, both driven from the driver thread."""

from __future__ import annotations

import logging
from typing import Callable

from .result import TaskStatus

log = logging.getLogger("molexp")


class Progress:
    """Dispatches task transitions, in order, from one thread. A failing callback is logged, never fatal."""

    def __init__(self, callback: Callable | None, total: int, *, bar: bool, description: str = ""):
        self.callback = callback
        self._bar = None
        self._failed = 0
        if bar and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description or None, unit="task", leave=True, dynamic_ncols=True)
        self._callback_broken = False

    def __call__(self, task, status: TaskStatus) -> None:
        if self.callback is not None:
            try:
                self.callback(task, status)
            except Exception:
                if not self._callback_broken:
                    log.exception("progress callback raised on %s -> %s; the run goes on", task.name, status)
                    self._callback_broken = True
        if self._bar is not None and status.final:
            if status is TaskStatus.FAILED:
                self._failed += 1
                self._bar.set_postfix(failed=self._failed, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
