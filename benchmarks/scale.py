#!/usr/bin/env python
"""Scale: 100,000-task graphs through molexp on the default (threaded) scheduler.

    python benchmarks/scale.py                    # fanout + layered, 100k tasks each, `true` tasks
    python benchmarks/scale.py --kind python      # the same shapes with Python no-op tasks
    python benchmarks/scale.py --quick            # 5,000-task versions (smoke)
    python benchmarks/scale.py --graphs fanout --repeat 3 --json scale.json
    python benchmarks/scale.py --executor batch-dist --batch-size 100   # BatchExecutor on a LocalCluster

Every measurement runs in a fresh subprocess, so the driver's peak RSS (``ru_maxrss`` of RUSAGE_SELF:
the Python process only, not the commands it spawns) belongs to that measurement alone:

* ``build``   build the Experiment (task objects + ``add_tasks``; also timed: one ``add_task`` call per
              task, ``build_loop_s``), the executor's construction, the first
              ``e.graph.validate()`` (topological sort), and ``compile``: what ``run()`` prepares before the
              first task starts (``RunSession``: specs, Dask graph, keys, driver state); peak RSS after that.
* ``run``     build + validate, a 20-task warm-up run, then the run (``ExperimentExecutor(e).run()``, or
              ``BatchExecutor(batch_size).execute(e)`` with ``--executor batch``; ``-dist`` executors run on a
              LocalCluster of one worker process started first); peak RSS of the driver after the run.
* ``W1``      the 1,000-task W1 (or W5 with --kind python) run the same way, for the per-task rate at small
              size.  ``idle`` is the RSS of a child that only imported molexp (the floor).

Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def graphs(kind: str, quick: bool) -> dict:
    import workloads as W

    if quick:
        return {"fanout": lambda: W.scale_fanout(5_000, kind), "layered": lambda: W.scale_layered(10, 500, kind)}
    return {"fanout": lambda: W.scale_fanout(100_000, kind), "layered": lambda: W.scale_layered(100, 1000, kind)}


def child(graph: str, phase: str, kind: str, quick: bool, workers: int, executor: str = "experiment",
          batch_size: int = 10) -> dict:
    """One measurement, in this (fresh) process. Prints one JSON line."""
    import molexp  # noqa: F401  (imports are not part of any timing)
    import workloads as W
    from molexp import ExperimentExecutor

    out: dict = {"graph": graph, "phase": phase, "kind": kind}
    if phase == "idle":
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    if graph == "W1":
        wl = W.w1(1000) if kind == "shell" else W.w5(1000)
    else:
        wl = graphs(kind, quick)[graph]()
    out["tasks"] = len(wl)
    out["edges"] = wl.n_edges
    if phase in ("dask", "dask-ctx"):
        # The same shape as a plain dask graph on dask.threaded.get: a baseline for time and memory.
        # "dask-ctx" adds one shared data node every task depends on, as molexp's compiled graph has.
        import dask.threaded

        dsk = W.dask_graph(wl)
        if phase == "dask-ctx":
            dsk = {k: (v[0], "ctx", *v[1:]) if wl.kind == "python" else (v[0], v[1], "ctx", *v[2:])
                   for k, v in dsk.items()}
            dsk["ctx"] = {"shared": "context"}
        t4 = time.perf_counter()
        dask.threaded.get(dsk, [n for n, _, _ in wl.tasks], num_workers=workers)
        out["run_s"] = time.perf_counter() - t4
        out["per_task_ms"] = 1000 * out["run_s"] / len(wl)
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    client = cluster = None
    if executor.endswith("-dist"):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=True, dashboard_address=":0",
                               silence_logs=40)
        client = Client(cluster)

    def make(e):
        from molexp import BatchExecutor

        target = {"client": client} if client is not None else {"max_workers": workers}
        if executor.startswith("batch"):
            return BatchExecutor(batch_size, progress=False, **target)
        return ExperimentExecutor(e, progress=False, **target)

    def run(ex, e):
        return ex.execute(e) if executor.startswith("batch") else ex.run()

    with tempfile.TemporaryDirectory(prefix="molexp-scale-") as tmp:
        from molexp.run.session import RunSession

        t0 = time.perf_counter()
        e = W.build_experiment(wl, tmp)
        t1 = time.perf_counter()
        ex = make(e)
        t2 = time.perf_counter()
        e.graph.validate()
        t3 = time.perf_counter()
        session = ex._session(e, None, None)  # what run() prepares first: compile, keys, driver state
        t4 = time.perf_counter()
        session.close()
        out.update(build_s=t1 - t0, executor_s=t2 - t1, validate_s=t3 - t2, compile_s=t4 - t3)
        if phase == "build":   # the same graph built one add_task call at a time
            with tempfile.TemporaryDirectory(prefix="molexp-scale-") as tmp2:
                t5 = time.perf_counter()
                W.build_experiment(wl, tmp2, bulk=False)
                out["build_loop_s"] = time.perf_counter() - t5
        if phase == "run":
            with tempfile.TemporaryDirectory(prefix="molexp-warm-") as warm:  # thread pool, imports, caches
                w = W.build_experiment(W.w1(20) if kind == "shell" else W.w5(20), warm)
                run(make(w), w)
            t4 = time.perf_counter()
            res = run(ex, e)
            out["run_s"] = time.perf_counter() - t4
            out["ok"] = bool(res.ok)
            out["per_task_ms"] = 1000 * out["run_s"] / len(wl)
            out["tasks_per_s"] = len(wl) / out["run_s"]
            del res
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if client is not None:
        client.close()
        cluster.close()
    return out


def spawn(graph: str, phase: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", graph, "--phase", phase, "--kind", args.kind,
           "--workers", str(args.workers), "--executor", args.executor, "--batch-size", str(args.batch_size)] \
        + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {graph}/{phase} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def med(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", default="fanout,layered")
    ap.add_argument("--kind", choices=("shell", "python"), default="shell",
                    help="task payload: `true` shell commands (default) or Python no-ops")
    ap.add_argument("--repeat", type=int, default=1, help="measurements per phase; medians reported (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="max_workers of the local scheduler (default 2)")
    ap.add_argument("--quick", action="store_true", help="5,000-task graphs instead of 100,000")
    ap.add_argument("--no-run", action="store_true", help="only build/validate (skip the full runs)")
    ap.add_argument("--dask", action="store_true",
                    help="also run each graph as a plain dask graph on dask.threaded.get (and with a shared "
                         "context node, as molexp compiles it): time and peak RSS baselines")
    ap.add_argument("--executor", choices=("experiment", "batch", "experiment-dist", "batch-dist"),
                    default="experiment", help="ExperimentExecutor or BatchExecutor, on the default scheduler or "
                                               "(-dist) on a LocalCluster of 1 worker process x --workers threads")
    ap.add_argument("--batch-size", type=int, default=10, help="BatchExecutor's batch_size (default 10)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--phase", default="run", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.phase, args.kind, args.quick, args.workers, args.executor,
                               args.batch_size)))
        return 0

    names = [g.strip() for g in args.graphs.split(",") if g.strip()]
    unknown = [g for g in names if g not in ("fanout", "layered")]
    if unknown:
        ap.error(f"unknown graph(s) {unknown}; choose from fanout, layered")
    ref = "W1" if args.kind == "shell" else "W5(1000)"
    print(f"# scale: {args.kind} tasks, {args.executor} executor"
          + (f" (batch_size={args.batch_size})" if args.executor.startswith("batch") else "")
          + f", {args.workers} workers, {'quick' if args.quick else 'full'} sizes, "
          f"median of {args.repeat}; one fresh subprocess per measurement", flush=True)
    t_start = time.perf_counter()
    idle = [spawn("-", "idle", args) for _ in range(args.repeat)]
    small = [spawn("W1", "run", args) for _ in range(args.repeat)]
    from run import machine_info

    info = machine_info()
    print(f"# machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, dask {info['dask']}, "
          f"molexp {info['molexp']} ({info['molexp_git']}), scratch {info['scratch']}", flush=True)
    report: dict = {"machine": info, "kind": args.kind, "workers": args.workers, "quick": args.quick, "repeat": args.repeat,
                    "idle": idle, "reference": small, "graphs": {}}
    print(f"  idle (import molexp) peak RSS {med(idle, 'maxrss_mb'):.0f} MB; {ref}: "
          f"{med(small, 'run_s'):.3f} s = {med(small, 'per_task_ms'):.3f} ms/task", flush=True)
    for g in names:
        builds = [spawn(g, "build", args) for _ in range(args.repeat)]
        runs = [] if args.no_run else [spawn(g, "run", args) for _ in range(args.repeat)]
        report["graphs"][g] = {"build": builds, "run": runs}
        if args.dask:
            for phase in ("dask", "dask-ctx"):
                d = [spawn(g, phase, args) for _ in range(args.repeat)]
                report["graphs"][g][phase] = d
                print(f"  {g} plain {phase}: run {med(d, 'run_s'):.1f} s = {med(d, 'per_task_ms'):.3f} ms/task, "
                      f"peak {med(d, 'maxrss_mb'):.0f} MB", flush=True)
        print(f"  {g}: built {med(builds, 'build_s'):.2f} s (add_task loop {med(builds, 'build_loop_s'):.2f} s), executor {1000 * med(builds, 'executor_s'):.2f} ms, "
              f"validate {med(builds, 'validate_s'):.3f} s, compile {med(builds, 'compile_s'):.3f} s, "
              f"peak {med(builds, 'maxrss_mb'):.0f} MB"
              + (f"; run {med(runs, 'run_s'):.1f} s, peak {med(runs, 'maxrss_mb'):.0f} MB" if runs else ""),
              flush=True)

    print()
    head = (f"{'graph':<22} {'tasks':>7} {'edges':>7} {'build s':>8} {'valid s':>8} {'compile':>8} {'sum s':>7} "
            f"{'RSS MB':>7} {'run s':>8} {'RSS MB':>7} {'ms/task':>8} {'vs ' + ref:>10}")
    print(head)
    print("-" * len(head))
    ref_ms = med(small, "per_task_ms")
    rows = [("ref " + ref, {"build": small, "run": small})] + [(g, report["graphs"][g]) for g in names]
    for g, data in rows:
        b, r = data["build"], data["run"]
        per = med(r, "per_task_ms") if r else None
        line = (f"{g:<22} {b[0]['tasks']:>7} {b[0]['edges']:>7} {med(b, 'build_s'):>8.3f} "
                f"{med(b, 'validate_s'):>8.3f} {med(b, 'compile_s'):>8.3f} "
                f"{med(b, 'build_s') + med(b, 'validate_s') + med(b, 'compile_s'):>7.2f} {med(b, 'maxrss_mb'):>7.0f} ")
        if r:
            line += (f"{med(r, 'run_s'):>8.2f} {med(r, 'maxrss_mb'):>7.0f} {per:>8.3f} "
                     f"{per / ref_ms:>9.2f}x")
        print(line)
        if g in names and args.dask:
            for phase in ("dask", "dask-ctx"):
                d = data[phase]
                print(f"{g + ' ' + phase:<22} {d[0]['tasks']:>7} {d[0]['edges']:>7} {'(plain dask.threaded.get)':>33} "
                      f"{med(d, 'run_s'):>8.2f} {med(d, 'maxrss_mb'):>7.0f} {med(d, 'per_task_ms'):>8.3f}")
    print(f"# RSS MB = driver peak ru_maxrss (first after build+validate, then after the run); idle child "
          f"{med(idle, 'maxrss_mb'):.0f} MB. 'vs {ref}' = ms/task relative to the 1,000-task graph's.")
    print(f"# total {time.perf_counter() - t_start:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
