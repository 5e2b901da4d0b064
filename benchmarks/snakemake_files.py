#!/usr/bin/env python
"""Snakemake on files.py's workload: how long it takes to find that N up-to-date jobs have nothing to do.

    pip install snakemake && python benchmarks/snakemake_files.py          # 10,000 jobs, 3 repetitions
    python benchmarks/snakemake_files.py --snakemake /path/to/venv/bin/snakemake --jobs 1000

The workload of ``files.py`` part 3 (``molexp run FILE --resume`` of an N-point YAML sweep of
``cp $inputs $outputs``): a Snakefile with ``rule all`` asking for ``out/{i}.txt`` for i < N and
``rule cp`` making each from ``in/{i}.txt``. The outputs are made by this script (copies, written after the
inputs), not by Snakemake (N jobs of a shell each would take minutes), so Snakemake judges them by
modification times. Reported: wall seconds of ``snakemake --cores 2 -q`` (nothing to be done), median of
``--repeat``, and the same with no job (its start-up). In a temporary directory on tmpfs, removed at the end.
Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SNAKEFILE = """\
import os
N = int(os.environ["BENCH_JOBS"])
rule all:
    input: expand("out/{i}.txt", i=range(N))
rule cp:
    input: "in/{i}.txt"
    output: "out/{i}.txt"
    shell: "cp {input} {output}"
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--snakemake", default=shutil.which("snakemake"), help="the snakemake command (default: on PATH)")
    args = ap.parse_args(argv)
    if not args.snakemake:
        print("snakemake is not installed (pip install snakemake, or --snakemake PATH)", file=sys.stderr)
        return 2
    version = subprocess.run([args.snakemake, "--version"], capture_output=True, text=True).stdout.strip()
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="molexp-snakemake-bench-", dir=scratch) as where:
        for d in ("in", "out"):
            os.makedirs(os.path.join(where, d))
        for i in range(args.jobs):
            with open(os.path.join(where, "in", f"{i}.txt"), "w") as f:
                f.write(f"input {i}\n")
        time.sleep(0.05)   # outputs strictly newer than inputs
        for i in range(args.jobs):
            shutil.copyfile(os.path.join(where, "in", f"{i}.txt"), os.path.join(where, "out", f"{i}.txt"))
        with open(os.path.join(where, "Snakefile"), "w") as f:
            f.write(SNAKEFILE)

        def snakemake(jobs: int) -> float:
            t0 = time.perf_counter()
            done = subprocess.run([args.snakemake, "--cores", "2", "-q"], cwd=where, capture_output=True, text=True,
                                  env={**os.environ, "BENCH_JOBS": str(jobs)})
            seconds = time.perf_counter() - t0
            if done.returncode != 0 or (jobs and "Nothing to be done" not in done.stdout + done.stderr):
                raise RuntimeError(f"snakemake did not find its {jobs} jobs up to date: {done.stderr[-2000:]}")
            return seconds

        samples = [snakemake(args.jobs) for _ in range(args.repeat)]
        startup = min(snakemake(0) for _ in range(args.repeat))
    print(f"snakemake {version}: {args.jobs} up-to-date jobs, nothing to be done: median "
          f"{statistics.median(samples):.2f} s (samples {' '.join(f'{s:.2f}' for s in samples)}); "
          f"with no job (start-up) {startup:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
