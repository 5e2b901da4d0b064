"""Many tiny tasks on a real 2-worker cluster: `dask scheduler` + 2 `dask worker` processes on 127.0.0.1.

    python benchmarks/cluster_scale.py                 # 100,000 Python no-ops, 1 repetition
    python benchmarks/cluster_scale.py -n 20000 --repeat 3 --kind shell

Contenders, on the same cluster, alternated: plain Dask futures (``client.map`` of the no-op, then ``wait``)
and molexp (``ExperimentExecutor(e, client=client).run()`` of the same tasks as PythonTasks, built off the
clock; ``--bundle-seconds 0`` turns bundling off). Reports seconds, tasks per second and the ratio.
Measurements only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W  # noqa: E402


def _noop(*_):
    return None


def _true(*_):
    subprocess.run(["true"], check=True)


class Cluster:
    """A scheduler and ``workers`` one-thread workers, each its own process group."""

    def __init__(self, directory: str, workers: int = 2):
        self.directory = directory
        file = os.path.join(directory, "scheduler.json")
        py = sys.executable
        self.procs = [self._spawn([py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                   "0", "--dashboard-address", ":0", "--scheduler-file", file], "scheduler")]
        deadline = time.monotonic() + 60
        while not (os.path.exists(file) and open(file).read().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not start")
            time.sleep(0.1)
        self.address = json.load(open(file))["address"]
        for i in range(workers):
            self.procs.append(self._spawn([py, "-m", "distributed.cli.dask_worker", self.address, "--nthreads",
                                           "1", "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"],
                                          f"worker{i}"))

    def _spawn(self, argv, name):
        here = str(Path(__file__).resolve().parent)   # the workers import the tasks' function from here
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        with open(os.path.join(self.directory, f"{name}.log"), "wb") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def close(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def run_futures(client, n: int, kind: str) -> float:
    from distributed import wait

    fn = _noop if kind == "python" else _true
    t0 = time.perf_counter()
    # Dask's own keys (``_noop-<token>``): one task prefix. Keys like ``t17-<tag>`` make every task its own prefix
    # and group, and the scheduler then slows down with the number of tasks (2,000 took 3 s, 10,000 took 90 s).
    futures = client.map(fn, range(n), pure=False)
    wait(futures)
    elapsed = time.perf_counter() - t0
    if any(f.status != "finished" for f in futures):
        raise RuntimeError("plain futures: a task did not finish")
    del futures
    return elapsed


def run_molexp(client, n: int, kind: str, scratch: str, **options) -> float:
    from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask

    work = tempfile.mkdtemp(prefix="molexp-cluster-scale-", dir=scratch)
    try:
        e = Experiment("cluster-scale", workdir=work)
        if kind == "python":
            e.add_tasks(PythonTask(f"t{i}", W.noop) for i in range(n))
        else:
            e.add_tasks(LocalTask(f"t{i}", commands=["true"]) for i in range(n))
        return W.timed_run(ExperimentExecutor(e, client=client, progress=False, **options), "cluster-scale")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kind", choices=("python", "shell"), default="python")
    ap.add_argument("--bundle-seconds", type=float, default=None, help="molexp's option (default: molexp's)")
    args = ap.parse_args(argv)
    from distributed import Client

    # A `timeout` or Ctrl-C still stops the cluster (the finally below): SIGTERM becomes SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scratch = os.environ.get("MOLEXP_BENCH_TMP", "/dev/shm")
    directory = tempfile.mkdtemp(prefix="molexp-cluster-", dir=scratch)
    cluster = Cluster(directory)
    options = {} if args.bundle_seconds is None else {"bundle_seconds": args.bundle_seconds}
    samples: dict[str, list[float]] = {"futures": [], "molexp": []}
    try:
        with Client(cluster.address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            run_futures(client, 200, args.kind), run_molexp(client, 200, args.kind, scratch, **options)  # warm-up
            for _ in range(args.repeat):
                samples["molexp"].append(run_molexp(client, args.n, args.kind, scratch, **options))
                print(f"molexp {samples['molexp'][-1]:.2f} s", flush=True)
                samples["futures"].append(run_futures(client, args.n, args.kind))
                print(f"futures {samples['futures'][-1]:.2f} s", flush=True)
    finally:
        cluster.close()
        shutil.rmtree(directory, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"# {args.n} {args.kind} tasks on a 2-worker cluster (1 thread each), median of {args.repeat}")
    for k, v in med.items():
        print(f"{k:<8} {v:8.2f} s  {args.n / v:9.0f} tasks/s")
    print(f"molexp / futures: {med['molexp'] / med['futures']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
