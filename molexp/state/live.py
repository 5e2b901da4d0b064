"""``<checkpoint>/running.json`` while a checkpointed run goes on: the tasks running now and how many are done,
for ``molexp status`` (the journal records outcomes only). Written by the run's session, whatever started the
run (``molexp run`` or Python)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from .result import TaskStatus

RUNNING_FILE = "running.json"
_RUNNING, _RETRYING = TaskStatus.RUNNING, TaskStatus.RETRYING
_monotonic = time.monotonic


class RunningFile:
    """The file, rewritten atomically at most twice a second from the run's progress events (``__call__``);
    removed by ``close()`` when the run ends."""

    INTERVAL = 0.5

    def __init__(self, directory: str, total: int):
        self.path = Path(directory) / RUNNING_FILE
        self.total, self.running, self.done = total, set(), 0
        self._written = 0.0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._write()

    def __call__(self, task, status: TaskStatus) -> None:
        """A transition of ``task`` (from the driver thread, at every one: kept to a set operation and a clock
        read; the file is written at most every ``INTERVAL`` seconds)."""
        with self._lock:
            if status is _RUNNING or status is _RETRYING:
                self.running.add(task.name)
            else:
                self.running.discard(task.name)
                self.done += 1
            wait = self.INTERVAL - (_monotonic() - self._written)
            if wait <= 0:
                self._write()
            elif self._timer is None:   # written within INTERVAL, whatever comes next
                self._timer = threading.Timer(wait, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._write()

    def _write(self) -> None:
        data = {"pid": os.getpid(), "total": self.total, "done": self.done, "running": sorted(self.running),
                "time": time.time()}
        tmp = self.path.with_name(f".{RUNNING_FILE}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError:   # a full or read-only disk: status just shows less; the journal says it loudly
            pass
        self._written = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        for p in (self.path, self.path.with_name(f".{RUNNING_FILE}.{os.getpid()}")):
            try:
                p.unlink()
            except OSError:
                pass
