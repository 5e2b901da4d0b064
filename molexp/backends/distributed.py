"""A ``distributed`` cluster as a molexp backend: events, task submission as inputs finish, and outcomes."""

from __future__ import annotations

import heapq
import logging
import threading
import time

import cloudpickle
from dask.task_spec import Task, TaskRef

from .cluster_cancel import DistributedCancel
from ..errors import ClusterError
from ..state.result import FailureKind, TaskResult, TaskStatus
from ..run.spec import ClusterLost, EngineError, Finished
from .futures import as_completed_of, release_later, track
from .remote import _EVENTS, DistributedSink, run_remote, unpacked

log = logging.getLogger("molexp")


# While more tasks are in flight than the cluster has threads, the collector waits this long after a future
# finishes before fetching results, so one ``gather`` fetches what finished meanwhile: short tasks otherwise
# cost one request to the worker per 1-2 results (measured: 640 gathers for 1,000 `true` tasks), which
# competes with the tasks for the worker's CPU. The workers are busy with the other tasks in flight meanwhile,
# so what the results make ready starts no later than a thread is free; with fewer in flight, at once.
_GATHER_WAIT = 0.05

# At most this many tasks go to the scheduler in one graph. Without a window one finished task can ready
# 100,000 others: as one graph that would be a message of ~100 MB (Dask warns over 10 MB) and a dask.order
# over all of it.
_SUBMIT_CHUNK = 1000

# How long the collector waits for the scheduler to forget the keys of results that are in (see ``_forget``);
# it takes one message on the client's batched stream, typically a few milliseconds.
_FORGET_WAIT = 2.0

# A run context (pickled) up to this size travels inside each task; a larger one (big params or context) is
# one data node every task depends on. Why inline: a dependency shared by every task cost the scheduler and
# the worker ~0.45 ms of CPU a task each (measured on 1,000 `true` tasks), and a run context is typically
# ~500 bytes; the scheduler keeps one copy per submitted graph (its pickle shares it), each task message
# to a worker carries it.
_INLINE_CONTEXT = 64 * 1024


class DistributedBackend:
    """A ``distributed.Client`` as a molexp backend.

    A task is submitted once its dependencies have finished (those one driver wake-up made ready go together,
    as one graph: see ``caught_up``), keeping at most ``window`` in flight (BatchExecutor) and asking
    ``throttle()`` for a lower bound at each step (AdaptiveExecutor). Outcomes come back through
    ``as_completed`` in a collector thread; running/retrying events through ``subscribe_topic``.

    Upstream results reach a task as data (the results the driver received), never as Dask dependencies, and
    each future is released as soon as its result is in: no key of the run depends on another, so when a
    worker dies Dask has nothing finished to compute again. Only the tasks that were running on it run again
    (Dask reschedules them), and a task recorded as completed is never executed twice in one run. Python
    values travel as cloudpickle bytes made on the worker (``run_remote``): a value that cannot be pickled
    fails its task there instead of the run.
    """

    name = "distributed"

    schedules_dependents = False   # the driver submits each task once its inputs are in (``submit``)
    tick = 0.5                     # seconds between health checks (0.1 with a throttle: it is asked at each)

    def __init__(self, client, *, window: int | None = None, throttle=None):
        self.client = client
        self.window = window
        self.throttle = throttle
        self.tick = 0.1 if throttle is not None else 0.5
        self._futures: dict[str, object] = {}
        self._topic: str | None = None
        self._collector: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped_submitting = False
        self._cancelled: set[str] = set()  # futures molexp itself cancelled
        self._cancel: DistributedCancel | None = None
        self._resources_pending = self._warned_resources = False
        self._ctx_future = None  # the run context as shared data, when it is too big to travel in each task
        self._started = False     # start() has run: tasks may be submitted
        self._threads = 4         # the cluster's worker threads (counted at start and at each check)
        self._ready: list = []    # heap of (rank, name, upstream results): ready, not submitted yet
        self._in_flight: set[str] = set()       # submitted, not final yet
        self.max_in_flight = 0  # the most tasks this run had submitted and unfinished at once
        self.submissions: list[tuple[float, int, int | None]] = []  # (time, in flight after, bound)

    # -- setup -------------------------------------------------------------------------------------------
    def make_sink(self, events, run_id: str):
        self._topic = f"molexp-{run_id}"

        def handle(event):   # (time, [event as a tuple, ...]) from a worker's batch
            for e in event[1]:
                events.put(_EVENTS[e[0]](*e[1:]))

        self.client.subscribe_topic(self._topic, handle)
        return DistributedSink(self._topic)

    def make_cancel(self, run_id: str):
        self._cancel = DistributedCancel(f"molexp-cancel-{run_id}", client=self.client)
        return self._cancel

    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:
            return None

    def start(self, compiled, events) -> None:
        """Get ready to submit ``compiled``'s tasks (``submit``); outcomes go to ``events``."""
        self._compiled, self._queue = compiled, events
        names = list(compiled.specs)
        self._key_to_name = {compiled.keys[n]: n for n in names}
        self._resources_by_key = self._resources(compiled)
        self._ctx_blob = cloudpickle.dumps(compiled.ctx)
        self._ctx_inline = len(self._ctx_blob) <= _INLINE_CONTEXT
        self._count_threads()
        self._start_submitting(compiled, events)

    def _collect(self, ac, queue) -> None:
        """A thread that turns finished futures into driver events. Futures are taken in batches and their
        results fetched with one ``gather`` per batch (not one request per future)."""
        key_to_name = self._key_to_name

        def collect():
            try:
                while not self._stop.is_set():
                    if ac.is_empty():
                        self._more.wait(0.05)
                        self._more.clear()
                        continue
                    try:
                        batch = ac.next_batch(block=True)
                    except StopIteration:
                        continue
                    if ac.count() > self._threads:
                        # More will finish: let them, and fetch them with this batch (see _GATHER_WAIT).
                        self._stop.wait(_GATHER_WAIT)
                        batch += ac.next_batch(block=False)
                    if self._report(batch, queue, key_to_name, ac):
                        break
            except BaseException as e:
                if self._connection_lost():  # e.g. a gather cut short by the scheduler's death
                    queue.put(ClusterLost(self._lost_message()))
                else:
                    queue.put(EngineError(e))

        self._collector = threading.Thread(target=collect, name="molexp-collector", daemon=True)
        self._collector.start()

    def _report(self, batch, queue, key_to_name, ac) -> bool:
        """Queue the outcome of each future of ``batch``; True when the scheduler is gone. A future whose
        result was lost with its worker after it finished is being computed again: ``ac`` watches it anew."""
        finished = [f for f in batch if f.status == "finished"]
        others = [f for f in batch if f.status != "finished"]   # (a released future says "cancelled")
        values = self.client.gather(finished, errors="skip") if finished else []
        if len(values) != len(finished):  # a result vanished between completion and gather (lost worker)
            values = [self.client.gather(f, errors="raise") if f.status == "finished" else None for f in finished]
            others += [f for f, v in zip(finished, values) if v is None]   # being computed again: watched
            finished, values = [f for f, v in zip(finished, values) if v is not None], [v for v in values if v]
        if finished:
            self._forget(finished)
        for future, value in zip(finished, values):
            name = key_to_name[future.key]
            if self._needed_by.get(name):
                self._sent[name] = value   # dependents get it as it came (the value still pickled)
            queue.put(Finished(unpacked(value)))
        for future in others:
            if future.status in ("lost", "pending"):
                ac.add(future)
                continue
            name = key_to_name[future.key]
            if future.status == "cancelled" and name not in self._cancelled and self._connection_lost():
                # distributed cancels every future when the scheduler connection drops
                queue.put(ClusterLost(self._lost_message()))
                return True
            try:
                error = future.exception(timeout=10) if future.status == "error" else None
            except Exception as e:  # cancelled meanwhile, or the cluster is going
                error = e
            queue.put(Finished(_crash_result(name, future.status, error, key_to_name)))
        return False

    def _forget(self, futures) -> None:
        """Release the futures of results that are in, and wait (briefly) until the scheduler has forgotten
        their keys, before the driver hears of them (and journals them): a worker that dies afterwards takes
        nothing with it that Dask would compute again. The release travels on the client's batched stream;
        ``who_has`` asks on another connection, hence the wait."""
        key_to_name = self._key_to_name
        for f in futures:
            self._futures.pop(key_to_name[f.key], None)
        keys = [f.key for f in futures]

        async def release():
            for f in futures:
                f.release()

        self.client.sync(release)
        deadline = time.monotonic() + _FORGET_WAIT
        while True:
            try:
                held = self.client.who_has(keys)
            except Exception:   # the scheduler is going: nothing will be computed again
                return
            if not any(held.get(k) for k in keys) or time.monotonic() > deadline:
                return
            time.sleep(0.002)

    # -- submission ------------------------------------------------------------------------------------------
    def _start_submitting(self, compiled, queue) -> None:
        self._ac = as_completed_of(self.client)
        self._more = threading.Event()
        if self._ctx_inline:
            self._ctx_arg = self._ctx_blob
        else:
            # A task, not a scatter: it works before any worker exists (an adaptive cluster starting from zero).
            self._ctx_future = self.client.submit(_identity, self._ctx_blob, key=compiled.ctx_key, pure=False)
            self._ctx_arg = TaskRef(compiled.ctx_key)
        specs = compiled.specs
        # How many dependents still need each task's result as its worker sent it (see _sent).
        self._sent: dict[str, TaskResult] = {}
        self._needed_by = {n: 0 for n in specs}
        for s in specs.values():
            for d in s.deps:
                if d in self._needed_by:
                    self._needed_by[d] += 1
        prio = compiled.priorities or {}
        # ready tasks go best priority first, then in topological order (compiled.keys' order)
        self._rank = {n: (-prio.get(k, 0), i) for i, (n, k) in enumerate(compiled.keys.items())}
        self._started = True
        self._collect(self._ac, queue)

    def submit(self, name: str, upstream: tuple[TaskResult, ...]) -> None:
        """Task ``name`` is ready: its dependencies' results are ``upstream`` (in its ``deps`` order). It goes
        to the scheduler at the next ``caught_up`` (with the others ready by then), within the bounds."""
        heapq.heappush(self._ready, (self._rank[name], name, upstream))   # names are unique: never compares upstream

    def allowed_in_flight(self) -> int | None:
        """The current bound on tasks in flight: the window, lowered by the throttle."""
        bound = self.window
        if self.throttle is not None:
            limit = self.throttle(len(self._in_flight))
            if limit is not None:
                bound = limit if bound is None else min(bound, limit)
        return bound

    def _fill(self) -> None:
        """Submit ready tasks, best priority first, while the bound allows: all of them as one graph (one
        ``update-graph`` message and one scheduler step, instead of one per ``client.submit``)."""
        if self._stopped_submitting:
            return
        bound = self.allowed_in_flight()
        specs, keys = self._compiled.specs, self._compiled.keys
        graph = {}
        while self._ready and (bound is None or len(self._in_flight) < bound):
            _, name, upstream = heapq.heappop(self._ready)
            spec = specs[name]
            # Upstream results as data: as their workers sent them (still pickled), else as the driver has them
            # (tasks reused from a checkpoint).
            sent = self._sent
            args = [sent.get(up.name, up) for up in upstream]
            self._submitted(spec.deps)
            key = keys[name]
            graph[key] = Task(key, run_remote, name, cloudpickle.dumps(spec), self._ctx_arg, *args)
            self._in_flight.add(name)
            self.submissions.append((time.time(), len(self._in_flight), bound))
            if len(graph) >= _SUBMIT_CHUNK:
                self._submit(graph)
                graph = {}
        if graph:
            self._submit(graph)
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))

    def _submitted(self, deps) -> None:
        """A dependent of ``deps`` was submitted (or skipped): forget results no other dependent needs."""
        for d in deps:
            left = self._needed_by.get(d)
            if left:
                self._needed_by[d] = left - 1
                if left == 1:
                    self._sent.pop(d, None)

    def _submit(self, graph: dict) -> None:
        """Submit ``graph`` (key -> Task) as one graph, each task's priority and Dask resources as annotations,
        and watch its futures."""
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        keys = list(graph)
        if self._resources_pending:   # no worker had joined: ask again
            self._resources_by_key = self._resources(self._compiled)
        priorities, resources = self._compiled.priorities, self._resources_by_key
        notes = {}
        if priorities:
            notes["priority"] = {k: priorities.get(k, 0) for k in keys}.get
        if resources:
            notes["resources"] = {k: resources[k] for k in keys if k in resources}.get
        # A HighLevelGraph even with nothing to annotate: Dask gives it a random token, where a plain dict is
        # tokenized (hashing every task: measured +0.4 ms of driver CPU a task, more than submitting together
        # saves).
        layer = MaterializedLayer(graph, annotations=notes or None)
        # fifo_timeout as client.submit's: tasks submitted later rank after earlier ones of equal priority
        futures = self.client.get(HighLevelGraph({"molexp": layer}, {"molexp": set()}), keys, sync=False,
                                  fifo_timeout="100 ms")
        for future in futures:
            self._futures[self._key_to_name[future.key]] = future
        track(self.client, self._ac, futures)
        self._more.set()  # the collector may be waiting for futures to watch

    def task_final(self, result) -> None:
        """Called by the driver for each final result: the task is no longer in flight (its future was
        released when its result came in). A task that was never submitted (skipped) releases its inputs."""
        name = result.name
        in_flight = self._in_flight
        if not self._started:
            return  # not started yet: tasks reused from a checkpoint are final before anything is submitted
        if name in in_flight:
            in_flight.discard(name)
        elif name in self._compiled.specs and name not in self._futures:
            self._submitted(self._compiled.specs[name].deps)

    def caught_up(self) -> None:
        """Called by the driver once it has handled every waiting outcome: submit what became ready meanwhile
        as one graph. Why not at each
        ``task_final``: each submission is one ``update-graph`` message and one scheduler step in the driver's
        process, which is the busy one; results arrive in batches (one per collector ``gather``), so one
        wake-up typically readies several tasks."""
        if self._ready:
            self._fill()

    # -- control ---------------------------------------------------------------------------------------------
    def _resources(self, compiled) -> dict[str, dict[str, float]] | None:
        """Dask resource needs per key (memory in bytes, cores), for the resources the workers declare. With
        no worker yet (a batch-system or adaptive cluster starting), asked again at each submission until one
        has joined; tasks submitted before that go without, which is said once (a resource no worker declares
        would leave them waiting forever)."""
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        except Exception:
            return None
        if not workers:
            self._resources_pending = True
            if not self._warned_resources and any(s.memory_limit or s.cores > 1 for s in compiled.specs.values()):
                self._warned_resources = True
                log.warning("molexp: no Dask worker has joined yet: tasks submitted before one does go without "
                            "their memory/cores as Dask resources (their memory limit is still enforced by "
                            "molexp on the worker)")
            return None
        self._resources_pending = False
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
        """Cancel tasks that cannot have started: those not submitted yet, and those the scheduler still
        holds (queued, not on any worker); returns their names. A task already on a worker is left to it: it
        sees the run's cancel flag (set before this is called) and reports itself, as having run or not."""
        names = list(names)
        self._stopped_submitting = True
        unsubmitted = [n for n in names if n not in self._futures and n in self._compiled.specs]
        self._ready.clear()
        pending = [n for n in names if n in self._futures and not self._futures[n].done()]
        try:
            on_workers = {k for keys in self.client.processing().values() for k in keys}
        except Exception:  # the cluster may be gone already; the driver reports that
            return unsubmitted
        keys = self._compiled.keys
        queued = [n for n in pending if keys[n] not in on_workers]
        self._cancelled.update(queued)
        if queued:
            try:
                self.client.cancel([self._futures[n] for n in queued])
            except Exception:
                pass
        return unsubmitted + queued

    def may_have_started(self, name: str) -> bool:
        """Whether ``name`` was handed to the cluster (its start may not have been reported when the
        scheduler was lost)."""
        return name in self._futures or name in self._in_flight

    def _connection_lost(self, wait: float = 3.0) -> bool:
        """True when the client has lost its scheduler (it may take a moment to notice)."""
        deadline = time.monotonic() + wait
        while self.client.status == "running":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _lost_message(self) -> str:
        address = getattr(getattr(self.client, "scheduler", None), "address", "?")
        return (f"lost the connection to the Dask scheduler at {address} (client status: {self.client.status}); "
                "tasks recorded in the checkpoint are kept: resume on a new cluster to finish the run")

    def _count_threads(self) -> None:
        """The cluster's worker threads now (an adaptive or batch-system cluster grows and shrinks)."""
        try:
            self._threads = max(1, sum(self.client.nthreads().values()))
        except Exception:
            pass   # the scheduler is going: check() says so

    def check(self) -> None:
        """Raise ``ClusterError`` when the scheduler is gone; otherwise (the driver waited a tick for events)
        count the cluster's threads again and submit what the throttle may allow now."""
        if getattr(self.client, "status", "running") != "running":
            raise ClusterError(self._lost_message())
        if self._started:
            self._count_threads()
            self._fill()

    def close(self) -> None:
        self._stop.set()
        if self._cancel is not None:
            try:
                self._cancel.release()
            except Exception:  # the cluster may be gone already
                pass
        if self._topic is not None:
            try:
                self.client.unsubscribe_topic(self._topic)
            except Exception:
                pass
        leftover = [f for f in self._futures.values() if not f.done()]
        if leftover:
            try:
                self.client.cancel(leftover)
            except Exception:
                pass
        self._sent = {}
        release_later(self.client, [*self._futures.values(), self._ctx_future])
        self._futures = {}
        self._ctx_future = None  # release everything: an adaptive cluster may retire workers holding data
        self._ac = None


def _identity(x):
    return x


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
