"""Seeded, deterministic workload generators and the contenders that run them.

A workload is a ``Workload``: tasks in topological order, each ``(name, deps, payload)`` where the
payload is a shell command (``kind="shell"``) or None (``kind="python"``: a call to ``noop()``).

Contenders (all take the workload and return elapsed wall seconds, and check that every task ran):

* ``run_raw``            ThreadPoolExecutor(N) + subprocess.run(cmd, shell=True); a task waits on its
                         dependencies' futures inside its worker thread (tasks are submitted in topological
                         order, so the FIFO pool cannot deadlock). Python tasks: plain calls via the pool.
* ``run_dask_threaded``  a plain dask graph of the same shape, ``dask.threaded.get(num_workers=N)``.
* ``run_dask_distributed`` ``client.submit`` futures with dependencies on a ``distributed.LocalCluster``.
* ``run_molexp``         molexp ``ExperimentExecutor`` on the default (threaded) scheduler or on a client.

Nothing here asserts timings: these are measurements.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

SEED = 20240917


def _scratch_dir() -> str | None:
    """Where benchmark work directories go: $MOLEXP_BENCH_TMP, else /dev/shm (tmpfs) when writable, else the
    default. Why: each molexp run writes two log files per task, and the benchmarks delete every run's
    directory. On an ext4 disk mounted with ``discard`` (this machine's root), that deletion slows every file
    created afterwards: 1,000 `true` tasks went 0.94 -> 2.77 s over 6 runs with deletion between them, and
    stayed 0.84-0.97 s on tmpfs. That is the disk's, not the executor's, cost (the raw baselines write no
    files), so scratch space is tmpfs unless told otherwise."""
    import os

    chosen = os.environ.get("MOLEXP_BENCH_TMP")
    if chosen:
        return chosen
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return None


tempfile.tempdir = _scratch_dir()


def noop() -> None:
    """The Python no-op task (module level, so it pickles by reference to distributed workers)."""
    return None


@dataclass
class Workload:
    name: str
    description: str
    kind: str                                   # "shell" | "python"
    tasks: list[tuple[str, tuple[str, ...], str | None]]
    workers: int = 2
    durations: dict[str, float] = field(default_factory=dict)   # known task durations (W4), seconds

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def n_edges(self) -> int:
        return sum(len(d) for _, d, _ in self.tasks)

    def critical_path_seconds(self) -> float:
        """Longest path through the graph, summing known durations (0 for unknown)."""
        finish: dict[str, float] = {}
        for name, deps, _ in self.tasks:
            finish[name] = max((finish[d] for d in deps), default=0.0) + self.durations.get(name, 0.0)
        return max(finish.values(), default=0.0)

    def lower_bound(self) -> float | None:
        """max(critical path, total work / workers) when durations are known, else None."""
        if not self.durations:
            return None
        return max(self.critical_path_seconds(), sum(self.durations.values()) / self.workers)


# -- generators -------------------------------------------------------------------------------------------

def w1(n: int = 1000) -> Workload:
    return Workload("W1", f"{n} independent `true`", "shell", [(f"t{i}", (), "true") for i in range(n)])


def w2(n: int = 200) -> Workload:
    tasks = [(f"t{i}", ((f"t{i - 1}",) if i else ()), "true") for i in range(n)]
    return Workload("W2", f"chain of {n} `true`", "shell", tasks)


def w3(layers: int = 10, width: int = 20) -> Workload:
    tasks = []
    for layer in range(layers):
        deps = tuple(f"l{layer - 1}_{j}" for j in range(width)) if layer else ()
        for i in range(width):
            tasks.append((f"l{layer}_{i}", deps, "true"))
    return Workload("W3", f"{layers} layers x {width} `true`, all-to-all between consecutive layers",
                    "shell", tasks)


def w4(n: int = 60, lo: float = 0.05, hi: float = 0.3, max_deps: int = 3, workers: int = 4,
       seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    tasks, durations = [], {}
    for i in range(n):
        x = round(rng.uniform(lo, hi), 3)
        k = rng.randint(0, min(max_deps, i))
        deps = tuple(f"s{j}" for j in sorted(rng.sample(range(i), k)))
        name = f"s{i}"
        tasks.append((name, deps, f"sleep {x}"))
        durations[name] = x
    return Workload("W4", f"{n} `sleep X` (X in {lo}-{hi} s), 0-{max_deps} random earlier deps, "
                          f"{workers} workers", "shell", tasks, workers=workers, durations=durations)


def w5(n: int = 5000) -> Workload:
    return Workload("W5", f"{n} independent Python no-op calls", "python", [(f"p{i}", (), None) for i in range(n)])


def scale_fanout(n: int = 100_000, kind: str = "shell") -> Workload:
    payload = "true" if kind == "shell" else None
    tasks = [("root", (), payload)] + [(f"c{i}", ("root",), payload) for i in range(n)]
    return Workload("S-fanout", f"1 root + {n} children ({'`true`' if kind == 'shell' else 'py no-op'})",
                    kind, tasks)


def scale_layered(layers: int = 100, width: int = 1000, kind: str = "shell", seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    payload = "true" if kind == "shell" else None
    tasks = []
    for layer in range(layers):
        for i in range(width):
            if layer:
                k = rng.randint(1, 2)
                deps = tuple(f"L{layer - 1}_{j}" for j in sorted(rng.sample(range(width), k)))
            else:
                deps = ()
            tasks.append((f"L{layer}_{i}", deps, payload))
    return Workload("S-layered", f"{layers} layers x {width}, each task on 1-2 random tasks of the previous "
                                 f"layer ({'`true`' if kind == 'shell' else 'py no-op'})", kind, tasks)


FULL = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}
QUICK = {
    "W1": lambda: w1(100),
    "W2": lambda: w2(30),
    "W3": lambda: w3(4, 8),
    "W4": lambda: w4(16),
    "W5": lambda: w5(500),
}


def get(name: str, quick: bool = False) -> Workload:
    return (QUICK if quick else FULL)[name]()


# -- contenders -------------------------------------------------------------------------------------------

def _shell(cmd: str, *deps) -> int:
    rc = subprocess.run(cmd, shell=True).returncode
    if rc != 0:
        raise RuntimeError(f"{cmd!r} exited {rc}")
    return rc


def _py(*deps) -> None:
    return noop()


def run_raw(wl: Workload, workers: int | None = None) -> float:
    """ThreadPoolExecutor + subprocess.run(shell=True); dependencies by waiting on futures."""
    n = workers or wl.workers
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(n) as pool:
        futs: dict[str, cf.Future] = {}
        if wl.kind == "python":
            for name, deps, _ in wl.tasks:
                if deps:
                    futs[name] = pool.submit(_after, [futs[d] for d in deps], _py)
                else:
                    futs[name] = pool.submit(noop)
        else:
            for name, deps, cmd in wl.tasks:
                if deps:
                    futs[name] = pool.submit(_after, [futs[d] for d in deps], _shell, cmd)
                else:
                    futs[name] = pool.submit(_shell, cmd)
        for f in futs.values():
            f.result()
    return time.perf_counter() - t0


def _after(deps: list[cf.Future], fn, *args):
    for d in deps:
        d.result()
    return fn(*args)


def dask_graph(wl: Workload) -> dict:
    """A plain dask graph of the workload's shape: one task per node, dependencies as key arguments."""
    if wl.kind == "python":
        return {name: (_py, *deps) for name, deps, _ in wl.tasks}
    return {name: (_shell, cmd, *deps) for name, deps, cmd in wl.tasks}


def run_dask_threaded(wl: Workload, workers: int | None = None) -> float:
    import dask.threaded

    dsk = dask_graph(wl)
    keys = [name for name, _, _ in wl.tasks]
    t0 = time.perf_counter()
    dask.threaded.get(dsk, keys, num_workers=workers or wl.workers)
    return time.perf_counter() - t0


def run_dask_distributed(wl: Workload, client) -> float:
    """client.submit in topological order, dependencies as futures; unique keys per run (no reuse)."""
    from distributed import wait

    tag = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    futs = {}
    if wl.kind == "python":
        for name, deps, _ in wl.tasks:
            futs[name] = client.submit(_py, *[futs[d] for d in deps], key=f"{name}-{tag}", pure=False)
    else:
        for name, deps, cmd in wl.tasks:
            futs[name] = client.submit(_shell, cmd, *[futs[d] for d in deps], key=f"{name}-{tag}", pure=False)
    done, not_done = wait(list(futs.values()))
    elapsed = time.perf_counter() - t0
    bad = [f for f in done if f.status != "finished"]
    if bad or not_done:
        raise RuntimeError(f"dask distributed: {len(bad)} task(s) did not finish: {bad[:3]}")
    del futs, done
    return elapsed


def build_experiment(wl: Workload, workdir: str, bulk: bool = True):
    """The workload as an Experiment: built with ``add_tasks`` (the documented way for large graphs), or one
    ``add_task`` call per task with ``bulk=False``."""
    from molexp import Experiment, LocalTask, PythonTask

    e = Experiment(wl.name.lower(), workdir=workdir)
    if wl.kind == "python":
        tasks = (PythonTask(name, noop, deps=list(deps)) for name, deps, _ in wl.tasks)
    else:
        tasks = (LocalTask(name, commands=[cmd], deps=list(deps)) for name, deps, cmd in wl.tasks)
    if bulk:
        e.add_tasks(tasks)
    else:
        for t in tasks:
            e.add_task(t)
    return e


def run_molexp(wl: Workload, client=None, workers: int | None = None, rerun: bool = False, **options) -> float:
    """Build the experiment (not timed), then time ``ExperimentExecutor(...).run()``. ``rerun``: time the
    second run of the experiment in the same workdir (with ``priority_scheduling``, the first run's recorded
    durations set the priorities of the second)."""
    from molexp import ExperimentExecutor

    with tempfile.TemporaryDirectory(prefix="molexp-bench-") as tmp:
        e = build_experiment(wl, tmp)
        if client is not None:
            ex = ExperimentExecutor(e, client=client, progress=False, **options)
        else:
            ex = ExperimentExecutor(e, progress=False, max_workers=workers or wl.workers, **options)
        if rerun:
            ex.run()
        return timed_run(ex, wl.name)


def timed_run(ex, label: str) -> float:
    """Seconds of ``ex.run()``; a run with a failed task is an error, not a figure."""
    t0 = time.perf_counter()
    res = ex.run()
    elapsed = time.perf_counter() - t0
    if not res.ok:
        raise RuntimeError(f"molexp run of {label} failed: {res.summary()}")
    return elapsed
