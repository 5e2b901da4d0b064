"""Stress the incremental (submit-as-inputs-finish) path of the distributed backend, looking for hangs.

    PYTHONPATH=. python benchmarks/stress_incremental.py [--runs N] [--cluster local|cli] [--timeout S]
        [--only scenario,...] [--batch-sizes 1,2,3,100] [--stream-incremental] [--second-client] [--dying-client]

Scenarios (chains, diamonds, fail_fast and continue, retries, conditions) run with BatchExecutor at several
batch sizes, ExperimentExecutor, and StreamExecutor (run to the end, and ``break`` after the first result;
``--stream-incremental`` forces incremental submission, which StreamExecutor has used on a cluster by
default since this script was written) on a LocalCluster or on `dask scheduler` / `dask worker` processes. ``--dying-client`` reproduces the hang fixed by giving
``as_completed`` the run's client loop: a newer client that closes mid-run (8 rounds: 7 hangs before, 0 after).

Each run executes in a thread joined with a timeout; a run that does not finish in time is a hang: every
thread's stack is dumped (faulthandler) with the backend's state (futures in flight, as_completed
contents, what the scheduler knows of them), and the loop goes on with the next run.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import molexp
from molexp import BatchExecutor, ExperimentExecutor, LocalTask, PythonTask, StreamExecutor, TaskGraph, TaskPool
from molexp.backends.distributed import DistributedBackend


def _inc(x=0, **kw):
    return x + 1 + sum(v for v in kw.values() if isinstance(v, int))


def _boom():
    raise RuntimeError("boom")


# -- scenarios: each returns (executor factory options, work, check(results)) ----------------------------
def chain(n=8):
    g = TaskGraph()
    prev = None
    for i in range(n):
        g.add_task(PythonTask(f"c{i}", _inc, deps=[prev] if prev else []))
        prev = f"c{i}"
    return g


def diamond(fail=None, shell=False):
    pool = TaskPool(name="diamond")
    mk = (lambda n, cmd, deps=(): LocalTask(n, commands=[cmd], deps=list(deps))) if shell else None
    if shell:
        pool.add_task(mk("a", "true"))
        pool.add_task(mk("b", "exit 3" if fail == "b" else "true", ["a"]))
        pool.add_task(mk("c", "true", ["a"]))
        pool.add_task(mk("d", "true", ["b", "c"]))
    else:
        pool.add_task(PythonTask("a", _inc))
        pool.add_task(PythonTask("b", _boom if fail == "b" else _inc, deps=["a"]))
        pool.add_task(PythonTask("c", _inc, deps=["a"]))
        pool.add_task(PythonTask("d", _inc, deps=["b", "c"]))
    return pool


def wide(n=30, fail_at=None):
    g = TaskGraph()
    for i in range(n):
        g.add_task(PythonTask(f"w{i}", _boom if i == fail_at else _inc))
    for i in range(0, n, 3):
        g.add_task(PythonTask(f"s{i}", _inc, deps=[f"w{i}", f"w{(i + 1) % n}"]))
    return g


def layered(width=6, depth=4):
    g = TaskGraph()
    for d in range(depth):
        for w in range(width):
            deps = [f"L{d - 1}_{(w + k) % width}" for k in range(2)] if d else []
            g.add_task(PythonTask(f"L{d}_{w}", _inc, deps=deps))
    return g


WIDE = 30

SCENARIOS = {
    "chain": lambda: ({}, chain()),
    "diamond-ok": lambda: ({}, diamond()),
    "diamond-failfast": lambda: ({}, diamond(fail="b")),
    "diamond-continue": lambda: ({"fault_tolerance": "continue"}, diamond(fail="b")),
    "diamond-shell-failfast": lambda: ({}, diamond(fail="b", shell=True)),
    "wide": lambda: ({}, wide(WIDE)),
    "wide-failfast": lambda: ({}, wide(WIDE, fail_at=7)),
    "wide-continue": lambda: ({"fault_tolerance": "continue"}, wide(WIDE, fail_at=7)),
    "layered": lambda: ({}, layered()),
    "retries": lambda: ({"retry_attempts": 3, "retry_delay": 0.01},
                        [LocalTask("flaky", commands=["test $MOLEXP_ATTEMPT -ge 3"]),
                         LocalTask("after", commands=["true"], deps=["flaky"])]),
    "condition": lambda: ({"condition": lambda t, ctx: t.name != "c3"}, chain(6)),
}


def stream_break(client, incremental):
    """StreamExecutor: break after the first result (in incremental mode when asked)."""
    g = TaskGraph()
    g.add_task(PythonTask("first", _inc))
    for i in range(3):
        g.add_task(LocalTask(f"long-{i}", commands=["sleep 30"]))
    g.add_task(LocalTask("later", commands=["true"], deps=["long-0"]))
    ex = StreamExecutor(progress=False, client=client, kill_grace=1)
    if incremental:
        ex._backend = lambda: DistributedBackend(client)
    for _ in ex.execute_stream(g):
        break


def stream_all(client, incremental):
    ex = StreamExecutor(progress=False, client=client)
    if incremental:
        ex._backend = lambda: DistributedBackend(client)
    names = [r.name for r in ex.execute_stream(layered(4, 3))]
    assert len(names) == 12, names


# -- clusters ------------------------------------------------------------------------------------------------
def start_cli_cluster(tmp: Path):
    """`dask scheduler` + two `dask worker` processes on 127.0.0.1, as tests/test_cluster.py does."""
    file = tmp / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    deadline = time.monotonic() + 60
    while not file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                       str(file), "--nthreads", "2", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client

    client = Client(scheduler_file=str(file))
    client.wait_for_workers(2, timeout=60)
    return client, procs


def dying_client(directory: Path):
    """A newer client (the process's default) whose scheduler is killed: it closes itself 10 s later."""
    import signal

    from distributed import Client

    directory.mkdir(parents=True)
    file = directory / "scheduler.json"
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not file.exists() or not file.read_text().strip():
        time.sleep(0.1)
    client = Client(scheduler_file=str(file), timeout="10s")
    os.killpg(sched.pid, signal.SIGKILL)
    sched.wait()
    return client  # left open on purpose


def diagnose(backend, client):
    """The hung backend's state: what it waits for, and what the scheduler says of it."""
    if backend is None:
        return "no backend captured"
    lines = [f"in_flight={sorted(getattr(backend, '_in_flight', ()))} ready={getattr(backend, '_ready', None)}"]
    ac = getattr(backend, "_ac", None)
    if ac is not None:
        lines.append(f"as_completed: {ac!r} futures={[(f.key, f.status) for f in list(ac.futures)]}")
    futures = dict(backend._futures)
    lines.append("backend futures: " + ", ".join(f"{n}:{f.status}" for n, f in futures.items()))
    keys = [f.key for f in futures.values()]
    try:
        def states(dask_scheduler, keys=keys):
            return {k: (dask_scheduler.tasks[k].state if k in dask_scheduler.tasks else "absent") for k in keys}
        lines.append(f"scheduler: {client.run_on_scheduler(states)}")
    except Exception as e:
        lines.append(f"scheduler query failed: {e!r}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cluster", choices=["local", "cli"], default="local")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--only", default="")
    ap.add_argument("--batch-sizes", default="1,2,3,100")
    ap.add_argument("--stream-incremental", action="store_true")
    ap.add_argument("--second-client", action="store_true",
                    help="open a newer client to a second LocalCluster (the process's default client), as "
                         "benchmarks/run.py does with one cluster per thread count")
    ap.add_argument("--dying-client", action="store_true",
                    help="each round, open a newer client to a throwaway `dask scheduler` and kill that scheduler: "
                         "the client reconnects for 10 s, then closes itself (what a client left open does when "
                         "its cluster goes away)")
    ap.add_argument("--wide", type=int, default=30, help="tasks in the 'wide' scenarios")
    args = ap.parse_args()
    print("molexp from", molexp.__file__, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="molexp-stress-"))
    os.chdir(tmp)
    procs = []
    if args.cluster == "local":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                               dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
    else:
        client, procs = start_cli_cluster(tmp)

    if args.second_client:
        from distributed import Client as _Client, LocalCluster as _LocalCluster

        other_cluster = _LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=":0", silence_logs=40)
        other = _Client(other_cluster)
        from distributed.client import default_client

        print("second client is the default:", default_client() is other, flush=True)
    global WIDE
    WIDE = args.wide

    captured: dict = {}
    orig_init = DistributedBackend.__init__

    def spy_init(self, *a, **kw):
        orig_init(self, *a, **kw)
        captured["backend"] = self

    DistributedBackend.__init__ = spy_init

    only = set(filter(None, args.only.split(",")))
    jobs = []
    for bs in map(int, args.batch_sizes.split(",")):
        for name, make in SCENARIOS.items():
            if not only or name in only:
                jobs.append((f"batch{bs}/{name}", bs, make))
    for name in ("wide", "layered", "diamond-failfast"):
        if not only or name in only:
            jobs.append((f"experiment/{name}", "graph", SCENARIOS[name]))
    for incr in ([True] if args.stream_incremental else [False]):
        for name, fn in (("stream-break", stream_break), ("stream-all", stream_all)):
            if not only or name in only:
                jobs.append((f"{name}{'-incr' if incr else ''}", None, (fn, incr)))

    hangs, errors, total = {}, {}, 0
    t_start = time.monotonic()
    for r in range(args.runs):
        if args.dying_client:
            dying_client(tmp / f"dying-{r}")
        for label, bs, make in jobs:
            captured.clear()
            outcome = {}

            def run():
                try:
                    if bs is None:
                        fn, incr = make
                        fn(client, incr)
                    else:
                        opts, work = make()
                        opts = dict(opts)
                        cond = opts.pop("condition", None)
                        if bs == "graph":
                            ex = ExperimentExecutor(client=client, progress=False, **opts)
                        else:
                            ex = BatchExecutor(batch_size=bs, client=client, progress=False, **opts)
                        if cond:
                            ex.set_condition_check(cond)
                        outcome["results"] = ex.execute(work)
                except BaseException as e:  # noqa: BLE001
                    outcome["error"] = e

            t = threading.Thread(target=run, daemon=True, name=f"run-{label}")
            t.start()
            t.join(args.timeout)
            total += 1
            if t.is_alive():
                hangs[label] = hangs.get(label, 0) + 1
                print(f"\n=== HANG run {r} {label} ===", flush=True)
                faulthandler.dump_traceback(all_threads=True)
                print(diagnose(captured.get("backend"), client), flush=True)
                b = captured.get("backend")
                if b is not None:
                    b._stop.set()
            elif "error" in outcome and not type(outcome["error"]).__name__ == "ExecutionError":
                errors[label] = errors.get(label, 0) + 1
                print(f"ERROR run {r} {label}: {outcome['error']!r}", flush=True)
        print(f"round {r + 1}/{args.runs}: runs={total} hangs={sum(hangs.values())} errors={sum(errors.values())} "
              f"elapsed={time.monotonic() - t_start:.0f}s", flush=True)

    print(f"\nTOTAL runs={total} hangs={sum(hangs.values())} {hangs} errors={errors}", flush=True)
    client.close()
    for p in procs:
        p.terminate()
    shutil.rmtree(tmp, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    main()
