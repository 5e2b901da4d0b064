#!/usr/bin/env python
"""Run the W1-W5 workloads on every contender and print medians and ratios.

    python benchmarks/run.py                       # all of W1-W5, median of 3
    python benchmarks/run.py --workloads W1,W4 --repeat 5 --json out.json
    python benchmarks/run.py --quick               # smaller sizes, one repetition: a smoke run (< 1 min)
    python benchmarks/run.py --no-distributed      # skip the LocalCluster contenders

Contenders (see workloads.py): raw, dask-thr, molexp (default threaded scheduler), dask-dist, molexp-dist
(the same LocalCluster: 1 worker process, threads = the workload's worker count). Repetitions interleave
the contenders, so drift on the machine hits all of them alike. Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import tempfile
import time
import logging
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
import workloads as W  # noqa: E402

LOCAL = ("raw", "dask-thr", "molexp")
DIST = ("dask-dist", "molexp-dist")


def machine_info() -> dict:
    import dask
    import distributed

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import molexp
        mx = molexp.__version__
    except Exception:
        mx = "?"
    rev = "?"
    try:
        import subprocess

        import molexp
        root = Path(molexp.__file__).resolve().parent.parent
        rev = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
    except Exception:
        pass
    return {"molexp_git": rev, "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "dask": dask.__version__,
            "distributed": distributed.__version__, "molexp": mx, "platform": platform.platform(),
            "scratch": tempfile.gettempdir()}


class Clusters:
    """One LocalCluster (n_workers=1, processes=True) per thread count, started on first use."""

    def __init__(self):
        self._by_threads: dict[int, tuple] = {}

    def client(self, threads: int):
        if threads not in self._by_threads:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=1, threads_per_worker=threads, processes=True,
                                   dashboard_address=":0")
            client = Client(cluster)
            self._by_threads[threads] = (cluster, client)
        return self._by_threads[threads][1]

    def task_states(self) -> dict:
        """Counts of task states on every scheduler (for a hang report)."""
        out = {}
        for threads, (_, client) in self._by_threads.items():
            try:
                out[threads] = client.run_on_scheduler(_scheduler_states)
            except Exception as e:  # noqa: BLE001
                out[threads] = repr(e)
        return out

    def settle(self, timeout: float = 30.0) -> None:
        """Wait (off the clock) until every scheduler holds no task: releasing a run's futures is asynchronous
        for both Dask contenders, and a cluster still cleaning up would slow whatever is measured next."""
        deadline = time.monotonic() + timeout
        for _, client in self._by_threads.values():
            while client.run_on_scheduler(_scheduler_task_count) and time.monotonic() < deadline:
                time.sleep(0.05)

    def abandon(self):
        """Drop every cluster (a hung run may still hold one); new ones start on next use."""
        old = list(self._by_threads.values())
        self._by_threads.clear()
        for cluster, client in old:
            try:
                client.close(timeout=10)
                cluster.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass

    def close(self):
        for cluster, client in self._by_threads.values():
            client.close()
            cluster.close()
        self._by_threads.clear()


def _scheduler_task_count(dask_scheduler=None) -> int:
    return len(dask_scheduler.tasks)


def _scheduler_states(dask_scheduler=None) -> dict:
    from collections import Counter

    return dict(Counter(ts.state for ts in dask_scheduler.tasks.values()))


def contenders(wl: W.Workload, clusters: Clusters | None, priority: bool = False, rerun: bool = False) -> dict:
    opts = {"priority_scheduling": True, "rerun": rerun} if priority else {}
    out = {}
    if not priority:
        out["raw"] = lambda: W.run_raw(wl)
        out["dask-thr"] = lambda: W.run_dask_threaded(wl)
    out["molexp"] = lambda: W.run_molexp(wl, **opts)
    if clusters is not None:
        if not priority:
            out["dask-dist"] = lambda: W.run_dask_distributed(wl, clusters.client(wl.workers))
        out["molexp-dist"] = lambda: W.run_molexp(wl, client=clusters.client(wl.workers), **opts)
        if not priority and peers.available():
            out["parsl"] = lambda: peers.run_parsl(wl)
    return out


class Hung(Exception):
    pass


HANGS: list[dict] = []


def timed(label: str, fn, timeout: float, clusters: Clusters | None):
    """fn() in a daemon thread; a run still going after ``timeout`` s is recorded as a hang (and the
    cluster it used is replaced), so one stuck contender cannot stall the whole benchmark."""
    out: list = []

    def go():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - reported
            out.append(("error", e))

    th = threading.Thread(target=go, name=f"bench-{label}", daemon=True)
    th.start()
    th.join(timeout)
    if not out:
        info = {"contender": label, "timeout": timeout}
        if clusters is not None and "dist" in label:
            info["scheduler_task_states"] = clusters.task_states()
            clusters.abandon()
        HANGS.append(info)
        print(f"  !! {label}: no result after {timeout:.0f} s (hang); recorded as None", flush=True)
        return None
    status, value = out[0]
    if status == "error":
        raise value
    return value


def measure(fns: dict, repeat: int, timeout: float, clusters: Clusters | None,
            row: str = "") -> dict[str, list[float | None]]:
    samples: dict[str, list[float | None]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            samples[k].append(timed(f"{row}/{k}", fn, timeout, clusters))
            if clusters is not None and "dist" in k:
                clusters.settle()
    return samples


def median(values: list[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return statistics.median(good) if good else None


def warm_up(clusters: Clusters | None, threads: set[int]) -> None:
    """Imports, thread pools and a first round trip to each cluster, off the clock."""
    wl = W.w1(10)
    py = W.w5(10)
    for w in (wl, py):
        W.run_raw(w), W.run_dask_threaded(w), W.run_molexp(w)
        if clusters is not None:
            for t in sorted(threads):
                c = clusters.client(t)
                W.run_dask_distributed(w, c), W.run_molexp(w, client=c)
                if peers.available():
                    peers.run_parsl(w, t)


def fmt(x: float | None, width: int = 9, digits: int = 3) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def print_table(rows: list[dict]) -> None:
    cols = ["raw", "dask-thr", "molexp", "dask-dist", "molexp-dist", "parsl"]
    head = (f"{'workload':<11} {'tasks':>6} " + " ".join(f"{c:>11}" for c in cols)
            + f" {'mx/raw':>7} {'mx/dthr':>7} {'mxd/dd':>7} {'mxd/prsl':>8} {'mx ms/t':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        m = r["median"]
        line = f"{r['row']:<11} {r['tasks']:>6} " + " ".join(fmt(m.get(c), 11) for c in cols)
        line += " " + fmt(ratio(m.get("molexp"), m.get("raw")), 7, 2)
        line += " " + fmt(ratio(m.get("molexp"), m.get("dask-thr")), 7, 2)
        line += " " + fmt(ratio(m.get("molexp-dist"), m.get("dask-dist")), 7, 2)
        line += " " + fmt(ratio(m.get("molexp-dist"), m.get("parsl")), 8, 2)
        per = None if m.get("molexp") is None else 1000 * m["molexp"] / r["tasks"]
        line += " " + fmt(per, 8, 3)
        print(line)
    for r in rows:
        if r.get("lower_bound"):
            lb = r["lower_bound"]
            parts = ", ".join(f"{k} {fmt(ratio(v, lb), 0, 2)}" for k, v in r["median"].items())
            print(f"{r['row']} makespan / lower bound ({lb:.2f} s = max(critical path "
                  f"{r['critical_path']:.2f} s, work/{r['workers']} {r['work'] / r['workers']:.2f} s)): {parts}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5", help="comma-separated subset of W1..W5")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions; the median is reported (default 3, "
                                                               "1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run under a minute")
    ap.add_argument("--no-distributed", action="store_true", help="skip the LocalCluster contenders")
    ap.add_argument("--json", metavar="PATH", help="write every sample and median to this JSON file")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before one contender's run counts as hung (recorded as None; default 120, "
                         "15 with --quick)")
    args = ap.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    names = [n.strip().upper() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in W.FULL]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(W.FULL)}")
    repeat = args.repeat or (1 if args.quick else 3)
    args.timeout = args.timeout or (15.0 if args.quick else 120.0)

    info = machine_info()
    print(f"# machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, dask {info['dask']}, "
          f"distributed {info['distributed']}, molexp {info['molexp']} ({info['molexp_git']}), "
          f"scratch {info['scratch']}")
    print(f"# {'quick sizes' if args.quick else 'full sizes'}, median of {repeat}; seconds of wall time")
    wls = [W.get(n, quick=args.quick) for n in names]
    clusters = None if args.no_distributed else Clusters()
    t_start = time.perf_counter()
    rows = []
    try:
        timed("warm-up/dist", lambda: warm_up(clusters, {wl.workers for wl in wls}), args.timeout, clusters)
        for wl in wls:
            variants = [(wl.name, False, False)]
            if wl.name == "W4":  # priority scheduling: a first run, and a second one using its durations
                variants += [(f"{wl.name}-prio", True, False), (f"{wl.name}-prio-2nd", True, True)]
            for row, prio, rerun in variants:
                samples = measure(contenders(wl, clusters, priority=prio, rerun=rerun), repeat, args.timeout,
                                  clusters, row)
                med = {k: median(v) for k, v in samples.items()}
                rec = {"row": row, "workload": wl.name, "description": wl.description, "tasks": len(wl),
                       "edges": wl.n_edges, "workers": wl.workers, "samples": samples, "median": med,
                       "priority_scheduling": prio, "second_run": rerun}
                lb = wl.lower_bound()
                if lb:
                    rec.update(lower_bound=lb, critical_path=wl.critical_path_seconds(),
                               work=sum(wl.durations.values()),
                               makespan_over_lb={k: (v / lb if v else None) for k, v in med.items()})
                rows.append(rec)
                print(f"  {row:<11} " + "  ".join(f"{k} {fmt(v, 0)}" for k, v in med.items()), flush=True)
    finally:
        if clusters is not None:
            clusters.close()
            if peers.available():
                peers.close()
    print()
    print_table(rows)
    print("# mx/raw = molexp / raw, mx/dthr = molexp / dask threaded, mxd/dd = molexp-dist / dask-dist; "
          "mxd/prsl = molexp-dist / Parsl HTEX; mx ms/t = molexp ms per task")
    if not args.no_distributed and not peers.available():
        print("# parsl: not installed (pip install parsl to measure Parsl HTEX in the same run)")
    print(f"# total {time.perf_counter() - t_start:.1f} s")
    if HANGS:
        print(f"# HANGS: {len(HANGS)} run(s) gave no result within --timeout: " + json.dumps(HANGS))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quick": args.quick, "repeat": repeat,
                                               "rows": rows, "hangs": HANGS}, indent=1))
        print(f"# wrote {args.json}")
    sys.stdout.flush()
    if HANGS:
        os._exit(0)  # a hung run's daemon thread may still hold a client: do not wait for it
    return 0


if __name__ == "__main__":
    sys.exit(main())
