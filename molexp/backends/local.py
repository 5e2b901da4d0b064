"""Dask's local threaded scheduler as a molexp backend (the default: nothing to start)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from functools import partial
from queue import SimpleQueue

from .cluster import default_workers
from dask.task_spec import DataNode, Task

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
        declared = {key: i for i, key in enumerate(compiled.keys.values())}
        pretask = None
        if compiled.priorities:
            # Dask's local scheduler decides what is ready; every ready task goes to a pool that starts the
            # highest priority first (dask.local itself orders ready tasks by dask.order, not by priority).
            pool = self._pool = PriorityPool(self.workers, compiled.priorities)
            pretask = pool.pretask
        else:
            self._pool = SplitPool(self.workers)

        def start_state(dsk, state) -> None:
            """Tasks ready at the start (independent ones, the first of each chain) start in the order they were
            declared, not in the order of their keys' sort (where dask.order leaves ties): the scheduler takes
            ``state["ready"]`` from its end, so the first declared goes last. One sort per slice."""
            state["ready"].sort(key=lambda key: -declared.get(key, -1))

        callbacks = ((None, start_state, pretask, None, None),)
        # get_async hands at most `slots` chunks of `chunk` tasks to the pool at a time: the pool size, or the
        # batch window (one task a chunk), or everything ready (priorities: the pool chooses, one at a time).
        slots = self.window or (len(names) + 1 if compiled.priorities else self.workers)
        chunk = 1 if self.window or compiled.priorities else chunk_size(len(names), self.workers)
        # callbacks given: Dask then leaves the process's global callbacks alone (a user's ProgressBar in another
        # thread keeps working while a run goes on)
        get = partial(dask.local.get_async, self._pool.submit, slots, get_id=threading.get_ident,
                      pack_exception=dask.threaded.pack_exception, chunksize=chunk, callbacks=callbacks)

        if isinstance(self._pool, PriorityPool):
            pool, plain_get = self._pool, get

            def get(dsk, keys):
                pool.watch(dsk)
                return plain_get(dsk, keys)

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


class PriorityPool:
    """``submit`` for ``dask.local.get_async``: ready tasks wait in a heap and ``workers`` threads run the
    highest priority first (ties: first submitted first).

    A worker that has just finished a task picks its next one only once the tasks that this made ready have
    been submitted (Dask's engine thread submits them a moment later): otherwise it would start a less urgent
    task that was already waiting while the next task of the critical path waits for a worker. ``watch(dsk)``
    tells the pool the graph being run, so that it knows what each task makes ready."""

    # never wait longer than this for an expected submission (the engine may have stopped)
    expect_timeout = 0.05

    def __init__(self, workers: int, priorities: dict):
        self._priorities = priorities
        self._heap: list = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._dependents: dict = {}
        self._left: dict = {}       # task key -> dependencies (tasks of the watched graph) not finished yet
        self._expected: set = set()  # made ready by a finished task, not submitted yet
        self._keys: deque = deque()  # keys announced by ``pretask``, not submitted yet
        self._threads = [threading.Thread(target=self._work, name=f"molexp-worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def watch(self, dsk: dict) -> None:
        """The graph about to run: which of its tasks each task's completion can make ready."""
        tasks = {k for k, v in dsk.items() if isinstance(v, Task)}
        dependents: dict = {}
        left = {}
        self._keys.clear()
        for key in tasks:
            deps = [d for d in dsk[key].dependencies if d in tasks]
            left[key] = len(deps)
            for d in deps:
                dependents.setdefault(d, []).append(key)
        with self._cond:
            self._dependents, self._left, self._expected = dependents, left, set()

    def pretask(self, key, dsk, state) -> None:
        """Dask's ``pretask`` callback: called in the engine thread for each task about to be submitted, in the
        order of the submissions that follow (one task each: chunk size 1), so ``submit`` knows its key."""
        self._keys.append(key)

    def submit(self, fn, *args):
        future: Future = Future()
        key = self._keys.popleft()
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (-self._priorities.get(key, 0), self._seq, key, fn, args, future))
            self._expected.discard(key)
            if self._expected:
                self._cond.notify()
            else:  # workers holding back for this submission may choose now
                self._cond.notify_all()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                deadline = None
                while not self._closed and (not self._heap or self._expected):
                    if self._heap:  # tasks are waiting, but more urgent ones may be on their way
                        deadline = deadline or time.monotonic() + self.expect_timeout
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self._expected.clear()
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._closed and not self._heap:
                    return
                _, _, key, fn, args, future = heapq.heappop(self._heap)
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as e:
                    future.set_exception(e)
                else:
                    self._finished(key)
                    future.set_result(result)

    def _finished(self, key) -> None:
        """Before Dask hears that ``key`` finished: expect the submission of the tasks it makes ready."""
        with self._cond:
            for d in self._dependents.get(key, ()):
                self._left[d] -= 1
                if self._left[d] == 0:
                    self._expected.add(d)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        with self._cond:
            self._closed = True
            if cancel_futures:
                for *_, future in self._heap:
                    future.cancel()
                self._heap.clear()
            self._cond.notify_all()
