"""A ``distributed`` cluster as a molexp backend: events, task submission as inputs finish, and outcomes."""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time

import cloudpickle
import dask
from dask.utils import parse_timedelta
from dask.task_spec import Task, TaskRef

from .adaptive_policy import members_target
from .cluster_cancel import DistributedCancel
from ..errors import ClusterError
from ..run.order import places
from ..state.result import TaskResult
from .futures import as_completed_of, release_later, track
from .bundle import run_bundle
from .bundling import ALONE, HOLD, SHORT, Bundler
from .collector import Collector
from .remote import _EVENTS, DistributedSink, run_remote

log = logging.getLogger("molexp")



# At most this many tasks (bundle members count) go to the scheduler in one graph. Without a window one finished
# task can ready 100,000 others: as one graph that would be a message of ~100 MB (Dask warns over 10 MB) and a
# dask.order over all of it.
_SUBMIT_CHUNK = 1000


# A run context (pickled) up to this size travels inside each task; a larger one (big params or context) is
# one data node every task depends on. Why inline: a dependency shared by every task cost the scheduler and
# the worker ~0.45 ms of CPU a task each (measured on 1,000 `true` tasks), and a run context is typically
# ~500 bytes; the scheduler keeps one copy per submitted graph (its pickle shares it), each task message
# to a worker carries it.
_INLINE_CONTEXT = 64 * 1024


class DistributedBackend(Collector):
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

    With ``bundle_seconds`` > 0, ready tasks expected to be short travel as bundles (``bundling``: which ones;
    ``bundle``: what the worker runs): one Dask task for several members, whose results come back as events
    while the bundle goes on. Members count as tasks in flight.
    """

    name = "distributed"

    schedules_dependents = False   # the driver submits each task once its inputs are in (``submit``)
    tick = 0.5                     # seconds between health checks (0.1 with a throttle: it is asked at each)

    def __init__(self, client, *, window: int | None = None, throttle=None, bundle_seconds: float = 0.0):
        self.client = client
        self.bundle_seconds = bundle_seconds
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
        self._bundler: Bundler | None = None
        self._bundles: dict[str, list[str]] = {}   # bundle key -> its members, until its outcome is in
        self._bundle_lead: dict[str, str] = {}     # bundle key -> its first member's key (its priority)
        self._claims: dict[str, str] = {}          # bundle key -> its claim event (cleared at close)
        self._started_names: set[str] = set()      # reported started, not final yet (bundle members)
        self.bundled = 0   # tasks this run sent in bundles

    # -- setup -------------------------------------------------------------------------------------------
    def make_sink(self, events, run_id: str):
        self._topic = f"molexp-{run_id}"

        def handle(event):   # (time, [event as a tuple, ...]) from a worker's batch
            for e in event[1]:
                kind = e[0]
                if kind == "Finished":   # a bundle member's result (see bundle.run_bundle)
                    self._member_finished(e[1], events)
                    continue
                if kind == "Started" and self._bundler is not None:
                    self._started_names.add(e[1])
                events.put(_EVENTS[kind](*e[1:]))

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
        if self.bundle_seconds > 0:
            alone = (n for n, k in compiled.keys.items() if k in (self._resources_by_key or ()))
            self._bundler = Bundler(compiled.specs, compiled.known_durations, self.bundle_seconds, alone)
        self._start_submitting(compiled, events)

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
        # Ready tasks go in the run's order (``Compiled.priorities``: one distinct place per task, higher first,
        # see run/order.py), and the scheduler is told the same order as each task's Dask priority (it would
        # otherwise order the tasks of one submission by dask.order, which reverses independent ones).
        keys = compiled.keys
        prio = self._dask_priority = compiled.priorities or places(list(keys), dict.fromkeys(keys, 0), keys)
        self._rank = {n: -prio[k] for n, k in keys.items()}
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
        keys = self._compiled.keys
        bundler, threads = self._bundler, self._threads
        graph = {}
        bundle: list = []       # the bundle being filled: ready entries of short tasks of one user priority
        size, priority = 0, None
        taken = 0               # tasks in ``graph`` and ``bundle``
        while self._ready and (bound is None or len(self._in_flight) < bound):
            entry = heapq.heappop(self._ready)
            name = entry[1]
            how = bundler.route(name, threads) if bundler is not None else ALONE
            if how == HOLD:
                bundler.hold(entry)
                continue
            if how == SHORT:
                if bundle and (len(bundle) >= size or bundler.priority(name) != priority):
                    self._add_bundle(graph, bundle)
                    bundle = []
                if not bundle:
                    size = bundler.bundle_size(bundler.expected(name), len(self._ready) + 1, threads)
                    priority = bundler.priority(name)
                bundle.append(entry)
            else:
                key = keys[name]
                graph[key] = self._task(key, entry)
            self._in_flight.add(name)
            self.submissions.append((time.time(), len(self._in_flight), bound))
            taken += 1
            if taken >= _SUBMIT_CHUNK:
                if bundle:
                    self._add_bundle(graph, bundle)
                    bundle = []
                self._submit(graph)
                graph, taken = {}, 0
        if bundle:
            self._add_bundle(graph, bundle)
        if graph:
            self._submit(graph)
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))

    def _member(self, entry) -> tuple:
        """(name, spec, upstream results) of a ready entry: upstream results as data, as their workers sent
        them (still pickled), else as the driver has them (tasks reused from a checkpoint)."""
        _, name, upstream = entry
        spec = self._compiled.specs[name]
        sent = self._sent
        args = tuple(sent.get(up.name, up) for up in upstream)
        self._submitted(spec.deps)
        return name, spec, args

    def _task(self, key: str, entry) -> Task:
        name, spec, args = self._member(entry)
        return Task(key, run_remote, name, cloudpickle.dumps(spec), self._ctx_arg, *args)

    def _add_bundle(self, graph: dict, entries: list) -> None:
        """One Dask task for ``entries`` (alone when there is one)."""
        keys = self._compiled.keys
        if len(entries) == 1:
            key = keys[entries[0][1]]
            graph[key] = self._task(key, entries[0])
            return
        n = len(self._claims)
        run_id = self._compiled.ctx.run_id
        key = f"bundle-{run_id[:8]}-{n}"
        claim = f"molexp-claim-{run_id}-{n}"
        members = [self._member(e) for e in entries]
        self._claims[key] = claim
        self._bundles[key] = [m[0] for m in members]
        self._bundle_lead[key] = keys[entries[0][1]]
        graph[key] = Task(key, run_bundle, claim, cloudpickle.dumps(members), self._ctx_arg)
        self.bundled += len(members)

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
        priorities, lead, resources = self._dask_priority, self._bundle_lead, self._resources_by_key
        # (a bundle has the priority of its first member, the best ranked)
        notes = {"priority": {k: priorities[lead.get(k, k)] for k in keys}.get}
        if resources:
            notes["resources"] = {k: resources[k] for k in keys if k in resources}.get
        # A HighLevelGraph: Dask gives it a random token, where a plain dict is
        # tokenized (hashing every task: measured +0.4 ms of driver CPU a task, more than submitting together
        # saves).
        layer = MaterializedLayer(graph, annotations=notes)
        futures = self.client.get(HighLevelGraph({"molexp": layer}, {"molexp": set()}), keys, sync=False,
                                  fifo_timeout="100 ms")
        for future in futures:
            for name in self._names(future.key):
                self._futures[name] = future
        track(self.client, self._ac, futures)
        self._more.set()  # the collector may be waiting for futures to watch

    def task_final(self, result) -> None:
        """Called by the driver for each final result: the task is no longer in flight (its future was
        released when its result came in). A task that was never submitted (skipped) releases its inputs."""
        name = result.name
        in_flight = self._in_flight
        if not self._started:
            return  # not started yet: tasks reused from a checkpoint are final before anything is submitted
        if self._bundler is not None:
            self._started_names.discard(name)
            for entry in self._bundler.observe(result):   # its family is known now: what waited for it
                heapq.heappush(self._ready, entry)
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
        holds (queued, not on any worker, not finished); returns their names. A task already on a worker is left
        to it: it sees the run's cancel flag (set before this is called) and reports itself, as having run or not.

        What the scheduler holds is asked after the cancel flag is set and, for a bundle, after it is claimed as
        a copy run after a lost worker would claim it: from then on a worker that starts the bundle runs none of
        its members, and one that started it before is seen processing it (or, finished, holding its result:
        the client's own view of a future lags the scheduler's, so a finished bundle looks pending)."""
        names = list(names)
        self._stopped_submitting = True
        unsubmitted = [n for n in names if n not in self._futures and n in self._compiled.specs]
        self._ready.clear()
        if self._bundler is not None:
            self._bundler.clear()
        asked = set(names)
        futures = {}
        for n in names:
            f = self._futures.get(n)
            if f is not None and not f.done() and all(m in asked for m in self._names(f.key)):
                futures[f.key] = f   # (a bundle only when none of its members may be running)
        try:
            self._events("event_set", [self._claims[k] for k in futures if k in self._claims], timeout=10)
            on_workers = {k for keys in self.client.processing().values() for k in keys}
            finished = {k for k, where in self.client.who_has(list(futures.values())).items() if where} \
                if futures else set()
        except Exception:  # the cluster may be gone already; the driver reports that
            return unsubmitted
        queued = [k for k, f in futures.items() if k not in on_workers and k not in finished and f.status != "error"]
        cancelled = [n for k in queued for n in self._names(k)]
        self._cancelled.update(cancelled)
        if queued:
            try:
                self.client.cancel([futures[k] for k in queued])
            except Exception:
                pass
        return unsubmitted + cancelled

    def may_have_started(self, name: str) -> bool:
        """Whether ``name`` was handed to the cluster (its start may not have been reported when the
        scheduler was lost)."""
        return name in self._futures or name in self._in_flight

    def members_target(self, workers: int) -> int:
        """Workers wanted for this run's tasks in flight or held for a probe, each counted as one Dask task of
        its expected duration (``adaptive_policy.members_target``): 0 when the run does not bundle (Dask then
        sees every task itself). Called from the cluster's event loop: reads copies, asks the scheduler
        nothing."""
        bundler = self._bundler
        if bundler is None:
            return 0
        unknown = parse_timedelta(dask.config.get("distributed.scheduler.unknown-task-duration"))
        target = parse_timedelta(dask.config.get("distributed.adaptive.target-duration"))
        durations = []
        for name in list(self._in_flight) + bundler.held_names():
            e = bundler.expected(name)
            durations.append(unknown if e is None else bundler.seconds if e == math.inf else e)
        return members_target(durations, target, self._threads / workers if workers else 1)

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
            if self._bundler is not None:
                for entry in self._bundler.expire(self._started_names):   # a slow probe: its family is not short
                    heapq.heappush(self._ready, entry)
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
        if self._claims:
            self._clear_claims()
        release_later(self.client, [*self._futures.values(), self._ctx_future])
        self._futures = {}
        self._ctx_future = None  # release everything: an adaptive cluster may retire workers holding data
        self._ac = None

    def _clear_claims(self) -> None:
        """Forget the bundles' claim events on the scheduler."""
        claims, self._claims = list(self._claims.values()), {}
        if getattr(self.client, "status", None) != "running":
            return   # the scheduler is gone: so are the events
        try:
            self._events("event_clear", claims, timeout=5)
        except Exception:   # the scheduler is going: so are the events
            pass

    def _events(self, op: str, names: list[str], timeout: float | None = None) -> None:
        """``Event.set``/``clear`` (``op``: the scheduler's handler) of the events ``names``, as one message each
        sent together, waiting for the scheduler's answers."""
        if not names:
            return
        scheduler = self.client.scheduler

        async def send():
            import asyncio

            await asyncio.gather(*(getattr(scheduler, op)(name=n) for n in names), return_exceptions=True)

        self.client.sync(send, callback_timeout=timeout)


def _identity(x):
    return x

