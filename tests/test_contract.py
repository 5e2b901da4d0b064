"""One contract, every executor: the same scenarios give the same outcomes with ExperimentExecutor,
BatchExecutor, StreamExecutor (local scheduler and LocalCluster) and AdaptiveExecutor (its own cluster)."""

from __future__ import annotations

import pytest

from molexp import (AdaptiveExecutor, BatchExecutor, Experiment, ExperimentExecutor, LocalTask, PythonTask,
                    StreamExecutor, TaskPool, TaskStatus)

KINDS = ["experiment", "experiment-cluster", "batch", "batch-cluster", "stream", "stream-cluster", "adaptive"]


@pytest.fixture(params=KINDS)
def make(request):
    def factory(**options):
        kind = request.param
        target = {"client": request.getfixturevalue("cluster_client")} if kind.endswith("-cluster") else {}
        options.setdefault("progress", False)
        if kind.startswith("experiment"):
            return ExperimentExecutor(**target, **options)
        if kind.startswith("batch"):
            return BatchExecutor(batch_size=2, **target, **options)
        if kind.startswith("stream"):
            return StreamExecutor(**target, **options)
        return AdaptiveExecutor(min_workers=1, max_workers=2, interval=0.5, **options)
    return factory


def statuses(results):
    return {n: r.status.value for n, r in results.items()}


def _double(x=2):
    return 2 * x


def test_pipeline_with_values(project, make):
    e = Experiment("pipe", workdir=project, params={"x": 4})
    e.add_task(LocalTask("write", commands=["echo $x > x.txt"]))
    e.add_task(PythonTask("double", _double, deps=["write"]))
    e.add_task(LocalTask("read", commands=["cat x.txt"], deps=["double"]))
    results = make().execute(e)
    assert statuses(results) == {"write": "completed", "double": "completed", "read": "completed"}
    assert results["double"].value == 8 and results["read"].stdout == "4"


def diamond(project, fail="b"):
    pool = TaskPool(name="diamond")
    pool.add_task(LocalTask("a", commands=["true"]))
    pool.add_task(LocalTask("b", commands=["exit 3" if fail == "b" else "true"], deps=["a"]))
    pool.add_task(LocalTask("c", commands=["sleep 0.2"], deps=["a"]))
    pool.add_task(LocalTask("d", commands=["true"], deps=["b", "c"]))
    return pool


def test_diamond_continue_mode(project, make):
    results = make(fault_tolerance="continue").execute(diamond(project))
    assert statuses(results) == {"a": "completed", "b": "failed", "c": "completed", "d": "skipped"}
    assert results["d"].reason == "upstream 'b' failed"


def test_diamond_fail_fast(project, make):
    results = make().execute(diamond(project))
    assert results["b"].status is TaskStatus.FAILED and results["d"].status is TaskStatus.SKIPPED
    assert results["d"].reason == "upstream 'b' failed"


def test_retries(project, make):
    tasks = [LocalTask("flaky", commands=["test $MOLEXP_ATTEMPT -ge 3"])]
    r = make(retry_attempts=3, retry_delay=0.05).execute(tasks)["flaky"]
    assert r.ok and r.attempts == 3 and [a.failure for a in r.attempt_log] == ["exit", "exit", None]


def test_condition_and_progress_events(project, make):
    pool = TaskPool([LocalTask("a", commands=["true"]), LocalTask("b", commands=["true"], deps=["a"]),
                     LocalTask("c", commands=["true"], deps=["b"])])
    seen = []
    ex = make()
    ex.set_condition_check(lambda task, ctx: task.name != "b")
    ex.set_progress_callback(lambda task, status: seen.append((task.name, status.value)))
    results = ex.execute(pool)
    assert statuses(results) == {"a": "completed", "b": "skipped", "c": "skipped"}
    assert seen == [("a", "running"), ("a", "completed"), ("b", "skipped"), ("c", "skipped")]


def test_resume(project, make):
    def build(cmd):
        e = Experiment("resume", workdir=project)
        e.add_task(LocalTask("one", commands=["echo 1 >> log"]))
        e.add_task(LocalTask("two", commands=[cmd], deps=["one"]))
        return e

    make(checkpoint_dir="ck").execute(build("echo 2 >> log"))
    again = make(checkpoint_dir="ck", auto_resume=True).execute(build("echo 22 >> log"))
    assert statuses(again) == {"one": "cached", "two": "completed"}
    assert (project / "log").read_text().split() == ["1", "2", "22"]
