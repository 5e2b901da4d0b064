"""Execution semantics, identical on the default scheduler and on a distributed LocalCluster:
retries with backoff, failure kinds, fault-tolerance modes, conditions and progress events."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from conftest import no_process_matching

from molexp import (ExecutionError, Experiment, ExperimentExecutor, FailureKind, LocalTask, PythonTask,
                    TaskStatus, current_task)

FLAKY = "test $MOLEXP_ATTEMPT -ge 3 || { echo attempt $MOLEXP_ATTEMPT fails >&2; exit 1; }"


def gaps(result):
    log = result.attempt_log
    return [b.start - a.end for a, b in zip(log, log[1:])]


def test_fails_twice_then_succeeds_with_fixed_delay(project, target):
    e = Experiment("retry", workdir=project)
    e.add_task(LocalTask("flaky", commands=[FLAKY]))
    ex = ExperimentExecutor(e, progress=False, **target)
    ex.configure(retry_attempts=3, retry_delay=1.0)
    r = ex.run()["flaky"]
    assert r.status is TaskStatus.COMPLETED and r.attempts == 3
    assert [a.failure for a in r.attempt_log] == ["exit", "exit", None]
    assert all(g >= 1.0 for g in gaps(r)), gaps(r)
    assert "attempt 1 fails" in Path(r.stderr_path).read_text() and "--- molexp: attempt 3 ---" in r.stderr


def test_exponential_backoff_doubles_the_delay(project, target):
    e = Experiment("backoff", workdir=project)
    e.add_task(LocalTask("flaky", commands=[FLAKY]))
    ex = ExperimentExecutor(e, progress=False, retry_attempts=3, retry_delay=1.0, retry_exponential_backoff=True,
                            **target)
    r = ex.run()["flaky"]
    assert r.attempts == 3 and r.ok
    first, second = gaps(r)
    assert first >= 1.0 and second >= 2.0, (first, second)


def test_per_task_retries_override_and_python_attempt_number(project, target):
    e = Experiment("override", workdir=project)
    e.add_task(LocalTask("never", commands=["exit 1"], retries=1))
    e.add_task(PythonTask("py", _fails_on_first_attempt, retries=1))
    results = ExperimentExecutor(e, progress=False, retry_attempts=5, retry_delay=0.1,
                                 fault_tolerance="continue", **target).run()
    assert results["never"].attempts == 2 and results["never"].status is TaskStatus.FAILED
    assert results["py"].attempts == 2 and results["py"].value == "attempt 2"
    assert results["py"].attempt_log[0].failure == "exception"


def _fails_on_first_attempt():
    if current_task().attempt == 1:
        raise OSError("transient")
    return f"attempt {current_task().attempt}"


def test_failure_kinds(project, target):
    e = Experiment("kinds", workdir=project)
    e.add_task(LocalTask("exit", commands=["true", "exit 7"]))
    e.add_task(LocalTask("signal", commands=["kill -KILL $$$$"]))
    e.add_task(LocalTask("timeout", commands=["sleep 30"], timeout=0.5))
    e.add_task(PythonTask("exception", _raise_value_error))
    e.add_task(PythonTask("condition", _return_one, condition=_broken_condition))
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", retry_attempts=1,
                                 retry_delay=0.1, **target).run()
    assert {n: r.failure for n, r in results.items()} == {
        "exit": "exit", "signal": "signal", "timeout": "timeout", "exception": "exception", "condition": "error"}
    assert results["exit"].returncodes == [0, 7] and "exit 7" in results["exit"].error
    assert "SIGKILL" in results["signal"].error
    assert "timed out after 0.5s" in results["timeout"].error
    assert "ValueError: bad value" in results["exception"].error
    assert "condition '_broken_condition' raised ZeroDivisionError" in results["condition"].error
    # Retries apply to failures of the work, never to a broken definition.
    assert [results[n].attempts for n in ("exit", "signal", "timeout", "exception")] == [2, 2, 2, 2]
    assert results["condition"].attempts == 0
    assert FailureKind.TIMEOUT == "timeout"


def _raise_value_error():
    raise ValueError("bad value")


def _return_one():
    return 1


def _broken_condition(task, context):
    return 1 / 0


def diamond(project, fail_branch=True):
    e = Experiment("diamond", workdir=project)
    e.add_task(LocalTask("a", commands=["echo a"]))
    e.add_task(LocalTask("b", commands=["exit 2" if fail_branch else "true"], deps=["a"]))
    e.add_task(LocalTask("c", commands=["sleep 0.5", "echo c"], deps=["a"]))
    e.add_task(LocalTask("d", commands=["touch d-ran"], deps=["b", "c"]))
    return e


def test_continue_mode_runs_the_other_branch_and_skips_the_join(project, target):
    results = ExperimentExecutor(diamond(project), progress=False, fault_tolerance="continue", **target).run()
    assert {n: r.status.value for n, r in results.items()} == {
        "a": "completed", "b": "failed", "c": "completed", "d": "skipped"}
    assert results["d"].reason == "upstream 'b' failed" and not (project / "d-ran").exists()
    assert results["c"].stdout == "c"


def test_error_propagation_raises_with_the_results(project, target):
    ex = ExperimentExecutor(diamond(project), progress=False, **target)
    ex.configure(fault_tolerance="continue", error_propagation=True)
    with pytest.raises(ExecutionError, match="1 task\\(s\\) failed: b") as e:
        ex.run()
    assert e.value.results["c"].status is TaskStatus.COMPLETED and e.value.results["b"].failure == "exit"


def test_partial_results_false_drops_values_of_a_failed_run(project, target):
    e = Experiment("partial", workdir=project)
    e.add_task(PythonTask("value", _return_one))
    e.add_task(LocalTask("bad", commands=["exit 1"], deps=["value"]))
    kept = ExperimentExecutor(e, progress=False, **target).run()
    dropped = ExperimentExecutor(e, progress=False, partial_results=False, **target).run()
    assert kept["value"].value == 1 and dropped["value"].value is None
    assert dropped["value"].status is TaskStatus.COMPLETED


def test_fail_fast_terminates_running_tasks(project, target):
    e = Experiment("failfast", workdir=project)
    e.add_task(LocalTask("long", commands=["sleep 61.25"]))
    e.add_task(LocalTask("bad", commands=["sleep 0.5", "exit 1"]))
    e.add_task(LocalTask("later", commands=["touch later-ran"], deps=["bad"]))
    t0 = time.monotonic()
    results = ExperimentExecutor(e, progress=False, max_workers=2, kill_grace=2, **target).run()
    assert time.monotonic() - t0 < 20  # not the 61 s of the sleep
    assert results["bad"].status is TaskStatus.FAILED
    assert results["long"].status is TaskStatus.SKIPPED
    # starts are tracked on every backend: the task says it was running
    assert results["long"].reason == "terminated while running: fail_fast: task 'bad' failed"
    assert results["later"].reason == "upstream 'bad' failed"
    deadline = time.monotonic() + 5
    while not no_process_matching("sleep 61.25") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert no_process_matching("sleep 61.25")


def test_condition_skips_task_and_dependents_and_progress_sees_each_transition_once(project, target):
    e = Experiment("cond", workdir=project)
    for name, deps in (("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"])):
        e.add_task(LocalTask(name, commands=[f"echo {name}"], deps=deps))
    seen = []
    ex = ExperimentExecutor(e, progress=False, **target)
    ex.set_condition_check(lambda task, context: task.name != "c" or context["enable_c"])
    ex.set_progress_callback(lambda task, status: seen.append((task.name, status.value)))
    results = ex.run(context={"enable_c": False})
    assert [r.status.value for r in results.values()] == ["completed", "completed", "skipped", "skipped"]
    assert results["c"].reason == "condition is false" and results["d"].reason == "upstream 'c' was skipped"
    assert [s for s in seen if s[0] == "a"] == [("a", "running"), ("a", "completed")]
    assert [s for s in seen if s[0] == "b"] == [("b", "running"), ("b", "completed")]
    assert [s for s in seen if s[0] in "cd"] == [("c", "skipped"), ("d", "skipped")]
    assert seen.index(("a", "completed")) < seen.index(("b", "running"))


def test_condition_context_holds_params_context_and_upstream(project, target):
    e = Experiment("ctx", workdir=project, params={"n": 3})
    e.add_task(PythonTask("up", _return_one))
    e.add_task(LocalTask("down", commands=["echo ran"], deps=["up"]))
    e.add_task(LocalTask("per_task", commands=["echo ran"], condition=lambda task, ctx: ctx["n"] > 5))
    seen = {}

    def check(task, context):
        if task.name == "down":
            seen.update(n=context["n"], params=context["params"], user=context["user"],
                        up=context["upstream"]["up"].value)
        return True

    ex = ExperimentExecutor(e, progress=False, **target).set_condition_check(check)
    results = ex.run(context={"user": "me"})
    assert results["per_task"].status is TaskStatus.SKIPPED and results["down"].ok
    if not target:  # the callable ran in this process: look at what it saw
        assert seen == {"n": 3, "params": {"n": 3}, "user": "me", "up": 1}


def test_retrying_transitions_and_a_broken_callback_never_stop_the_run(project, target, caplog):
    e = Experiment("events", workdir=project)
    e.add_task(LocalTask("flaky", commands=[FLAKY]))
    seen = []

    def callback(task, status):
        seen.append(status.value)
        raise RuntimeError("callback bug")

    ex = ExperimentExecutor(e, progress=False, retry_attempts=2, retry_delay=0.1, **target)
    ex.set_progress_callback(callback)
    with caplog.at_level(logging.ERROR, logger="molexp"):
        results = ex.run()
    assert results.ok
    assert seen == ["running", "retrying", "running", "retrying", "running", "completed"]
    assert "progress callback raised" in caplog.text


def test_progress_bar_counts(project, capsys):
    e = Experiment("bar", workdir=project)
    e.add_task(LocalTask("ok", commands=["true"]))
    e.add_task(LocalTask("bad", commands=["false"]))
    ExperimentExecutor(e, fault_tolerance="continue").run()
    err = capsys.readouterr().err   # not a terminal: a plain line, no bar frames
    assert "2/2 tasks done" in err and "1 failed" in err and "\r" not in err
    ExperimentExecutor(e, fault_tolerance="continue", progress=False).run()
    assert capsys.readouterr().err == ""


def test_one_worker_starts_independent_tasks_in_the_order_they_were_declared(project):
    """Ties in Dask's order (independent tasks) are broken by declaration, not by the tasks' names: 300 tasks
    (Dask hands them over in chunks) with names whose sort order is nothing like the declared one."""
    import random

    rng = random.Random(8)
    names = [f"{rng.choice(['zeta', 'alpha', 'm', 'b', 'task'])}{rng.randrange(1000)}-{i}" for i in range(300)]
    assert names != sorted(names) and names != sorted(names, reverse=True)
    started: list[str] = []
    e = Experiment("declared", workdir=str(project))
    e.add_tasks(PythonTask(n, lambda n=n: started.append(n)) for n in names)
    results = ExperimentExecutor(e, progress=False, max_workers=1).run()
    assert results.ok and started == names
