"""What runs on the workers of a ``distributed`` cluster for molexp: ``run_remote`` (one task, its value sent
back pickled) and ``DistributedSink`` (its events, batched per worker process)."""

from __future__ import annotations

import copy
import threading

import cloudpickle

from ..run.runtime import run_packed
from ..run.spec import Retrying, Started
from ..state.result import FailureKind, TaskResult, TaskStatus

# How long a worker process gathers task events (starts, retries) before sending them (see DistributedSink).
_COALESCE = 0.02

_EVENTS = {"Started": Started, "Retrying": Retrying}   # what a worker sends, by name (see DistributedSink.emit)


class DistributedSink:
    """Events from a ``distributed`` worker: ``log_event`` on a per-run topic, read by the driver's
    ``subscribe_topic`` handler. Results travel as Dask futures, except a bundle member's (``finished``).

    A worker process gathers the events of ``_COALESCE`` seconds and sends them as one list: one message
    through the scheduler per batch instead of one per task start (a message each cost ~14 % of a run of
    1,000 `true` tasks on a one-worker cluster). A start is thus reported at most that much later; it only
    says what a stopped run was doing (a task on a worker always reports its own outcome)."""

    _pending: dict[str, list] = {}   # per process: topic -> events not sent yet
    _lock = threading.Lock()

    def __init__(self, topic: str):
        self.topic = topic

    def emit(self, event: Started | Retrying) -> None:
        self._send((type(event).__name__, *(getattr(event, f) for f in event.__slots__)))  # msgpack: plain tuples

    def finished(self, blob: bytes) -> None:
        """A bundle member's final result (cloudpickle bytes), after its other events (see ``bundle``)."""
        self._send(("Finished", blob))

    def flush(self) -> None:
        """Send what is pending now (from a task's thread: it reaches the scheduler before the task's end)."""
        from distributed import get_worker

        try:
            self._flush(get_worker())
        except ValueError:
            pass

    def _send(self, event: tuple) -> None:
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # not on a worker (e.g. a client-side compute): nobody to tell
            return
        with self._lock:
            pending = self._pending.get(self.topic)
            if pending is not None:
                pending.append(event)
                return
            self._pending[self.topic] = [event]
        worker.loop.add_callback(worker.loop.call_later, _COALESCE, self._flush, worker)

    def _flush(self, worker) -> None:
        with self._lock:
            events = self._pending.pop(self.topic, [])
        if events:
            worker.log_event(self.topic, events)

    def done(self, result) -> None:
        pass

    def worker(self) -> str:
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            return "client"


class Packed:
    """A Python task's value as cloudpickle bytes, made on the worker that ran it (see ``run_remote``)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob


def run_remote(name: str, spec_blob: bytes, ctx_blob: bytes, *upstream: TaskResult) -> TaskResult:
    """What a worker runs for one task (``runtime.run_packed``), with upstream values unpickled first and the
    task's own value pickled after: a value that cannot be pickled (a generator, a lock) fails this task,
    with the reason, where Dask would otherwise fail to send the result and lose the run."""
    return packed(run_packed(name, spec_blob, ctx_blob, *map(unpacked, upstream)))


def packed(result: TaskResult) -> TaskResult:
    """``result`` with its value pickled (see ``run_remote``)."""
    if result.value is not None:
        try:
            result.value = Packed(cloudpickle.dumps(result.value))
        except Exception as e:
            result.value = None
            result.status, result.failure = TaskStatus.FAILED, FailureKind.EXCEPTION.value
            result.error = (f"the return value of task {result.name!r} cannot be sent back from the worker: "
                            f"{type(e).__name__}: {e}")
    return result


def unpacked(result):
    """``result`` with its value unpickled, when it came packed from a worker (a copy: the packed one may
    still go to other dependents)."""
    if isinstance(result, TaskResult) and isinstance(result.value, Packed):
        result = copy.copy(result)
        result.value = cloudpickle.loads(result.value.blob)
    return result
