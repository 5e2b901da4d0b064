"""Task log files (run/logs.py): only non-empty logs leave a file, complete and in their attempts' order;
``keep_logs="failed"``; stale logs of earlier runs removed; results that say truly where a log is. Real runs,
on the local scheduler and on a LocalCluster of worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask, TaskStatus
from molexp.errors import ConfigError
from molexp.run import logs

import taskfuncs


def log_dir(project: Path, experiment: str) -> Path:
    return project / ".molexp" / experiment / "logs"


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name != ".lock"}


def run(e: Experiment, target: dict | None = None, **options):
    options.setdefault("fault_tolerance", "continue")
    return ExperimentExecutor(e, progress=False, **(target or {}), **options).run()


def test_empty_logs_leave_no_file_and_the_result_says_so(project, target):
    e = Experiment("quiet", workdir=project)
    e.add_task(LocalTask("silent", commands=["true", "true"]))
    e.add_task(LocalTask("speaks", commands=["echo hello"]))
    e.add_task(LocalTask("complains", commands=["echo oops >&2"]))
    e.add_task(LocalTask("fails-silently", commands=["exit 4"]))
    e.add_task(PythonTask("isolated-quiet", taskfuncs.make_numbers, kwargs={"n": 3}, isolated=True))
    results = run(e, target)
    assert files_in(log_dir(project, "quiet")) == {"speaks.out", "complains.err"}
    assert results["silent"].stdout_path is None and results["silent"].stderr_path is None
    assert results["fails-silently"].status is TaskStatus.FAILED
    assert results["fails-silently"].stdout_path is None and results["fails-silently"].stderr_path is None
    assert results["isolated-quiet"].value == [0, 1, 2] and results["isolated-quiet"].stdout_path is None
    speaks, complains = results["speaks"], results["complains"]
    assert Path(speaks.stdout_path).read_text() == "hello\n" and speaks.stdout == "hello"
    assert speaks.stderr_path is None and speaks.stderr == ""
    assert Path(complains.stderr_path).read_text() == "oops\n" and complains.stdout_path is None


def test_non_empty_logs_are_complete_on_both_streams(project, target):
    script = project / "chatty.py"
    script.write_text("import sys\nfor i in range(20000):\n    print('out', i)\n    print('err', i, file=sys.stderr)\n")
    e = Experiment("chatty", workdir=project)
    e.add_task(LocalTask("chatty", commands=[f"python {script}", "echo second command"]))
    r = run(e, target)["chatty"]
    assert r.status is TaskStatus.COMPLETED
    out = [f"out {i}" for i in range(20000)] + ["second command"]
    assert Path(r.stdout_path).read_text() == "\n".join(out) + "\n"
    assert Path(r.stderr_path).read_text() == "".join(f"err {i}\n" for i in range(20000))
    assert r.stdout.splitlines() == out[-20:] and r.stderr.splitlines()[-1] == "err 19999"
    if not target:   # this filesystem has O_TMPFILE: the logs were anonymous files, linked (not copied)
        assert logs._anonymous[str(log_dir(project, "chatty"))] is True


def test_keep_logs_failed_keeps_only_the_logs_of_tasks_that_failed(project, target):
    e = Experiment("failed-only", workdir=project)
    e.add_task(LocalTask("ok", commands=["echo fine; echo warning >&2"]))
    e.add_task(LocalTask("bad", commands=["echo partial; echo broken >&2; exit 2"]))
    e.add_task(PythonTask("py-bad", taskfuncs.boom, isolated=True))
    results = run(e, target, keep_logs="failed")
    ok, bad, py = results["ok"], results["bad"], results["py-bad"]
    assert ok.status is TaskStatus.COMPLETED and bad.status is py.status is TaskStatus.FAILED
    assert (ok.stdout, ok.stderr) == ("fine", "warning")                   # the tails are still there
    assert ok.stdout_path is None and ok.stderr_path is None
    assert Path(bad.stdout_path).read_text() == "partial\n" and Path(bad.stderr_path).read_text() == "broken\n"
    assert py.failure == "exception" and "boom from a python task" in py.error
    expected = {"bad.out", "bad.err"} | {Path(p).name for p in (py.stdout_path, py.stderr_path) if p}
    assert files_in(log_dir(project, "failed-only")) == expected


FLAKY = "if [ -e tried ]; then echo done; else touch tried; echo 'attempt 1 fails' >&2; exit 1; fi"


def test_a_retried_task_keeps_every_attempt_in_one_file(project, target):
    e = Experiment("flaky", workdir=project)
    e.add_task(LocalTask("flaky", commands=[FLAKY], retries=1))
    r = run(e, target, retry_delay=0)["flaky"]
    assert r.status is TaskStatus.COMPLETED and r.attempts == 2
    assert Path(r.stdout_path).read_text() == "--- molexp: attempt 2 ---\ndone\n"
    assert Path(r.stderr_path).read_text() == "attempt 1 fails\n--- molexp: attempt 2 ---\n"
    assert r.stdout == "--- molexp: attempt 2 ---\ndone"


def test_keep_logs_failed_drops_a_retried_task_that_completed_and_keeps_one_that_failed(project, target):
    e = Experiment("flaky-failed", workdir=project)
    e.add_task(LocalTask("recovers", commands=[FLAKY], retries=1))
    e.add_task(LocalTask("gives-up", commands=["echo try $MOLEXP_ATTEMPT >&2; exit 1"], retries=2))
    results = run(e, target, retry_delay=0, keep_logs="failed")
    recovers, gives_up = results["recovers"], results["gives-up"]
    assert recovers.status is TaskStatus.COMPLETED and recovers.stdout_path is recovers.stderr_path is None
    assert "--- molexp: attempt 2 ---" in recovers.stdout
    assert gives_up.status is TaskStatus.FAILED and gives_up.attempts == 3
    assert Path(gives_up.stderr_path).read_text() == (
        "try 1\n--- molexp: attempt 2 ---\ntry 2\n--- molexp: attempt 3 ---\ntry 3\n")
    assert files_in(log_dir(project, "flaky-failed")) == {"gives-up.out", "gives-up.err"}


def test_stale_logs_of_an_earlier_run_are_gone_after_a_new_run(project, target):
    e = Experiment("stale", workdir=project)
    e.add_task(LocalTask("sometimes", commands=["if [ -e loud ]; then echo noisy; echo noisier >&2; fi"]))
    e.add_task(LocalTask("always", commands=["echo run $$RANDOM$$RANDOM"]))
    (project / "loud").touch()
    first = run(e, target)
    assert files_in(log_dir(project, "stale")) == {"sometimes.out", "sometimes.err", "always.out"}
    (project / "loud").unlink()
    second = run(e, target)
    assert second["sometimes"].stdout_path is None and second["sometimes"].stderr_path is None
    assert files_in(log_dir(project, "stale")) == {"always.out"}
    text = Path(second["always"].stdout_path).read_text()
    assert text == second["always"].stdout + "\n" and text != first["always"].stdout + "\n"


def test_a_resumed_run_keeps_the_logs_of_reused_tasks_and_drops_stale_ones(project):
    e = Experiment("resumed", workdir=project)
    e.add_task(LocalTask("first", commands=["echo first ran"]))
    e.add_task(LocalTask("second", commands=["if [ -e loud ]; then echo second ran; fi; test -e go"],
                         deps=["first"]))
    (project / "loud").touch()
    options = {"checkpoint_dir": "ck", "auto_resume": True}
    one = run(e, **options)
    assert one["second"].status is TaskStatus.FAILED and Path(one["second"].stdout_path).exists()
    (project / "loud").unlink()
    (project / "go").touch()
    two = run(e, **options)
    assert two["first"].stdout_path == one["first"].stdout_path            # reused: its log is still there
    assert Path(two["first"].stdout_path).read_text() == "first ran\n"
    assert two["second"].status is TaskStatus.COMPLETED and two["second"].stdout_path is None
    assert files_in(project / "ck" / "logs") == {"first.out"}


def test_named_log_files_where_the_directory_has_no_anonymous_files(project):
    """The fallback for filesystems without O_TMPFILE (NFS, ...): named files, removed when empty or not kept.
    This filesystem has O_TMPFILE, so the test tells the module what detection would have learned."""
    directory = log_dir(project, "named")
    directory.mkdir(parents=True)
    logs._anonymous[str(directory)] = False
    try:
        e = Experiment("named", workdir=project)
        e.add_task(LocalTask("silent", commands=["true"]))
        e.add_task(LocalTask("speaks", commands=["echo hello"]))
        e.add_task(LocalTask("flaky", commands=[FLAKY], retries=1))
        results = run(e, retry_delay=0)
        assert files_in(directory) == {"speaks.out", "flaky.out", "flaky.err"}
        assert results["silent"].stdout_path is None
        assert Path(results["flaky"].stderr_path).read_text() == "attempt 1 fails\n--- molexp: attempt 2 ---\n"
        results = run(e, retry_delay=0, keep_logs="failed")
        assert files_in(directory) == set() and results["speaks"].stdout == "hello"
    finally:
        del logs._anonymous[str(directory)]


def test_keep_logs_is_an_option_checked_like_the_others(project):
    e = Experiment("opt", workdir=project)
    with pytest.raises(ConfigError) as ei:
        ExperimentExecutor(e, keep_logs="some")
    assert str(ei.value) == "option 'keep_logs' expects 'all' or 'failed', got 'some' (str)"
    assert ExperimentExecutor(e).configure(keep_logs="failed").config.keep_logs == "failed"


def test_a_task_whose_processes_outlive_it_names_its_logs_for_them(project):
    e = Experiment("lasting", workdir=project)
    e.add_task(LocalTask("starter", commands=["(sleep 0.5; echo later) &"]))
    r = run(e, keep_processes=["starter"])["starter"]
    assert r.status is TaskStatus.COMPLETED and r.stdout == "" and r.stdout_path is not None
    deadline = time.monotonic() + 20
    while Path(r.stdout_path).read_text() != "later\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Path(r.stdout_path).read_text() == "later\n"


def test_molexp_logs_says_truly_when_a_log_was_empty_or_not_kept(project):
    e = Experiment("cli-logs", workdir=project)
    e.add_task(LocalTask("talks", commands=["echo hello"]))
    run(e, checkpoint_dir="ck", keep_logs="failed")

    def logs_cli(*args):
        return subprocess.run([sys.executable, "-m", "molexp", "logs", "ck", *args], capture_output=True, text=True,
                              cwd=project, timeout=60)

    empty = logs_cli("talks", "--stderr")
    assert empty.returncode == 0 and empty.stdout == ""
    assert empty.stderr == "molexp: task 'talks' wrote nothing to its stderr (an empty log leaves no file)\n"
    dropped = logs_cli("talks")
    assert dropped.returncode == 2 and "it was not kept (option keep_logs='failed'" in dropped.stderr
    assert "molexp show ck talks" in dropped.stderr


def test_a_worker_thread_reuses_its_emptied_anonymous_files_without_mixing_tasks(project):
    """An anonymous file a task leaves empty (or not kept) is emptied and given to the thread's next task: no
    content of one task may show in another's log."""
    e = Experiment("reuse", workdir=project)
    e.add_task(LocalTask("one", commands=["echo one; echo one-err >&2"]))
    e.add_task(LocalTask("two", commands=["echo two; exit 1"], deps=["one"]))
    e.add_task(LocalTask("three", commands=["echo three-err >&2; exit 1"], deps=["one"]))
    results = run(e, max_workers=1, keep_logs="failed")
    assert results["one"].stdout == "one" and results["one"].stdout_path is None
    assert Path(results["two"].stdout_path).read_text() == "two\n" and results["two"].stderr_path is None
    assert Path(results["three"].stderr_path).read_text() == "three-err\n" and results["three"].stdout_path is None
    assert files_in(log_dir(project, "reuse")) == {"two.out", "three.err"}
