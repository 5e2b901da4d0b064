"""The guide's "Advanced Execution Features" and "Fault Tolerance" snippets, run as written on each target."""

from __future__ import annotations

from snippets import snippet

from molexp import Experiment, ExperimentExecutor, LocalTask, TaskStatus

PAGE = "workflow-execution.md"


def executor_for(project, target):
    e = Experiment("features", workdir=project)
    e.add_task(LocalTask("prepare", commands=["echo prepared"]))
    e.add_task(LocalTask("flaky", commands=["test $MOLEXP_ATTEMPT -ge 2"], deps=["prepare"]))
    e.add_task(LocalTask("broken", commands=["exit 1"], deps=["prepare"]))
    e.add_task(LocalTask("report", commands=["echo report"], deps=["flaky"]))
    return ExperimentExecutor(e, progress=False, **target)


def run_snippets(executor, *headings) -> dict:
    ns = {"executor": executor}
    for h in headings:
        exec(compile(snippet(PAGE, h), f"{PAGE}:{h}", "exec"), ns)
    return ns


def test_guide_features_snippets_run_as_written(project, target, capsys):
    executor = executor_for(project, target)
    run_snippets(executor, "Conditional Execution", "Retry Logic", "Progress Monitoring", "Fault Tolerance")
    assert executor.config.retry_attempts == 3 and executor.config.retry_exponential_backoff
    assert executor.config.fault_tolerance == "continue" and executor.config.partial_results
    executor.configure(retry_delay=0.1)
    results = executor.run(context={"enable_analysis": True})
    assert results["flaky"].ok and results["flaky"].attempts == 2
    assert results["broken"].status is TaskStatus.FAILED and results["broken"].attempts == 4
    assert results["report"].ok  # continue mode: the other branch went on
    printed = capsys.readouterr().out.splitlines()
    assert "Task prepare: running" in printed and "Task report: completed" in printed
    assert printed.count("Task broken: retrying") == 3 and "Task broken: failed" in printed

    skipped = executor.run(context={"enable_analysis": False})
    assert all(r.status is TaskStatus.SKIPPED for r in skipped.values())
    assert skipped["prepare"].reason == "condition is false"
    assert skipped["report"].reason == "upstream 'flaky' was skipped"
