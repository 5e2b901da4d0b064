#!/usr/bin/env python
"""Sweeps at scale: expanding an N-point YAML sweep and planning it, against the same tasks written in Python.

    python benchmarks/sweep_scale.py                          # 1,000, 10,000 and 100,000 points
    python benchmarks/sweep_scale.py --sizes 1000 10000 --json sweep.json

For each size N (each in a fresh subprocess, in a temporary directory on tmpfs with N input files):

* ``yaml``    ``Experiment.from_yaml`` of a file sweeping one shell task (``cp $inputs $outputs``, inputs
              ``in/${i}.txt``, outputs ``out/${i}.txt``) over ``i`` = 0..N-1 (load: parse, expand the sweep),
              then ``executor.plan()`` (files resolved, each input checked on disk, fingerprints; no run).
* ``python``  the baseline: the same N tasks written out in Python (``LocalTask(f"cp[i={i}]", ...)`` with the
              paths rendered), ``add_tasks``, then the same ``plan()``.

Reported: seconds of load and plan, microseconds per point, the ratio yaml / python, and how the time grows
from one size to the next: ten times the points should take about ten times as long (a step quadratic in
the points shows as ~100x). Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

TASK = {"name": "cp", "commands": ["cp $inputs $outputs"], "inputs": ["in/${i}.txt"], "outputs": ["out/${i}.txt"]}


def child(variant: str, n: int) -> dict:
    """One measurement in this (fresh) process, in the current directory (which holds ``in/``)."""
    from molexp import Experiment, ExperimentExecutor, LocalTask

    t0 = time.perf_counter()
    if variant == "yaml":
        exp = Experiment.from_yaml("sweep.yaml")
    else:
        exp = Experiment(f"sweep{n}", workdir=".")
        exp.add_tasks(LocalTask(f"cp[i={i}]", commands=["cp $inputs $outputs"], inputs=[f"in/{i}.txt"],
                                outputs=[f"out/{i}.txt"]) for i in range(n))
    t1 = time.perf_counter()
    plan = ExperimentExecutor(exp, progress=False).plan()
    t2 = time.perf_counter()
    assert len(plan.to_run) == n, (variant, len(plan.to_run), n)
    return {"variant": variant, "points": n, "load_s": t1 - t0, "plan_s": t2 - t1, "total_s": t2 - t0}


def measure(variant: str, n: int, where: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", variant, str(n)], cwd=where,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    rows = []
    print(f"{'points':>8} {'variant':<7} {'load s':>8} {'plan s':>8} {'total s':>8} {'us/point':>9} "
          f"{'vs python':>9} {'growth':>7}")
    previous: dict[str, dict] = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="molexp-sweep-bench-", dir=scratch) as where:
            os.makedirs(os.path.join(where, "in"))
            for i in range(n):
                with open(os.path.join(where, "in", f"{i}.txt"), "w") as f:
                    f.write(f"{i}\n")
            with open(os.path.join(where, "sweep.yaml"), "w") as f:
                yaml.safe_dump({"name": f"sweep{n}", "sweep": {"params": {"i": list(range(n))}}, "tasks": [TASK]}, f)
            got = {v: measure(v, n, where) for v in ("python", "yaml")}
        for v in ("yaml", "python"):
            r = got[v]
            r["vs_python"] = r["total_s"] / got["python"]["total_s"]
            before = previous.get(v)
            r["growth"] = r["total_s"] / before["total_s"] if before else None
            rows.append(r)
            growth = f"{r['growth']:.1f}x" if r["growth"] else "-"
            print(f"{n:>8} {v:<7} {r['load_s']:>8.3f} {r['plan_s']:>8.3f} {r['total_s']:>8.3f} "
                  f"{1e6 * r['total_s'] / n:>9.1f} {r['vs_python']:>8.2f}x {growth:>7}", flush=True)
        previous = got
    print("growth: total time against the previous size (10x the points: ~10x is linear, ~100x quadratic)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
