"""A run's cancel flag on a ``distributed`` cluster, as the tasks on its workers read it."""

from __future__ import annotations

import threading
import time


class DistributedCancel:
    """A run's stop flag on a cluster: a ``distributed.Event``.

    In each process that reads it, one daemon thread waits on the event (``Event.wait``: the scheduler answers
    as soon as it is set) and mirrors it in a ``threading.Event``, so ``is_set()`` and ``wait()`` never leave
    the process. Asking the scheduler from the task's own thread instead (every 0.1 s) cost ~0.4 ms of every
    task's time on a busy worker (1,000 `true` tasks, measured)."""

    _mirrors: dict[str, "_Mirror"] = {}  # per process, by event name
    _lock = threading.Lock()

    def __init__(self, name: str, client=None):
        self.name = name
        self._client = client  # driver side only; not pickled

    def __getstate__(self):
        return {"name": self.name, "_client": None}

    def _event(self):
        from distributed import Event

        return Event(self.name, client=self._client)

    def set(self) -> None:
        self._event().set()

    def release(self) -> None:
        """The run is over: wake every watcher so it stops, and forget the event on the scheduler (a wait
        still pending when the scheduler shuts down is logged there as an error)."""
        event = self._event()
        event.set()
        event.clear()

    def is_set(self) -> bool:
        return self._mirror().is_set()

    def wait(self, seconds: float) -> bool:
        return self._mirror().wait(seconds)

    def _mirror(self) -> "_Mirror":
        mirror = self._mirrors.get(self.name)
        if mirror is None:
            with self._lock:
                mirror = self._mirrors.get(self.name) or self._watch()
        mirror.asked = time.monotonic()
        return mirror

    def _watch(self) -> "_Mirror":
        """A mirror of the event, watched from now on (not kept when there is no scheduler to ask: the next
        call tries again)."""
        now = time.monotonic()
        for name, old in list(self._mirrors.items()):  # runs long over in this process
            if old.is_set() and now - old.asked > _WATCH_IDLE:
                self._mirrors.pop(name, None)
        mirror = _Mirror()
        event = self._event()
        try:
            if event.client is None:  # resolved here: in a task's thread ``get_client`` finds the worker's
                return mirror
            if event.is_set():
                mirror.set()
        except Exception:
            return mirror
        self._mirrors[self.name] = mirror
        if not mirror.is_set():
            threading.Thread(target=self._follow, args=(event, mirror), name="molexp-cancel-watch",
                             daemon=True).start()
        return mirror

    def _follow(self, event, mirror: "_Mirror") -> None:
        """Wait on the event until it is set, or until nobody in this process has asked for a while."""
        while not mirror.is_set():
            try:
                if event.wait(timeout=_WATCH_WAIT):
                    mirror.set()  # kept: a run once cancelled stays cancelled
                    return
            except Exception:  # the scheduler is away for now
                time.sleep(_WATCH_WAIT)
            if time.monotonic() - mirror.asked > _WATCH_IDLE:
                with self._lock:
                    self._mirrors.pop(self.name, None)
                return


class _Mirror(threading.Event):
    """A local copy of a cancel event, and when it was last read."""

    asked = 0.0


_WATCH_WAIT = 2.0    # seconds a watcher's ``Event.wait`` lasts on the scheduler before it looks around
_WATCH_IDLE = 30.0   # a watcher nobody read for this long stops (the run is over in this process)
