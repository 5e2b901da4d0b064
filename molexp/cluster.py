"""Where tasks run: Dask's local threaded scheduler (default) or a ``distributed`` cluster.

``backend_for(client=..., cluster=..., address=...)`` returns a backend with one job: start the compiled
graph and report every task's outcome into the driver's queue. Nothing here schedules: Dask does.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from .errors import ClusterError, ConfigError
from .result import FailureKind, TaskResult, TaskStatus
from .runtime import LocalCancel, LocalSink

log = logging.getLogger("molexp")


def default_workers() -> int:
    """The local scheduler's default thread count: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalBackend:
    """Dask's threaded scheduler (``dask.threaded.get``) in a background thread, on a pool of our own."""

    name = "local"

    def __init__(self, max_workers: int | None):
        self.workers = max_workers or default_workers()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def make_sink(self, queue, run_id: str):
        return LocalSink(queue)

    def make_cancel(self, run_id: str):
        return LocalCancel()

    def start(self, compiled, queue) -> None:
        import dask.threaded

        keys = list(compiled.keys.values())
        if compiled.priorities:
            # Dask's local scheduler decides what is ready; every ready task goes to a pool that starts the
            # highest priority first (dask.local itself orders ready tasks by dask.order, not by priority).
            pool = self._pool = PriorityPool(self.workers, compiled.priorities)
            get = partial(dask.local.get_async, pool.submit, len(keys) + 1, get_id=dask.threaded._thread_get_id,
                          pack_exception=dask.threaded.pack_exception)
        else:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="molexp-worker")
            get = partial(dask.threaded.get, pool=self._pool)

        def engine():
            try:
                get(compiled.dsk, keys)
            except BaseException as e:  # reported to the driver, which fails what never reported
                queue.put(("engine-error", None, e))
            else:
                queue.put(("engine-done", None, None))

        self._thread = threading.Thread(target=engine, name="molexp-engine", daemon=True)
        self._thread.start()

    def cancel(self, names) -> list:
        """Nothing to cancel: every pending task sees the run's cancel flag and returns at once."""
        return []

    def check(self) -> None:
        """Raise ``ClusterError`` when the engine can no longer report (never, locally)."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class PriorityPool:
    """``submit`` for ``dask.local.get_async``: ready tasks wait in a heap and ``workers`` threads run the
    highest priority first (ties: first submitted first)."""

    def __init__(self, workers: int, priorities: dict):
        self._priorities = priorities
        self._heap: list = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"molexp-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn, *args):
        future: Future = Future()
        key = args[0][0][0]  # get_async submits batch_execute_tasks([(key, ...), ...])
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (-self._priorities.get(key, 0), self._seq, fn, args, future))
            self._cond.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                _, _, fn, args, future = heapq.heappop(self._heap)
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as e:
                    future.set_exception(e)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        with self._cond:
            self._closed = True
            if cancel_futures:
                for *_, future in self._heap:
                    future.cancel()
                self._heap.clear()
            self._cond.notify_all()


class DistributedSink:
    """Events from a ``distributed`` worker: ``log_event`` on a per-run topic, read by the driver's
    ``subscribe_topic`` handler. Results travel as Dask futures, not events."""

    def __init__(self, topic: str):
        self.topic = topic

    def emit(self, event: tuple) -> None:
        from distributed import get_worker

        try:
            get_worker().log_event(self.topic, event)
        except ValueError:  # not on a worker (e.g. a client-side compute): nobody to tell
            pass

    def done(self, result) -> None:
        pass

    def worker(self) -> str:
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            return "client"


class DistributedCancel:
    """A run's stop flag on a cluster: a ``distributed.Event``, read at most every 0.1 s per process."""

    _cache: dict[str, tuple[float, bool]] = {}

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

    def is_set(self) -> bool:
        now = time.monotonic()
        checked = self._cache.get(self.name)
        if checked is not None and (checked[1] or now - checked[0] < 0.1):
            return checked[1]
        try:
            value = bool(self._event().is_set())
        except Exception:
            value = False
        self._cache[self.name] = (now, value)
        return value

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.is_set():
                return True
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.is_set()


class DistributedBackend:
    """A ``distributed.Client``: the graph goes in with ``client.get(..., sync=False)``; outcomes come back
    through ``as_completed`` in a collector thread; running/retrying events through ``subscribe_topic``."""

    name = "distributed"

    def __init__(self, client):
        self.client = client
        self.workers = None
        self._futures: dict[str, object] = {}
        self._topic: str | None = None
        self._collector: threading.Thread | None = None
        self._stop = threading.Event()

    def make_sink(self, queue, run_id: str):
        self._topic = f"molexp-{run_id}"
        self.client.subscribe_topic(self._topic, lambda event: queue.put(event[1]))
        return DistributedSink(self._topic)

    def make_cancel(self, run_id: str):
        return DistributedCancel(f"molexp-cancel-{run_id}", client=self.client)

    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:
            return None

    def start(self, compiled, queue) -> None:
        from distributed import as_completed

        names = list(compiled.specs)
        keys = [compiled.keys[n] for n in names]
        key_to_name = {compiled.keys[n]: n for n in names}
        try:
            graph = compiled.annotated(self._resources(compiled))
            futures = self.client.get(graph, keys, sync=False)
        except Exception as e:
            raise ClusterError(f"could not submit the graph to {self.client.scheduler.address}: {e}") from e
        self._futures = dict(zip(names, futures))

        def collect():
            try:
                for future, value in as_completed(futures, with_results=True, raise_errors=False):
                    name = key_to_name[future.key]
                    if future.status == "finished":
                        queue.put(("done", name, value))
                    else:
                        queue.put(("crash", name, _crash_result(name, future.status, value, key_to_name)))
                    if self._stop.is_set():
                        break
            except BaseException as e:
                queue.put(("engine-error", None, e))
            else:
                queue.put(("engine-done", None, None))

        self._collector = threading.Thread(target=collect, name="molexp-collector", daemon=True)
        self._collector.start()

    def _resources(self, compiled) -> dict[str, dict[str, float]] | None:
        """Dask resource needs per key (memory in bytes, cores), for the resources the workers declare."""
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        except Exception:
            return None
        declared = set().union(*(w.get("resources") or {} for w in workers)) & {"memory", "cores"}
        if not declared:
            return None
        needs = {}
        for name, spec in compiled.specs.items():
            need = {}
            if "memory" in declared and spec.memory_limit:
                need["memory"] = float(spec.memory_limit)
            if "cores" in declared:
                need["cores"] = float(spec.cores)
            if need:
                needs[compiled.keys[name]] = need
        return needs or None

    def cancel(self, names) -> list:
        """Cancel the futures of tasks that have not started; returns their names."""
        names = [n for n in names if n in self._futures and not self._futures[n].done()]
        if names:
            try:
                self.client.cancel([self._futures[n] for n in names])
            except Exception:  # the cluster may be gone already; the driver reports that
                pass
        return names

    def check(self) -> None:
        status = getattr(self.client, "status", "running")
        if status in ("closed", "closing", "failed"):
            raise ClusterError(f"lost the connection to the Dask scheduler (client status: {status})")

    def close(self) -> None:
        self._stop.set()
        if self._topic is not None:
            try:
                self.client.unsubscribe_topic(self._topic)
            except Exception:
                pass
        self._futures = {}


def _crash_result(name: str, status: str, value, key_to_name) -> TaskResult:
    """A TaskResult for a future that did not finish: cancelled, or erred in Dask (a lost worker)."""
    from concurrent.futures import CancelledError

    if status == "cancelled" or isinstance(value, CancelledError):
        return TaskResult(name, TaskStatus.SKIPPED, reason="cancelled")
    exc = value[1] if isinstance(value, tuple) and len(value) == 3 else value
    culprit = getattr(exc, "task", None)
    if type(exc).__name__ == "KilledWorker":
        culprit_name = key_to_name.get(culprit, culprit)
        if culprit_name != name:
            return TaskResult(name, TaskStatus.SKIPPED, reason=f"upstream {culprit_name!r} failed (lost worker)")
        return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.LOST_WORKER.value,
                          error=f"task {name!r} was running on workers that died, {exc}; it may be killing them "
                                "(memory?), or the workers were lost")
    return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                      error=f"Dask could not run task {name!r}: {type(exc).__name__}: {exc}")


def connect(*, client=None, cluster=None, address: str | None = None):
    """``(client or None, owned)``: the ``distributed.Client`` for the given target, or None for the local
    scheduler. ``owned`` is True when molexp made the client (and so closes it)."""
    given = [n for n, v in (("client", client), ("cluster", cluster), ("address", address)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of client=, cluster=, address=; got {', '.join(given)}")
    if client is not None:
        if not hasattr(client, "get") or not hasattr(client, "scheduler"):
            raise ConfigError(f"client= expects a distributed.Client, got {type(client).__name__}")
        return client, False
    if cluster is not None:
        from distributed import Client

        if not hasattr(cluster, "scheduler_address"):
            raise ConfigError(f"cluster= expects a Dask cluster object (LocalCluster, SLURMCluster, ...), "
                              f"got {type(cluster).__name__}")
        return Client(cluster), True
    if address is not None:
        from distributed import Client

        if not isinstance(address, str) or not address:
            raise ConfigError(f"address= expects a scheduler address such as 'tcp://host:8786', got {address!r}")
        try:
            return Client(address, timeout="10s"), True
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {e}") from None
    return None, False
