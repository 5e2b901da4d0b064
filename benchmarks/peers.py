"""Optional peers measured in the same run as molexp: Parsl's HighThroughputExecutor (``pip install parsl``;
absent: the contender is left out and the table says so).

Parsl is loaded for each sample and stopped after it: its interchange and workers poll while idle and
would take CPU from the other contenders. Start-up is not timed (a first app per worker runs before the
clock starts), for Parsl as for Dask. Apps are defined here, at module level, so
Parsl's workers can import them (``benchmarks/`` is put on their ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import sys
import time

_loaded: dict = {}   # worker count -> the parsl DataFlowKernel
_run_dir: str | None = None


def available() -> bool:
    try:
        import parsl  # noqa: F401
    except ImportError:
        return False
    return True


def _load(workers: int):
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    if workers in _loaded:
        return _loaded[workers]
    close()
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    # Parsl starts its interchange and workers as commands of the Python environment it is installed in
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))
    global _run_dir
    run_dir = _run_dir = os.path.join(os.environ.get("MOLEXP_BENCH_TMP", "/dev/shm"), f"parsl-runinfo-{os.getpid()}")
    config = Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=workers,
                                                      provider=LocalProvider(init_blocks=1, max_blocks=1,
                                                                             min_blocks=1))],
                    run_dir=run_dir, strategy="none", usage_tracking=0)
    _loaded[workers] = parsl.load(config)
    return _loaded[workers]


def close() -> None:
    """Stop Parsl's executor (its interchange and workers)."""
    import parsl

    if _loaded:
        _loaded.clear()
        parsl.dfk().cleanup()
        parsl.clear()
    if _run_dir is not None:
        import shutil

        shutil.rmtree(_run_dir, ignore_errors=True)


def _apps():
    from parsl import bash_app, python_app

    @python_app
    def noop(*deps):
        return None

    @bash_app
    def shell(cmd, *deps):
        return cmd

    return noop, shell


_APPS = None


def run_parsl(wl, workers: int | None = None) -> float:
    """The workload on Parsl HTEX: one app per task, dependencies as futures passed to the app."""
    global _APPS
    _load(workers or wl.workers)
    if _APPS is None:
        _APPS = _apps()
    noop, shell = _APPS
    try:
        for f in [noop() for _ in range(workers or wl.workers)]:   # the workers are up: not timed
            f.result()
        t0 = time.perf_counter()
        futs = {}
        if wl.kind == "python":
            for name, deps, _ in wl.tasks:
                futs[name] = noop(*[futs[d] for d in deps])
        else:
            for name, deps, cmd in wl.tasks:
                futs[name] = shell(cmd, *[futs[d] for d in deps])
        for f in futs.values():
            f.result()
        return time.perf_counter() - t0
    finally:
        # Parsl's interchange and workers poll while they wait: stopped after each sample, so that they take
        # no CPU from the contenders measured next
        close()


if __name__ == "__main__":   # a smoke check: python benchmarks/peers.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import workloads as W

    try:
        print("W1/100 on parsl htex:", round(run_parsl(W.w1(100)), 3), "s")
        print("W5/500 on parsl htex:", round(run_parsl(W.w5(500)), 3), "s")
    finally:
        close()   # (already stopped after each sample; harmless)
