#!/usr/bin/env python
"""Files: what content-aware resume costs, and that a large input is hashed once.

    python benchmarks/files.py                        # 10,000 tasks, median of 5 resumes; a 1,024 MB input
    python benchmarks/files.py --tasks 5000 --repeat 3 --big-mb 256 --json files.json
    python benchmarks/files.py --quick                # 1,000 tasks, 64 MB
    python benchmarks/files.py --profile              # also cProfile one resume of each variant (not timed)
    python benchmarks/files.py --skip big --skip cli  # part 1 only

1. Resume of up-to-date tasks. Variant "files": ``LocalTask(f"t{i}", commands=["cp $inputs $outputs"],
   inputs=[f"in/{i}.txt"], outputs=[f"out/{i}.txt"])`` (the command writes the declared output, so the first
   run succeeds; the resume uses the same definition). Variant "same": the same commands with the paths
   written in them and no file declared (``cp in/{i}.txt out/{i}.txt``: the same tasks without files, the
   issue's comparison). Variant "plain": the same number of ``true`` tasks
   declaring no file. Both run with ``checkpoint_dir=`` and ``auto_resume=True``: one first run each (timed,
   one sample), then resumes in which every task should end ``cached``, alternating the variants, median of
   ``--repeat`` (also the best sample and the process's CPU time, steadier on a shared machine). The ratios
   files / same (target: within 1.5x) and files / plain are measured in the same process, with the median of
   the per-round ratios (paired samples, steadier when the machine's speed drifts). Also reported: what the
   files cost per declared file in microseconds, next to the floor measured in the same process (one
   ``os.stat`` of each declared file in a loop: a content-aware resume must look at every file). Every
   sample starts after a ``gc.collect()`` off the clock, and reports the collector's own seconds in it.
   ``--profile`` adds one cProfile'd resume of each variant after the samples (not a sample).

2. A large input hashed once. One task declares a ``--big-mb`` file of random bytes as its input (its command,
   ``wc -c < $inputs > $outputs``, does not read the content) on the disk temp directory (``--big-dir``).
   Phases: first run, resume, resume, ``os.utime`` (touch) then resume, resume. Each phase reports its wall
   time and what the process read during it, from ``/proc/self/io``: ``rchar`` (bytes passed by read calls,
   page cache or not) and ``read_bytes`` (bytes fetched from the block device). The counts include the
   commands the run spawned and reaped (Linux adds a reaped child's I/O to its parent's). Before each phase
   the file's pages are dropped from the page cache (``posix_fadvise(DONTNEED)``), so a read of its content
   shows in ``read_bytes`` too (not on tmpfs, where nothing is a disk read). After each phase the report says
   whether ``HashCache.load(checkpoint_dir)`` holds the file with its current stat signature.

3. The comparison of part 1 as a user runs it: ``molexp run FILE --resume`` in a fresh process each time
   (interpreter start-up, imports, reading the YAML, expanding the sweep, the resume), on ``--tasks``-point
   YAML sweeps: "files" sweeps ``cp $inputs $outputs`` declaring ``in/${i}.txt`` and ``out/${i}.txt``, "same"
   sweeps ``cp in/${i}.txt out/${i}.txt`` declaring nothing. Wall seconds of each command, median of
   ``--repeat``, alternating; the start-up alone (``molexp --version``) is reported next to them.

Work and checkpoint directories live under ``tempfile`` (tmpfs, as in the other benchmarks, for parts 1, 3) and
are removed at the end, also on error. Measurements only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

DISK_TMP = tempfile.gettempdir()   # before workloads points tempfile at tmpfs: the big input goes to disk

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W  # noqa: E402,F401  (sets tempfile.tempdir: tmpfs scratch for part 1)

MB = 1 << 20


# -- measuring -------------------------------------------------------------------------------------------

def proc_io() -> dict[str, int]:
    """This process's I/O counters (``/proc/self/io``): rchar, read_bytes, ...; empty where unavailable."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def io_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int | None]:
    return {k: (after[k] - before[k]) if k in before and k in after else None for k in ("rchar", "read_bytes")}


def statuses(res) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in res.values():
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return counts


class GCWatch:
    """Collections (per generation) and seconds the cyclic garbage collector spent while it is active."""

    def __init__(self):
        self.seconds, self.collections, self._t0 = 0.0, [0, 0, 0], 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def timed_run(ex) -> dict:
    """One ``ex.run()``: seconds, I/O, status counts, garbage collection. The previous sample's garbage is
    collected first, off the clock, so that it is not charged to this one."""
    gc.collect()
    before = proc_io()
    with GCWatch() as watch:
        t0, c0 = time.perf_counter(), time.process_time()
        res = ex.run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = proc_io()
    return {"seconds": seconds, "cpu_seconds": cpu, **io_delta(before, after), "statuses": statuses(res),
            "ok": bool(res.ok),
            "reasons": sorted({r.reason for r in res.values() if r.reason})[:5],
            "gc_seconds": watch.seconds, "gc_collections": watch.collections}


def profile_run(ex, top: int) -> dict:
    """cProfile of one ``ex.run()`` (not a timing sample): the top functions by cumulative and own time."""
    gc.collect()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = ex.run()
    prof.disable()
    seconds = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(file)}:{line}({func})", "ncalls": nc, "tottime": tt, "cumtime": ct})
    by_cum = sorted(rows, key=lambda r: -r["cumtime"])[:top]
    by_own = sorted(rows, key=lambda r: -r["tottime"])[:top]
    return {"seconds_profiled": seconds, "statuses": statuses(res), "by_cumtime": by_cum, "by_tottime": by_own}


def _short(file: str) -> str:
    for marker in ("/molexp/", "/site-packages/", "/lib/python"):
        i = file.rfind(marker)
        if i >= 0:
            return file[i + 1:]
    return file


# -- part 1: resume of N up-to-date tasks ------------------------------------------------------------------

def build(variant: str, n: int, root: str, workers: int):
    """(executor, checkpoint dir) of one variant in ``root`` (inputs created for "files" and "same")."""
    from molexp import Experiment, ExperimentExecutor, LocalTask

    work = os.path.join(root, "work")
    ckpt = os.path.join(root, "ckpt")
    os.makedirs(work)
    e = Experiment(f"files-{variant}", workdir=work)
    if variant in ("files", "same"):
        os.makedirs(os.path.join(work, "in"))
        for i in range(n):
            with open(os.path.join(work, "in", f"{i}.txt"), "w") as f:
                f.write(f"input {i}\n")
    if variant == "files":
        e.add_tasks(LocalTask(f"t{i}", commands=["cp $inputs $outputs"], inputs=[f"in/{i}.txt"],
                              outputs=[f"out/{i}.txt"]) for i in range(n))
    elif variant == "same":
        os.makedirs(os.path.join(work, "out"))
        e.add_tasks(LocalTask(f"t{i}", commands=[f"cp in/{i}.txt out/{i}.txt"]) for i in range(n))
    else:
        e.add_tasks(LocalTask(f"t{i}", commands=["true"]) for i in range(n))
    ex = ExperimentExecutor(e, progress=False, max_workers=workers, checkpoint_dir=ckpt, auto_resume=True)
    return ex, ckpt


def dir_sizes(path: str) -> dict[str, int]:
    out = {}
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            out[name] = os.path.getsize(p)
    return out


def part_resume(n: int, repeat: int, workers: int, scratch: str, profile: int) -> dict:
    from molexp.state.filehash import HashCache

    variants = ("files", "same", "plain")
    for v in variants:   # warm-up: imports, thread pool, first checkpoint
        ex, _ = build(v, 20, os.path.join(scratch, f"warm-{v}"), workers)
        ex.run()
        ex.run()
    execs, ckpts, first = {}, {}, {}
    for v in variants:
        execs[v], ckpts[v] = build(v, n, os.path.join(scratch, v), workers)
        first[v] = timed_run(execs[v])
        print(f"  first run {v:<5} {first[v]['seconds']:8.3f} s  {first[v]['statuses']}", flush=True)
    samples: dict[str, list[dict]] = {v: [] for v in variants}
    for k in range(repeat):
        for v in variants:
            s = timed_run(execs[v])
            s["all_cached"] = s["statuses"].get("cached", 0) == n
            samples[v].append(s)
        print(f"  resume {k + 1}/{repeat}: " + "  ".join(
            f"{v} {samples[v][-1]['seconds']:.3f} s ({samples[v][-1]['statuses']})" for v in variants), flush=True)
    cache = HashCache.load(ckpts["files"])
    declared = [os.path.join(scratch, "files", "work", d, f"{i}.txt") for i in range(n) for d in ("in", "out")]
    out = {"tasks": n, "stat_floor": stat_floor(declared), "repeat": repeat, "workers": workers, "first": first, "samples": samples,
           "median_resume": {v: statistics.median(s["seconds"] for s in samples[v]) for v in variants},
           "best_resume": {v: min(s["seconds"] for s in samples[v]) for v in variants},
           "median_resume_cpu": {v: statistics.median(s["cpu_seconds"] for s in samples[v]) for v in variants},
           "all_cached": {v: all(s["all_cached"] for s in samples[v]) for v in variants},
           "hash_cache_entries": len(cache.entries),
           "checkpoint_files": {v: dir_sizes(ckpts[v]) for v in variants}}
    for base in ("same", "plain"):
        key = "" if base == "same" else "_plain"
        out[f"ratio_resume{key}"] = out["median_resume"]["files"] / out["median_resume"][base]
        out[f"ratio_resume_best{key}"] = out["best_resume"]["files"] / out["best_resume"][base]
        out[f"ratio_resume_cpu{key}"] = out["median_resume_cpu"]["files"] / out["median_resume_cpu"][base]
        out[f"ratio_first{key}"] = first["files"]["seconds"] / first[base]["seconds"]
        out[f"ratio_paired{key}"] = statistics.median(a["seconds"] / b["seconds"]
                                                       for a, b in zip(samples["files"], samples[base]))
    # What the files cost on top of the same tasks without them, per declared file (one input, one output a
    # task), next to the floor: one os.stat of each declared file, which no content-aware resume can skip.
    out["extra_us_per_file"] = 1e6 * (out["median_resume"]["files"] - out["median_resume"]["same"]) / (2 * n)
    if profile:
        out["profile"] = {v: profile_run(execs[v], profile) for v in variants}
    return out


def stat_floor(paths: list[str], repeat: int = 5) -> dict:
    """Seconds to ``os.stat`` every path once, in a loop (best of ``repeat``), and per path in microseconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            os.stat(p)
        best = min(best, time.perf_counter() - t0)
    return {"files": len(paths), "seconds": best, "us_per_file": 1e6 * best / max(len(paths), 1)}


# -- part 3: the same comparison end to end, through the command line --------------------------------------

def part_cli(n: int, repeat: int, where: str) -> dict:
    """``molexp run FILE --resume`` of an ``n``-point YAML sweep, in a fresh process each time: "files" sweeps
    ``cp $inputs $outputs`` with ``inputs: [in/${i}.txt]``, ``outputs: [out/${i}.txt]``; "same" sweeps
    ``cp in/${i}.txt out/${i}.txt`` and declares nothing. Wall seconds of the whole command."""
    import subprocess

    import yaml

    tasks = {"files": {"name": "cp", "commands": ["cp $inputs $outputs"], "inputs": ["in/${i}.txt"],
                       "outputs": ["out/${i}.txt"]},
             "same": {"name": "cp", "commands": ["cp in/${i}.txt out/${i}.txt"]}}
    files = {}
    for v, task in tasks.items():
        d = os.path.join(where, v)
        os.makedirs(os.path.join(d, "in"))
        os.makedirs(os.path.join(d, "out"))   # ("same" declares nothing: its commands write into it)
        for i in range(n):
            with open(os.path.join(d, "in", f"{i}.txt"), "w") as f:
                f.write(f"input {i}\n")
        files[v] = os.path.join(d, "experiment.yaml")
        with open(files[v], "w") as f:
            yaml.safe_dump({"name": f"cli-{v}", "sweep": {"params": {"i": list(range(n))}}, "tasks": [task]}, f)

    def molexp(*args: str) -> float:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "molexp", *args], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"molexp {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return seconds

    first = {v: molexp("run", files[v], "--no-progress") for v in tasks}
    samples: dict[str, list[float]] = {v: [] for v in tasks}
    for k in range(repeat):
        for v in tasks:
            samples[v].append(molexp("run", files[v], "--no-progress", "--resume"))
        print(f"  resume {k + 1}/{repeat}: " + "  ".join(f"{v} {samples[v][-1]:.3f} s" for v in tasks), flush=True)
    median = {v: statistics.median(samples[v]) for v in tasks}
    return {"points": n, "first": first, "samples": samples, "median": median,
            "ratio": median["files"] / median["same"],
            "ratio_paired": statistics.median(a / b for a, b in zip(samples["files"], samples["same"])),
            "startup": min(molexp("--version") for _ in range(3))}


# -- part 2: a large input, hashed once ------------------------------------------------------------------

def filesystem_of(path: str) -> str:
    """The filesystem type holding ``path`` (longest mount point in /proc/mounts), or "?"."""
    path, best, kind = os.path.realpath(path), "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mnt = parts[1]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def write_random(path: str, size: int) -> float:
    t0 = time.perf_counter()
    chunk = 8 * MB
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(chunk, left)
            f.write(os.urandom(k))
            left -= k
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (clean pages: it was fsynced), so reading it is a disk read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def part_big(size_mb: int, workers: int, root: str) -> dict:
    from molexp import Experiment, ExperimentExecutor, LocalTask
    from molexp.state.filehash import HashCache, signature

    work = os.path.join(root, "work")
    ckpt = os.path.join(root, "ckpt")
    os.makedirs(os.path.join(work, "data"))
    big = os.path.join(work, "data", "big.bin")
    size = size_mb * MB
    print(f"  writing {size_mb} MB of random bytes to {big} ...", flush=True)
    write_seconds = write_random(big, size)
    e = Experiment("files-big", workdir=work)
    e.add_task(LocalTask("big", commands=["wc -c < $inputs > $outputs"], inputs=["data/big.bin"],
                         outputs=["size.txt"]))
    ex = ExperimentExecutor(e, progress=False, max_workers=workers, checkpoint_dir=ckpt, auto_resume=True)

    phases = []

    def phase(label: str) -> None:
        evict(big)
        s = timed_run(ex)
        entry = HashCache.load(ckpt).entries.get(big)
        s["phase"] = label
        s["task"] = {"status": status_text(s), "reason": s["reasons"][0] if s["reasons"] else None}
        s["cache_entry"] = entry is not None
        s["cache_entry_current"] = entry is not None and entry[:4] == signature(os.stat(big))
        phases.append(s)
        print(f"  {label:<22} {s['seconds']:7.3f} s  rchar {fmt_mb(s['rchar'])}  read_bytes "
              f"{fmt_mb(s['read_bytes'])}  task {s['task']['status']}  cache entry "
              f"{'current' if s['cache_entry_current'] else ('stale' if s['cache_entry'] else 'none')}", flush=True)

    phase("first run")
    phase("resume 1")
    phase("resume 2")
    st = os.stat(big)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touch: mtime +1 s, same content
    phase("touch, resume 3")
    phase("resume 4")
    return {"size_mb": size_mb, "size_bytes": size, "dir": root, "filesystem": filesystem_of(root),
            "write_seconds": write_seconds, "phases": phases}


def status_text(s: dict) -> str:
    return ",".join(f"{k}" if v == 1 else f"{k} x{v}" for k, v in s["statuses"].items())


def fmt_mb(b: int | float | None) -> str:
    if b is None:
        return "n/a"
    return f"{b / MB:9.2f} MB" if b >= MB else f"{b / 1024:9.1f} KB"


# -- main ------------------------------------------------------------------------------------------------

def print_profile(prof: dict, variant: str) -> None:
    print(f"\n# cProfile of one resume, variant {variant} ({prof['seconds_profiled']:.3f} s under the "
          f"profiler; {prof['statuses']}), top by cumulative time")
    print(f"{'cumtime':>8} {'tottime':>8} {'ncalls':>9}  function")
    for r in prof["by_cumtime"]:
        print(f"{r['cumtime']:8.3f} {r['tottime']:8.3f} {r['ncalls']:9d}  {r['function']}")
    print("# top by own time")
    for r in prof["by_tottime"]:
        print(f"{r['cumtime']:8.3f} {r['tottime']:8.3f} {r['ncalls']:9d}  {r['function']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=None, help="tasks per variant in part 1 (default 10000)")
    ap.add_argument("--repeat", type=int, default=None, help="resumes of each variant; median (default 5)")
    ap.add_argument("--big-mb", type=int, default=None, help="size of the large input in MB (default 1024)")
    ap.add_argument("--big-dir", default=DISK_TMP, help=f"where the large input goes (default {DISK_TMP})")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", type=int, nargs="?", const=25, default=0, metavar="TOP",
                    help="cProfile one extra resume of each variant and print the TOP functions (default 25)")
    ap.add_argument("--skip", choices=("resume", "big", "cli"), action="append", default=[],
                    help="leave a part out (repeatable)")
    ap.add_argument("--quick", action="store_true", help="1,000 tasks, 64 MB, 2 repetitions")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    n = args.tasks or (1000 if args.quick else 10_000)
    repeat = args.repeat or (2 if args.quick else 5)
    big_mb = args.big_mb or (64 if args.quick else 1024)

    from run import machine_info

    info = machine_info()
    print(f"# machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, dask {info['dask']}, "
          f"molexp {info['molexp']} ({info['molexp_git']}), scratch {info['scratch']}")
    out: dict = {"machine": info, "loadavg_start": os.getloadavg()}
    with contextlib.ExitStack() as stack:
        if "resume" not in args.skip:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="molexp-files-bench-",
                                                                      ignore_cleanup_errors=True))
            print(f"# part 1: resume of {n} up-to-date tasks, max_workers={args.workers}, "
                  f"median of {repeat} (alternating files / same / plain)", flush=True)
            out["resume"] = part_resume(n, repeat, args.workers, scratch, args.profile)
        if "cli" not in args.skip:
            where = stack.enter_context(tempfile.TemporaryDirectory(prefix="molexp-files-cli-",
                                                                    ignore_cleanup_errors=True))
            print(f"# part 3: the same resumes as a user runs them: molexp run FILE --resume, {n}-point YAML "
                  f"sweeps, median of {repeat} (alternating files / same)", flush=True)
            out["cli"] = part_cli(n, repeat, where)
        if "big" not in args.skip:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="molexp-files-big-", dir=args.big_dir,
                                                                   ignore_cleanup_errors=True))
            print(f"# part 2: one task with a {big_mb} MB input in {root} ({filesystem_of(root)})", flush=True)
            out["big"] = part_big(big_mb, args.workers, root)

    out["loadavg_end"] = os.getloadavg()
    print(f"\n# summary (load average at start {out['loadavg_start'][0]:.2f}, at end {out['loadavg_end'][0]:.2f})")
    r = out.get("resume")
    if r:
        med = r["median_resume"]
        print(f"{'variant':<8} {'first run s':>11} {'resume s (median)':>18} {'best':>6} {'cpu s':>6} {'ms/task':>8} "
              f"{'rchar/resume':>13} {'gc s':>6}  all cached  samples")
        for v in ("files", "same", "plain"):
            rchar = statistics.median(s["rchar"] or 0 for s in r["samples"][v])
            gcs = statistics.median(s["gc_seconds"] for s in r["samples"][v])
            print(f"{v:<8} {r['first'][v]['seconds']:>11.3f} {med[v]:>18.3f} {r['best_resume'][v]:>6.3f} "
                  f"{r['median_resume_cpu'][v]:>6.3f} {1000 * med[v] / n:>8.3f} "
                  f"{fmt_mb(rchar):>13} {gcs:>6.3f}  {str(r['all_cached'][v]):<10}  "
                  + " ".join(f"{s['seconds']:.3f}" for s in r["samples"][v]))
        print(f"ratio files/same: resume {r['ratio_resume']:.2f}x (target <= 1.5x; best of each "
              f"{r['ratio_resume_best']:.2f}x, process CPU time {r['ratio_resume_cpu']:.2f}x), first run "
              f"{r['ratio_first']:.2f}x (one sample each)")
        print(f"files cost {r['extra_us_per_file']:.1f} us per declared file on top of the same tasks (median "
              f"resumes; paired ratio files/same, median of the rounds: {r['ratio_paired']:.2f}x); the floor, one "
              f"os.stat of each of the {r['stat_floor']['files']} files in a loop: {r['stat_floor']['us_per_file']:.1f} "
              f"us per file ({1000 * r['stat_floor']['seconds']:.1f} ms)")
        print(f"ratio files/plain: resume {r['ratio_resume_plain']:.2f}x (best of each "
              f"{r['ratio_resume_best_plain']:.2f}x, process CPU time {r['ratio_resume_cpu_plain']:.2f}x), first "
              f"run {r['ratio_first_plain']:.2f}x; hash cache after the runs: "
              f"{r['hash_cache_entries']} entries; checkpoint files (bytes): {r['checkpoint_files']}")
        if not all(r["all_cached"].values()):
            print("# WARNING: some resume did not end every task cached: "
                  + str({v: [s["statuses"] for s in r["samples"][v]] for v in r["samples"]}))
        for v, prof in (r.get("profile") or {}).items():
            print_profile(prof, v)
    c = out.get("cli")
    if c:
        print(f"\nas a user runs it (molexp run FILE --resume, a fresh process each: start-up, YAML, sweep, resume)")
        for v in ("files", "same"):
            print(f"{v:<8} first run {c['first'][v]:7.3f} s  resume median {c['median'][v]:6.3f} s  samples "
                  + " ".join(f"{x:.3f}" for x in c["samples"][v]))
        print(f"ratio files/same: resume {c['ratio']:.2f}x (paired, median of the rounds {c['ratio_paired']:.2f}x); "
              f"start-up alone (molexp --version) {c['startup']:.3f} s")
    b = out.get("big")
    if b:
        print(f"\nlarge input: {b['size_mb']} MB on {b['filesystem']} (written in {b['write_seconds']:.1f} s)")
        print(f"{'phase':<22} {'wall s':>7} {'rchar':>12} {'read_bytes':>12}  {'task':<10} cache entry")
        for s in b["phases"]:
            print(f"{s['phase']:<22} {s['seconds']:>7.3f} {fmt_mb(s['rchar'])} {fmt_mb(s['read_bytes'])}  "
                  f"{s['task']['status']:<10} {'current' if s['cache_entry_current'] else s['cache_entry']}"
                  + (f"  ({s['task']['reason']})" if s["task"]["reason"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
