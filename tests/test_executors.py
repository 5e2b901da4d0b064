"""BatchExecutor, StreamExecutor and AdaptiveExecutor, each doing what only it does, for real."""

from __future__ import annotations

import time

import pytest
from conftest import no_process_matching
from snippets import snippet

from molexp import (AdaptiveExecutor, BatchExecutor, LocalTask, MemoryPolicy, StreamExecutor,
                    TaskGraph, TaskPool, TaskStatus)

PAGE = "workflow-execution.md"


def max_overlap(results) -> int:
    """The most tasks that were running at the same moment, from their recorded start/end times."""
    edges = sorted([(r.start, 1) for r in results.values()] + [(r.end, -1) for r in results.values()],
                   key=lambda e: (e[0], e[1]))
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def pool_of(n, command="sleep 0.2"):
    return TaskPool([LocalTask(f"job-{i}", commands=[command]) for i in range(n)], name="jobs")


def test_batch_bounds_tasks_in_flight_on_the_local_scheduler(project):
    unbounded = BatchExecutor(batch_size=100, progress=False, max_workers=16).execute(pool_of(40))
    bounded = BatchExecutor(batch_size=10, progress=False, max_workers=16).execute(pool_of(40))
    assert unbounded.ok and bounded.ok
    assert max_overlap(unbounded) > 10          # the threads could run more at once ...
    assert 2 <= max_overlap(bounded) <= 10     # ... the batch size held them to 10


def test_batch_bounds_futures_in_flight_on_a_cluster(project):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=16, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        ex = BatchExecutor(batch_size=10, progress=False, client=client)
        backend = {}
        make = ex._backend
        ex._backend = lambda: backend.setdefault("b", make())
        results = ex.execute(pool_of(40))
        assert results.ok and max_overlap(results) <= 10
        assert backend["b"].max_in_flight == 10  # submitted and unfinished, never more
        assert not pending_on(client, "job-")


def pending_on(client, *prefixes):
    """Keys of ours the scheduler still has waiting or running."""
    def pending(dask_scheduler):
        return [str(k) for k, ts in dask_scheduler.tasks.items()
                if ts.state in ("waiting", "queued", "processing", "no-worker")]
    return [k for k in client.run_on_scheduler(pending) if k.startswith(prefixes)]


def test_seed_batch_snippet(project, target):
    task_pool = pool_of(25, "echo $MOLEXP_TASK")
    ns = {"BatchExecutor": BatchExecutor, "task_pool": task_pool}
    exec(compile(snippet(PAGE, "Batch Processing"), "guide", "exec"), ns)
    results = ns["results"]
    assert len(results) == 25 and results.ok and results["job-7"].stdout == "job-7"


def slow_then_fast():
    g = TaskGraph()
    g.add_task(LocalTask("slow", commands=["sleep 1.5"]))
    g.add_task(LocalTask("fast", commands=["true"]))
    g.add_task(LocalTask("after-fast", commands=["true"], deps=["fast"]))
    return g


def test_stream_yields_in_completion_order(project, target):
    names = [r.name for r in StreamExecutor(progress=False, **target).execute_stream(slow_then_fast())]
    assert names == ["fast", "after-fast", "slow"]


def test_break_leaves_nothing_running(project, target):
    g = TaskGraph()
    g.add_task(LocalTask("first", commands=["true"]))
    for i in range(3):
        g.add_task(LocalTask(f"long-{i}", commands=[f"sleep 65.{i}5"]))
    g.add_task(LocalTask("later", commands=["true"], deps=["long-0"]))
    # enough threads for all four to start at once: which ready task Dask starts first is its own choice
    stream = StreamExecutor(progress=False, max_workers=4, kill_grace=2, **target)
    t0 = time.monotonic()
    for result in stream.execute_stream(g):
        assert result.name == "first", result
        break
    assert time.monotonic() - t0 < 20
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(no_process_matching(f"sleep 65.{i}5") for i in range(3)):
        time.sleep(0.05)
    assert all(no_process_matching(f"sleep 65.{i}5") for i in range(3))
    if target:
        assert not pending_on(target["client"], "long-", "later-", "first-")


def test_seed_stream_snippet(project, target):
    seen = []
    ns = {"StreamExecutor": StreamExecutor, "task_graph": slow_then_fast(), "process_result": seen.append}
    exec(compile(snippet(PAGE, "Streaming Processing"), "guide", "exec"), ns)
    assert [r.name for r in seen] == ["fast", "after-fast", "slow"]
    assert all(r.status is TaskStatus.COMPLETED for r in seen)


def test_policy_lowers_and_raises_its_target_with_memory():
    policy = MemoryPolicy(threshold=0.8, minimum=1, maximum=8)
    workers, targets = 4, []
    for memory in [0.5, 0.6, 0.85, 0.9, 0.95, 0.7, 0.5, 0.5]:
        d = policy.target(memory, workers, wanted=6)
        targets.append(d.target)
        workers = d.target
    assert targets == [6, 6, 5, 4, 3, 6, 6, 6]
    allowed, actions = 0, []
    for memory in [0.5, 0.5, 0.9, 0.9, 0.5]:
        allowed, d = policy.in_flight(memory, running=0, allowed=allowed)
        actions.append((allowed, d.action))
    assert actions == [(1, "release"), (2, "release"), (1, "throttle"), (1, "throttle"), (2, "release")]
    assert policy.target(0.95, workers=1, wanted=5).target == 1  # never below the minimum


def test_adaptive_grows_under_a_queue_and_shrinks_when_idle(project):
    g = TaskGraph()
    for i in range(16):
        g.add_task(LocalTask(f"burst-{i}", commands=["sleep 1"]))
    previous = None
    for i in range(6):  # a long tail of one task at a time: the cluster should shrink back
        g.add_task(LocalTask(f"tail-{i}", commands=["sleep 1"], deps=[previous] if previous else []))
        previous = f"tail-{i}"
    for t in list(g)[:16]:
        g["tail-0"].deps.append(t.name)
    ex = AdaptiveExecutor(progress=False)
    ex.configure(min_workers=1, max_workers=3, interval=0.3, monitor_system_resources=False)
    results = ex.execute(g)
    assert results.ok
    counts = [d.workers for d in ex.decisions if d.action in ("scale-up", "scale-down", "hold")]
    peak = counts.index(max(counts))
    assert max(counts) >= 2, counts                      # grew from 1 toward 3 ...
    assert min(counts[peak:]) < max(counts), counts       # ... and shrank back in the idle tail
    assert "scale-up" in ex.report() and "scale-down" in ex.report()


def test_memory_throttle_holds_tasks_back_and_completes(project):
    import psutil

    pool = pool_of(6, "python3 -c \"import time; b = b'x' * (300 * 2**20); time.sleep(0.6)\"")
    mem = psutil.virtual_memory()
    # just above what is used now: half of one task's 300 MB, whatever the host's size
    threshold = mem.percent / 100 + 150 * 2**20 / mem.total
    ex = AdaptiveExecutor(progress=False, min_workers=2, max_workers=2, interval=0.5, memory_threshold=threshold)
    results = ex.execute(pool)
    assert results.ok and len(results) == 6
    assert any(d.action == "throttle" for d in ex.decisions), ex.report()
    throttled = [s for s in ex.backend.submissions if s[2] == 1]
    assert throttled and all(in_flight <= 1 for _, in_flight, _ in throttled)
    free = AdaptiveExecutor(progress=False, min_workers=2, max_workers=2, monitor_system_resources=False)
    free.execute(pool_of(6, "sleep 0.3"))
    assert max(s[1] for s in free.backend.submissions) == 6  # unthrottled: everything goes out at once


def test_seed_adaptive_snippet_runs_as_written(project):
    ns = {"AdaptiveExecutor": AdaptiveExecutor}
    exec(compile(snippet(PAGE, "Adaptive Execution"), "guide", "exec"), ns)
    ex = ns["adaptive_executor"]
    assert ex.adaptive.memory_threshold == 0.8 and ex.adaptive.adjust_parallelism
    ex.configure(progress=False, max_workers=2, interval=0.5)
    results = ex.execute(pool_of(4, "true"))
    assert results.ok


def test_adaptive_rejects_bad_options():
    from molexp import ConfigError

    with pytest.raises(ConfigError, match="option 'memory_threshold' expects a number from 0 to 1"):
        AdaptiveExecutor().configure(memory_threshold=80)
    with pytest.raises(ConfigError, match="'min_cluster_workers' \\(3\\) must not exceed 'max_cluster_workers' \\(2\\)"):
        AdaptiveExecutor(min_workers=3, max_workers=2)       # the older names are aliases
    with pytest.raises(ConfigError, match="'max_cluster_workers' given twice"):
        AdaptiveExecutor(max_workers=3, max_cluster_workers=3)
    assert AdaptiveExecutor(min_cluster_workers=0, max_workers=5).adaptive.max_cluster_workers == 5


def test_adaptive_executor_runs_in_a_script_without_a_main_guard(tmp_path):
    """Workers of molexp's own LocalCluster start without importing the user's script again, so a plain
    script (no ``if __name__ == "__main__":``) runs once, and __main__ is as it was afterwards."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text(
        "import sys\n"
        "from molexp import AdaptiveExecutor, LocalTask, PythonTask, TaskPool\n"
        "print('script body ran', flush=True)\n"
        "def square(x=3):\n"
        "    return x * x\n"
        "ex = AdaptiveExecutor(min_cluster_workers=1, max_cluster_workers=2, progress=False)\n"
        "pool = TaskPool([LocalTask('echo', commands=['echo hi']), PythonTask('square', square)], name='plain')\n"
        "results = ex.execute(pool)\n"
        "assert results.ok, results.table()\n"
        "assert results['square'].value == 9\n"
        "assert sys.modules['__main__'].__file__.endswith('plain.py')\n"
        "print('done', flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("script body ran") == 1 and out.stdout.strip().endswith("done"), out.stdout
