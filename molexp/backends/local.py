"""Dask's local threaded scheduler as a molexp backend (the default: nothing to start)."""

from __future__ import annotations

import threading
from bisect import insort
from concurrent.futures import Future, InvalidStateError
from functools import partial
from queue import SimpleQueue

from .cluster import default_workers
from dask.task_spec import DataNode

from ..run.spec import EngineDone, EngineError, Finished


class LocalBackend:
    """Dask's threaded scheduler (``dask.threaded.get``) in a background thread, on a pool of our own."""

    name = "local"
    schedules_dependents = True   # Dask's scheduler starts each task when its inputs are in

    tick = 0.5  # seconds between health checks while the driver waits
    nap = 0.01  # see caught_up()

    def __init__(self, max_workers: int | None, *, window: int | None = None):
        self.workers = max_workers or default_workers()
        self.window = window  # at most this many tasks handed to the pool at once (BatchExecutor)
        self._finished = threading.Event()  # Dask's scheduler has returned
        self._thread: threading.Thread | None = None
        self._pool = None

    def make_sink(self, events, run_id: str):
        return LocalSink(events)

    def caught_up(self) -> None:
        """Called by the driver once it has handled every waiting outcome: pause ``nap`` seconds (less if
        Dask's scheduler finishes meanwhile) so that the next outcomes are handled together. Each wake-up of
        the driver takes the GIL that the tasks' threads need, and Dask starts dependents without the driver
        (1,000 `true` tasks: -9 %)."""
        self._finished.wait(self.nap)

    def make_cancel(self, run_id: str):
        return LocalCancel()

    def start(self, compiled, events) -> None:
        """Run ``compiled`` on Dask's threaded scheduler in a background thread; outcomes and the engine's own
        end (``EngineDone``/``EngineError``) go to ``events``."""
        import dask.local
        import dask.threaded

        names = list(compiled.keys)
        self._pool = SplitPool(self.workers)
        order = ReadyOrder(compiled)
        callbacks = ((None, order.start_state, order.pretask, order.posttask, None),) if order.needed \
            else ((None, order.start_state, None, None, None),)
        # get_async hands at most `slots` chunks of `chunk` tasks to the pool at a time: the pool size, or the
        # batch window (one task a chunk); the rest wait in its ready list, best rank last (ReadyOrder).
        # Tasks known to be long go one a chunk: the next task is chosen only when a worker is free.
        slots = self.window or self.workers
        chunk = 1 if self.window or order.long_tasks else chunk_size(len(names), self.workers)
        # callbacks given: Dask then leaves the process's global callbacks alone (a user's ProgressBar in another
        # thread keeps working while a run goes on)
        get = partial(dask.local.get_async, self._pool.submit, slots, get_id=threading.get_ident,
                      pack_exception=dask.threaded.pack_exception, chunksize=chunk, callbacks=callbacks)

        def engine():
            try:
                run_in_segments(get, compiled, names, SEGMENT)
            except BaseException as e:  # reported to the driver, which fails what never reported
                events.put(EngineError(e))
            else:
                events.put(EngineDone())
            finally:
                self._finished.set()

        self._thread = threading.Thread(target=engine, name="molexp-engine", daemon=True)
        self._thread.start()

    def submit(self, name: str, upstream) -> None:
        """Never called: Dask's local scheduler starts tasks itself (``schedules_dependents``)."""
        raise NotImplementedError("the local backend hands the whole graph to Dask")

    def cancel(self, names) -> list:
        """Nothing to cancel: every pending task sees the run's cancel flag and returns at once."""
        return []

    def check(self) -> None:
        """Raise ``ClusterError`` when the engine can no longer report (never, locally)."""

    def may_have_started(self, name: str) -> bool:
        """Never unknown here: a task reports its start (a queue put) before it runs anything."""
        return False

    def task_final(self, result) -> None:
        """Dask's local scheduler starts dependents itself."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class LocalSink:
    """Events straight into the driver's queue (same process, threads)."""

    def __init__(self, queue):
        self._queue = queue

    def emit(self, event) -> None:
        self._queue.put(event)

    def done(self, result) -> None:
        self._queue.put(Finished(result))

    def worker(self) -> str:
        return threading.current_thread().name


class LocalCancel:
    """A run's stop flag on the local scheduler: a ``threading.Event``."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


def chunk_size(tasks: int, workers: int) -> int:
    """How many ready tasks Dask's local scheduler hands a worker thread at once (its ``chunksize``): up to 8
    in graphs of many tasks per worker, 1 in small ones. A chunk costs the scheduler one hand-off instead of
    one per task (1,000 `true` tasks: -8 %, 5,000 Python no-ops: -30 %); its price is that a chunk's tasks
    run one after the other on one thread, so at most 1/32 of a worker's share can end up serialised."""
    return max(1, min(8, tasks // (workers * 32)))


# Graphs larger than this go to Dask's local scheduler in consecutive slices of this many tasks (in
# dependency order). Why: dask.local orders the whole graph with dask.order first, whose memory grows with
# tasks x root tasks on wide layered graphs (dask/dask#11055): 100 layers x 1,000 tasks took 16.5 GB and
# minutes before the first task ran, in plain dask.threaded.get as well. A slice's inputs from earlier
# slices enter its graph as data (their results). The price: a slice starts when the previous one has
# finished, so at most one slice boundary in 10,000 tasks runs below full parallelism.
SEGMENT = 10_000


def run_in_segments(get, compiled, names: list, size: int) -> None:
    """``get`` consecutive slices of ``names`` (topological order); each slice's graph holds its tasks, the run
    context, and the results of the earlier tasks it needs (as data). The Dask tasks of a slice are made just
    before it runs."""
    done: dict = {}
    for start in range(0, len(names), size):
        dsk = compiled.tasks(names[start:start + size])
        keys = [k for k in dsk if k != compiled.ctx_key]
        for node in list(dsk.values()):
            for dep in node.dependencies:
                if dep not in dsk:
                    dsk[dep] = DataNode(dep, done[dep])
        done.update(zip(keys, get(dsk, keys)))


class ReadyOrder:
    """Dask callbacks that keep ``dask.local.get_async``'s list of ready tasks in the run's order: the
    scheduler takes the next task from the end of ``state["ready"]``, so the list is kept sorted by
    ``Compiled.priorities`` (higher last; see ``run.order``). ``start_state`` sorts the tasks ready at a slice's
    start; ``posttask`` (called after Dask appended the tasks a finished task made ready) inserts those where
    they belong; ``pretask`` notes the length of the sorted list as tasks leave it. A worker that frees up thus
    gets the best ready task, including what its own last task just made ready.

    ``needed`` (``Compiled.order_matters``): tasks of different ranks can be ready at once. Otherwise only
    ``start_state`` is installed (the tasks ready at the start go in declaration order) and Dask's own order
    stays, at no cost per task. ``long_tasks``: the recorded durations say tasks take 50 ms or more on average
    (then one task a chunk)."""

    long_seconds = 0.05

    def __init__(self, compiled):
        self.rank = compiled.priorities or {key: -i for i, key in enumerate(compiled.keys.values())}
        self.needed = compiled.order_matters
        known = compiled.known_durations
        self.long_tasks = bool(known) and sum(known.values()) / len(known) >= self.long_seconds
        self._sorted = 0   # state["ready"][:_sorted] is in order

    def _key(self, key):
        return self.rank.get(key, _FIRST)

    def start_state(self, dsk, state) -> None:
        """The tasks ready at a slice's start, best last (one sort per slice)."""
        state["ready"].sort(key=self._key)
        self._sorted = len(state["ready"])

    def pretask(self, key, dsk, state) -> None:
        """A task left the end of the ready list: what remains is still in order."""
        self._sorted = len(state["ready"])

    def posttask(self, key, result, dsk, state, worker_id) -> None:
        """Dask appended the tasks that ``key`` made ready: put each where its rank belongs."""
        ready = state["ready"]
        if len(ready) > self._sorted:
            new = ready[self._sorted:]
            del ready[self._sorted:]
            rank = self._key
            for k in new:
                insort(ready, k, key=rank)
            self._sorted = len(ready)


_FIRST = float("inf")   # anything unknown in the ready list goes first


class SplitPool:
    """``submit`` for ``dask.local.get_async`` with chunks: a chunk of ready tasks that Dask's scheduler hands
    over at once (``batch_execute_tasks(tasks)``) is split again here, so a free thread always takes the next
    task (a chunk never waits behind one thread while another idles), and the chunk's future completes when
    its last task has run. Dask's scheduler still hears of one chunk at a time: that is the saving."""

    def __init__(self, workers: int):
        self._items: SimpleQueue = SimpleQueue()
        self._closed = False
        self._workers = workers
        for i in range(workers):
            threading.Thread(target=self._work, name=f"molexp-worker-{i}", daemon=True).start()

    def submit(self, fn, tasks):
        chunk = _Chunk(Future(), fn, len(tasks))
        put = self._items.put
        for item in enumerate(tasks):
            put((chunk, item))
        return chunk.future

    def _work(self) -> None:
        get = self._items.get
        while True:
            chunk, item = get()
            if chunk is None:
                return
            if self._closed:  # what was still queued at shutdown never runs
                chunk.future.cancel()
                continue
            chunk.run(*item)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        self._closed = True
        for _ in range(self._workers):
            self._items.put((None, None))


class _Chunk:
    """One ``submit`` of ``SplitPool``: its future, and the results of its tasks as they finish."""

    __slots__ = ("future", "fn", "results", "left", "lock")

    def __init__(self, future: Future, fn, size: int):
        self.future, self.fn, self.results, self.left = future, fn, [None] * size, size
        self.lock = threading.Lock()

    def run(self, i: int, task) -> None:
        if self.future.done():  # cancelled at shutdown, or failed
            return
        try:
            (self.results[i],) = self.fn([task])
        except BaseException as e:  # Dask's task wrapper reports task errors itself: this is a bug of ours
            self._settle(e)
            return
        with self.lock:
            self.left -= 1
            if self.left:
                return
        self._settle(None)

    def _settle(self, error: BaseException | None) -> None:
        try:
            if error is None:
                self.future.set_result(self.results)
            else:
                self.future.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile, or an earlier error was set
            pass
