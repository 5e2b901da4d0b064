"""Resource management that is enforced: memory limits on process trees, CPU pinning, priorities,
timeouts, usage records, and Dask resource annotations on a cluster."""

from __future__ import annotations

import json
import time

import pytest
from conftest import no_process_matching
from snippets import snippet

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask, TaskStatus, current_task

ALLOC = "python3 -c \"import time; b = b'x' * ({mb} * 2**20); time.sleep({hold})\""


def wait_gone(fragment, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not no_process_matching(fragment) and time.monotonic() < deadline:
        time.sleep(0.05)
    return no_process_matching(fragment)


def test_memory_limit_kills_the_task_and_reports_peak(project, target):
    e = Experiment("mem", workdir=project)
    e.add_task(LocalTask("hog", commands=[ALLOC.format(mb=500, hold=30.5)]))
    e.add_task(LocalTask("small", commands=[ALLOC.format(mb=50, hold=0.8)]))  # long enough to be sampled
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", max_memory_per_task="200MB",
                                 **target).run()
    hog, small = results["hog"], results["small"]
    assert hog.status is TaskStatus.FAILED and hog.failure == "memory_limit"
    assert hog.duration < 5  # caught while allocating, not after the 30 s it would hold
    assert "memory limit 200000000 bytes exceeded" in hog.error
    assert hog.peak_memory > 200e6
    assert small.ok and 50 * 2**20 < small.peak_memory < 200e6
    assert wait_gone("time.sleep(30.5)")


def test_memory_of_forked_children_counts(project):
    e = Experiment("tree", workdir=project)
    # bash stays small; its background child allocates
    e.add_task(LocalTask("tree", commands=[ALLOC.format(mb=400, hold=31.5) + " & wait"],
                         resources={"memory": "150MB"}))
    r = ExperimentExecutor(e, progress=False).run()["tree"]
    assert r.failure == "memory_limit" and r.peak_memory > 150e6
    assert wait_gone("time.sleep(31.5)")


def _allocate(mb):
    block = b"x" * (mb * 2**20)
    time.sleep(0.2)
    print("allocated", len(block) // 2**20, "MB")
    return current_task().attempt


def test_isolated_python_task_limits_output_and_value(project, target):
    e = Experiment("iso", workdir=project)
    e.add_task(PythonTask("big", _allocate, kwargs={"mb": 400}, isolated=True, resources={"memory": "150MB"}))
    e.add_task(PythonTask("fine", _allocate, kwargs={"mb": 10}, isolated=True, resources={"memory": "150MB"}))
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", **target).run()
    assert results["big"].failure == "memory_limit"
    assert results["fine"].ok and results["fine"].value == 1 and results["fine"].stdout == "allocated 10 MB"
    assert results["fine"].peak_memory > 10 * 2**20
    e2 = Experiment("iso2", workdir=project)
    e2.add_task(PythonTask("slow", _sleep, kwargs={"seconds": 30}, isolated=True, timeout=0.5))
    assert ExperimentExecutor(e2, progress=False, **target).run()["slow"].failure == "timeout"


def _sleep(seconds):
    time.sleep(seconds)


def test_timeout_terminates_the_process_group(project, target):
    e = Experiment("timeout", workdir=project)
    e.add_task(LocalTask("sleepy", commands=["sleep 60.75 | cat"], timeout=1))
    t0 = time.monotonic()
    r = ExperimentExecutor(e, progress=False, kill_grace=1, **target).run()["sleepy"]
    assert time.monotonic() - t0 < 15
    assert r.failure == "timeout" and "timed out after 1s" in r.error
    assert wait_gone("sleep 60.75")


CPUS = "grep Cpus_allowed_list /proc/self/status | cut -f2 > cpus-$MOLEXP_TASK.txt; sleep 0.5"


@pytest.mark.parametrize("pin", [True, False])
def test_cpu_affinity_gives_concurrent_tasks_distinct_cores(project, pin):
    import os

    e = Experiment("pin", workdir=project)
    e.add_task(LocalTask("one", commands=[CPUS]))
    e.add_task(LocalTask("two", commands=[CPUS]))
    results = ExperimentExecutor(e, progress=False, max_workers=2, cpu_affinity=pin).run()
    assert results.ok
    one, two = results["one"], results["two"]
    assert one.start < two.end and two.start < one.end  # they ran at the same time
    seen = [(project / f"cpus-{n}.txt").read_text().strip() for n in ("one", "two")]
    all_cores = sorted(os.sched_getaffinity(0))
    if pin:
        assert all(s.isdigit() for s in seen) and seen[0] != seen[1], seen
        assert {int(s) for s in seen} <= set(all_cores)
    else:
        expected = f"{all_cores[0]}-{all_cores[-1]}" if len(all_cores) > 1 else str(all_cores[0])
        assert seen == [expected, expected]


def priority_experiment(project) -> Experiment:
    e = Experiment("prio", workdir=project)
    e.add_task(LocalTask("root", commands=["true"]))
    for i, p in enumerate([3, 9, 1, 7, 5, 0, 8, 2, 6, 4]):
        e.add_task(LocalTask(f"t{i}", commands=["sleep 0.05"], deps=["root"], priority=p))
    return e


def start_order(results):
    names = [n for n in results if n != "root"]
    return [results[n].task_priority for n in sorted(names, key=lambda n: results[n].start)]


def test_priorities_order_ready_tasks_on_the_default_scheduler(project):
    e = priority_experiment(project)
    results = ExperimentExecutor(e, progress=False, max_workers=1, priority_scheduling=True).run()
    order = sorted((n for n in results if n != "root"), key=lambda n: results[n].start)
    assert [e.tasks[n].priority for n in order] == list(range(9, -1, -1))


def test_priorities_order_ready_tasks_on_a_one_thread_worker(project):
    from distributed import Client, LocalCluster

    e = priority_experiment(project)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        results = ExperimentExecutor(e, progress=False, client=client, priority_scheduling=True).run()
    order = sorted((n for n in results if n != "root"), key=lambda n: results[n].start)
    assert [e.tasks[n].priority for n in order] == list(range(9, -1, -1))


def test_priorities_hold_for_tasks_submitted_together_as_one_graph(project):
    from distributed import Client, LocalCluster

    from molexp import BatchExecutor

    e = priority_experiment(project)  # root's end readies all ten at once: they go to Dask as one graph
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        results = BatchExecutor(20, progress=False, client=client, priority_scheduling=True).execute(e)
    order = sorted((n for n in results if n != "root"), key=lambda n: results[n].start)
    assert [e.tasks[n].priority for n in order] == list(range(9, -1, -1))


def test_critical_path_goes_first_without_user_priorities(project):
    e = Experiment("critical", workdir=project)
    e.add_task(LocalTask("short", commands=["sleep 0.05"]))
    e.add_task(LocalTask("long1", commands=["sleep 0.05"]))
    e.add_task(LocalTask("long2", commands=["sleep 0.05"], deps=["long1"]))
    e.add_task(LocalTask("long3", commands=["sleep 0.05"], deps=["long2"]))
    results = ExperimentExecutor(e, progress=False, max_workers=1, priority_scheduling=True).run()
    assert results["long1"].start < results["short"].start
    # long2 becomes ready as long1 ends, while short has been waiting: the freed worker still takes long2
    assert results["long2"].start < results["short"].start


def learning_experiment(project) -> Experiment:
    """Counting tasks puts the two-task chain first; its seconds put the long single task first."""
    e = Experiment("learn", workdir=project)
    e.add_task(LocalTask("root", commands=["true"]))
    e.add_task(LocalTask("quick", commands=["sleep 0.02"], deps=["root"]))
    e.add_task(LocalTask("quick2", commands=["sleep 0.02"], deps=["quick"]))
    e.add_task(LocalTask("slow", commands=["sleep 0.3"], deps=["root"]))
    return e


def durations_file(project):
    return project / ".molexp" / "learn" / "durations.json"


def test_a_second_run_ranks_tasks_by_the_seconds_the_first_one_measured(project):
    e = learning_experiment(project)
    ExperimentExecutor(e, progress=False, max_workers=1).run()
    assert durations_file(project).exists()  # every run records durations: they order the next run
    durations_file(project).unlink()         # forgotten: the next run counts tasks again

    first = ExperimentExecutor(e, progress=False, max_workers=1, priority_scheduling=True).run()
    assert first["quick"].start < first["slow"].start  # no records: 2 tasks on its chain beat 1
    recorded = json.loads(durations_file(project).read_text())
    assert set(recorded) == {"root", "quick", "quick2", "slow"}
    assert recorded["slow"] >= 0.3 > recorded["quick"] + recorded["quick2"]

    second = ExperimentExecutor(e, progress=False, max_workers=1, priority_scheduling=True).run()
    assert second["slow"].start < second["quick"].start  # 0.3 s beat 0.04 s


def test_recorded_durations_set_priorities_on_a_cluster_too(project):
    from distributed import Client, LocalCluster

    e = learning_experiment(project)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        first = ExperimentExecutor(e, progress=False, client=client, priority_scheduling=True).run()
        second = ExperimentExecutor(e, progress=False, client=client, priority_scheduling=True).run()
    assert first["quick"].start < first["slow"].start
    assert second["slow"].start < second["quick"].start


def test_an_unreadable_durations_file_counts_tasks_and_is_replaced(project):
    e = learning_experiment(project)
    durations_file(project).parent.mkdir(parents=True)
    durations_file(project).write_text("{not json")
    results = ExperimentExecutor(e, progress=False, max_workers=1, priority_scheduling=True).run()
    assert results.ok and results["quick"].start < results["slow"].start
    assert set(json.loads(durations_file(project).read_text())) == {"root", "quick", "quick2", "slow"}


def test_tasks_without_a_record_count_as_the_median_recorded_task():
    from molexp.state.durations import critical_path

    order = ["a", "b", "c", "d"]
    dependents = {"a": ["b"], "b": [], "c": ["d"], "d": []}
    assert critical_path(order, dependents, {}) == {"a": 2, "b": 1, "c": 2, "d": 1}
    # b and d have no record: each counts as the median of a and c (2.0)
    assert critical_path(order, dependents, {"a": 1.0, "c": 3.0, "other": 99.0}) == {
        "a": 3.0, "b": 2.0, "c": 5.0, "d": 2.0}


def test_workers_declaring_memory_never_run_more_than_they_hold(project):
    """Whether the graph goes in whole (ExperimentExecutor) or tasks are submitted together as they become
    ready (BatchExecutor: all three in one graph), each task's memory annotation holds."""
    from distributed import Client, LocalCluster

    from molexp import BatchExecutor

    e = Experiment("declared", workdir=project)
    for i in range(3):
        e.add_task(LocalTask(f"big{i}", commands=["sleep 0.4"], resources={"memory": "600MB"}))
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=True, dashboard_address=":0",
                      resources={"memory": 1e9}, silence_logs=40) as cluster, Client(cluster) as client:
        runs = [ExperimentExecutor(e, progress=False, client=client).run(),
                BatchExecutor(3, progress=False, client=client).execute(e)]
    for results in runs:
        spans = sorted((r.start, r.end) for r in results.values())
        assert results.ok and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # one at a time


def test_seed_resource_snippet_runs_as_written_and_usage_table(project):
    e = Experiment("seed-res", workdir=project)
    e.add_task(LocalTask("work", commands=[ALLOC.format(mb=30, hold=0.8)]))  # sampled every 0.2 s
    executor = ExperimentExecutor(e, progress=False)
    exec(compile(snippet("workflow-execution.md", "Resource Management"), "guide", "exec"), {"executor": executor})
    assert executor.config.max_memory_per_task == 4 * 10**9
    assert executor.config.cpu_affinity and executor.config.priority_scheduling
    results = executor.run()
    r = results["work"]
    assert r.ok and r.peak_memory > 30 * 2**20 and r.cpu_time >= 0
    table = results.table(resources=True)
    assert table.splitlines()[0].split()[:6] == ["task", "status", "tries", "time", "peak", "mem"]
    assert "MiB" in table.splitlines()[1]


def test_declared_resources_on_a_cluster_with_no_worker_yet_are_not_dropped_silently(project, caplog):
    """A cluster that has no worker when the run starts (a batch system's, an adaptive one): the tasks that
    go before a worker joins cannot carry Dask resources (no worker declares any yet); molexp says so once,
    and the run completes once a worker comes."""
    import logging
    import threading

    from distributed import Client, LocalCluster

    e = Experiment("no-worker-yet", workdir=project)
    for i in range(3):
        e.add_task(LocalTask(f"big{i}", commands=["true"], resources={"memory": "600MB"}))
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0",
                      resources={"memory": 1e9}, silence_logs=40) as cluster, Client(cluster) as client:
        threading.Timer(1.0, cluster.scale, args=(1,)).start()
        with caplog.at_level(logging.WARNING, logger="molexp"):
            results = ExperimentExecutor(e, progress=False, client=client).run()
    assert results.ok
    said = [r.getMessage() for r in caplog.records if "no Dask worker has joined yet" in r.getMessage()]
    assert len(said) == 1 and "memory/cores" in said[0]
