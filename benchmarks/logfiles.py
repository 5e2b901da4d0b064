#!/usr/bin/env python
"""What the task log files cost: W1 in a fresh vs a reused workdir against raw, and the files a large run leaves.

    python benchmarks/logfiles.py                          # W1 x 5 (fresh, reused, raw), files of a 100k run
    python benchmarks/logfiles.py --repeat 7 --files-n 0   # timings only
    MOLEXP_BENCH_TMP=/some/disk/dir python benchmarks/logfiles.py   # on a real disk instead of /dev/shm

Contenders, interleaved in each repetition (so drift on the machine hits all of them alike):

* ``raw``            ThreadPoolExecutor(2) + subprocess.run (workloads.run_raw): writes no file.
* ``molexp-fresh``   W1 in a new workdir (made, run, deleted each repetition): what a first run pays.
* ``molexp-reused``  W1 in one workdir kept across repetitions (after an untimed first run): a re-run.

Then ``--files-n`` `true` tasks (1 root + N children, workloads.scale_fanout) run once in a new workdir and
every file and directory left in it is counted. Which molexp is measured is the one Python imports (set
PYTHONPATH to compare two trees); ``--label`` names it in the output. Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W  # noqa: E402


def run_in(wl: W.Workload, workdir: str, **options) -> float:
    """``ExperimentExecutor(...).run()`` of ``wl`` in ``workdir``, timed (building the experiment is not)."""
    from molexp import ExperimentExecutor

    e = W.build_experiment(wl, workdir)
    return W.timed_run(ExperimentExecutor(e, progress=False, max_workers=wl.workers, **options), wl.name)


def fresh(wl: W.Workload) -> float:
    with tempfile.TemporaryDirectory(prefix="molexp-logfiles-") as tmp:
        return run_in(wl, tmp)


def count_files(root: str) -> tuple[int, int]:
    """(files, directories) under ``root``."""
    files = dirs = 0
    for _, dirnames, filenames in os.walk(root):
        files += len(filenames)
        dirs += len(dirnames)
    return files, dirs


def timings(repeat: int, n: int) -> dict:
    wl = W.w1(n)
    reused_dir = tempfile.mkdtemp(prefix="molexp-logfiles-reused-")
    samples: dict[str, list[float]] = {"raw": [], "molexp-fresh": [], "molexp-reused": []}
    try:
        W.run_raw(W.w1(20))          # warm-up, off the clock: imports, thread pools
        run_in(wl, reused_dir)        # the reused workdir's first run, off the clock
        for i in range(repeat):
            samples["raw"].append(W.run_raw(wl))
            samples["molexp-fresh"].append(fresh(wl))
            samples["molexp-reused"].append(run_in(wl, reused_dir))
            print(f"  rep {i + 1}: " + "  ".join(f"{k} {v[-1]:.3f}" for k, v in samples.items()), flush=True)
        left = count_files(reused_dir)
    finally:
        shutil.rmtree(reused_dir, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {f"{k}/raw": medians[k] / medians["raw"] for k in ("molexp-fresh", "molexp-reused")}
    # per repetition: molexp against the raw run just before it (same moment of the machine's load)
    paired = {f"{k}/raw paired median": statistics.median(m / r for m, r in zip(samples[k], samples["raw"]))
              for k in ("molexp-fresh", "molexp-reused")}
    return {"tasks": n, "repeat": repeat, "samples": samples, "medians": medians, "ratios": {**ratios, **paired},
            "files_in_reused_workdir": left[0]}


def files_of_large_run(n: int) -> dict:
    wl = W.scale_fanout(n)
    with tempfile.TemporaryDirectory(prefix="molexp-logfiles-large-") as tmp:
        elapsed = run_in(wl, tmp)
        files, dirs = count_files(tmp)
        elapsed_rerun = run_in(wl, tmp)   # the same run again, in the same workdir
        files2, dirs2 = count_files(tmp)
        t_rm = time.perf_counter()
    removal = time.perf_counter() - t_rm  # the workdir's deletion (TemporaryDirectory's cleanup)
    return {"tasks": len(wl), "seconds": elapsed, "files": files, "directories": dirs,
            "rerun_seconds": elapsed_rerun, "files_after_rerun": files2, "directories_after_rerun": dirs2,
            "workdir_removal_seconds": removal}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of W1; medians are reported (default 5)")
    ap.add_argument("--tasks", type=int, default=1000, help="W1's size (default 1000)")
    ap.add_argument("--files-n", type=int, default=100_000,
                    help="children of the large run whose files are counted (default 100000; 0: skip)")
    ap.add_argument("--label", default="", help="a name for the molexp measured (e.g. before / after)")
    ap.add_argument("--json", metavar="PATH", help="write every sample and median to this JSON file")
    args = ap.parse_args(argv)

    import molexp

    where = tempfile.gettempdir()
    head = (f"# molexp from {os.path.dirname(molexp.__file__)}{' (' + args.label + ')' if args.label else ''}; "
            f"scratch {where}; load {os.getloadavg()[0]:.2f}")
    print(head, flush=True)
    out: dict = {"label": args.label, "molexp": os.path.dirname(molexp.__file__), "scratch": where,
                 "load_before": os.getloadavg()}
    if args.repeat:
        out["w1"] = t = timings(args.repeat, args.tasks)
        m, r = t["medians"], t["ratios"]
        print(f"W1 {args.tasks} `true`, 2 workers, median of {args.repeat}: raw {m['raw']:.3f} s, "
              f"fresh {m['molexp-fresh']:.3f} s ({r['molexp-fresh/raw']:.2f}x raw; paired "
              f"{r['molexp-fresh/raw paired median']:.2f}x), reused {m['molexp-reused']:.3f} s "
              f"({r['molexp-reused/raw']:.2f}x; paired {r['molexp-reused/raw paired median']:.2f}x); "
              f"files in the reused workdir: {t['files_in_reused_workdir']}", flush=True)
    if args.files_n:
        out["large"] = f = files_of_large_run(args.files_n)
        print(f"{f['tasks']} `true` tasks (scale_fanout): {f['seconds']:.1f} s, {f['files']} files and "
              f"{f['directories']} directories left in the workdir; run again there: {f['rerun_seconds']:.1f} s, "
              f"{f['files_after_rerun']} files; workdir removed in {f['workdir_removal_seconds']:.2f} s",
              flush=True)
    out["load_after"] = os.getloadavg()
    print(f"# load after: {out['load_after'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
