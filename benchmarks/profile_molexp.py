#!/usr/bin/env python
"""Profile molexp on a workload (default scheduler) with py-spy, all threads, and summarize hot spots.

    pip install py-spy
    python benchmarks/profile_molexp.py W1            # record + report (needs py-spy on PATH)
    python benchmarks/profile_molexp.py W5 --loops 5 --rate 250
    python benchmarks/profile_molexp.py --report folded.txt   # summarize an existing folded file

``--target W1`` (internal) runs the molexp workload ``--loops`` times; the recorder wraps that in
``py-spy record --format raw`` (folded stacks, non-idle samples of every thread) and the report gives, per
function, the share of samples where it is on the stack (inclusive) and where it is the leaf (self).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def target(name: str, loops: int, workers: int) -> None:
    import workloads as W

    wl = W.get(name)
    W.run_molexp(W.get(name, quick=True))  # warm-up
    for _ in range(loops):
        print(f"{name}: {W.run_molexp(wl, workers=workers):.3f} s", flush=True)


def _frame(f: str) -> str:
    # py-spy raw frames look like "func (path/to/file.py:123)"; drop the line number, shorten the path
    func, _, where = f.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("molexp", "dask", "distributed", "concurrent", "subprocess.py", "threading.py", "queue.py"):
        if anchor in parts:
            path = "/".join(parts[parts.index(anchor):])
            break
    else:
        path = "/".join(parts[-2:])
    return f"{func} ({path})"


def report(folded: str, top: int = 25) -> str:
    incl: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for line in Path(folded).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0].split(" (")[0] if frames[0].startswith(("thread", "process")) else "?"] += n
        names = [_frame(f) for f in frames if " (" in f]
        for fn in set(names):
            incl[fn] += n
        if names:
            self_[names[-1]] += n
    out = [f"{total} non-idle samples (all threads)", "", f"{'incl %':>7} {'self %':>7}  function"]
    for fn, n in incl.most_common(top):
        out.append(f"{100 * n / total:>7.1f} {100 * self_[fn] / total:>7.1f}  {fn}")
    out += ["", "top self time:"]
    for fn, n in self_.most_common(15):
        out.append(f"{100 * n / total:>7.1f}  {fn}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?", default="W1")
    ap.add_argument("--loops", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--out", help="folded output path (default: a temp file)")
    ap.add_argument("--report", metavar="FOLDED", help="only summarize this folded file")
    ap.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    if args.target:
        target(args.workload.upper(), args.loops, args.workers)
        return 0
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    out = args.out or tempfile.mktemp(prefix=f"molexp-{args.workload}-", suffix=".folded")
    cmd = [spy, "record", "--format", "raw", "--threads", "--rate", str(args.rate), "-o", out, "--",
           sys.executable, str(Path(__file__).resolve()), args.workload, "--target", "--loops", str(args.loops),
           "--workers", str(args.workers)]
    subprocess.run(cmd, check=True)
    print(f"# folded stacks: {out}")
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
