"""Checkpoint and resume: nothing recorded is lost, a killed driver resumes, changed tasks re-run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import taskfuncs
from conftest import dedent
from snippets import snippet

from molexp import (CheckpointError, CheckpointLocked, Experiment, ExperimentExecutor, LocalTask, PythonTask,
                    TaskStatus)
from molexp.state.journal import read_state

# 200 tasks: 10 independent chains of 20; each appends a line to ran/<task> when it runs.
WORKFLOW = dedent("""
    from molexp import Experiment, LocalTask

    experiment = Experiment("crashy")
    for c in range(10):
        for i in range(20):
            deps = [f"c{c}-t{i - 1}"] if i else []
            experiment.add_task(LocalTask(f"c{c}-t{i}", deps=deps,
                                          commands=["sleep 0.03", "echo x >> ran/$MOLEXP_TASK"]))
    """)


def runs_per_task(directory: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in (directory / "ran").iterdir()}


def completed_in_journal(checkpoint: Path) -> set[str]:
    return {n for n, r in read_state(checkpoint)["records"].items() if r["status"] == "completed"}


def start_run(directory: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "molexp.cli", "run", "workflow.py", "--no-progress",
                             "--workers", "2", "--checkpoint-dir", "ckpt", *extra], cwd=directory,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.mark.parametrize("kill_after", [5, 100, 190])
def test_sigkill_of_the_driver_loses_nothing_recorded(tmp_path, kill_after):
    (tmp_path / "workflow.py").write_text(WORKFLOW)
    (tmp_path / "ran").mkdir()
    journal = tmp_path / "ckpt" / "journal.jsonl"
    first = start_run(tmp_path)
    try:
        wait_until(lambda: journal.exists() and journal.read_text().count("\n") > kill_after)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close(), first.stderr.close()
    time.sleep(0.3)  # tasks that were running when the driver died finish on their own
    recorded = completed_in_journal(tmp_path / "ckpt")
    assert len(recorded) >= kill_after
    before = runs_per_task(tmp_path)

    second = subprocess.run([sys.executable, "-m", "molexp.cli", "run", "workflow.py", "--no-progress",
                             "--checkpoint-dir", "ckpt", "--resume"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"{200 - len(recorded)} completed, {len(recorded)} cached" in second.stdout
    after = runs_per_task(tmp_path)
    assert len(after) == 200                                   # everything ran
    assert all(after[n] == 1 for n in recorded)                # nothing recorded ran again
    twice = sorted(n for n, k in after.items() if k > 1)
    assert all(after[n] == 2 for n in twice)
    assert len(twice) <= 2, twice                              # at most the tasks running at the kill (2 workers)
    assert all(before.get(n, 0) == 1 for n in twice)


def test_seed_checkpoint_snippet_runs_as_written(project):
    e = Experiment("seed-ckpt", workdir=project)
    e.add_task(LocalTask("a", commands=["echo x >> a.txt"]))
    e.add_task(PythonTask("numbers", taskfuncs.make_numbers, deps=["a"]))
    executor = ExperimentExecutor(e, progress=False)
    ns = {"executor": executor}
    exec(compile(snippet("workflow-execution.md", "Checkpoint and Resume"), "guide", "exec"), ns)
    assert (project / "checkpoints" / "journal.jsonl").exists()
    results = ns["executor"].run()  # configured by the snippet: auto_resume
    assert [r.status for r in results.values()] == [TaskStatus.CACHED, TaskStatus.CACHED]
    assert results["numbers"].value == [0, 1, 2]
    assert (project / "a.txt").read_text() == "x\n"


def test_editing_one_task_reruns_it_and_its_downstream_only(project):
    def build(cmd_b: str) -> Experiment:
        e = Experiment("edit", workdir=project)
        e.add_task(LocalTask("a", commands=["echo a >> log.txt"]))
        e.add_task(LocalTask("b", commands=[cmd_b], deps=["a"]))
        e.add_task(LocalTask("c", commands=["echo c >> log.txt"], deps=["b"]))
        e.add_task(LocalTask("side", commands=["echo side >> log.txt"], deps=["a"]))
        return e

    opts = dict(progress=False, checkpoint_dir="ck", auto_resume=True)
    ExperimentExecutor(build("echo b >> log.txt"), **opts).run()
    again = ExperimentExecutor(build("echo B >> log.txt"), **opts).run()
    assert {n: r.status.value for n, r in again.items()} == {
        "a": "cached", "b": "completed", "c": "completed", "side": "cached"}
    assert sorted((project / "log.txt").read_text().split()) == sorted("a b c side B c".split())
    # and a changed parameter is a changed task
    e = build("echo b$suffix >> log.txt")
    e.params["suffix"] = 1
    ExperimentExecutor(e, **opts).run()
    e.params["suffix"] = 2
    third = ExperimentExecutor(e, **opts).run()
    assert third["b"].status is TaskStatus.COMPLETED and third["a"].status is TaskStatus.CACHED


class Molecule:
    def __init__(self, atoms):
        self.atoms = atoms

    def __eq__(self, other):
        return isinstance(other, Molecule) and other.atoms == self.atoms


def make_molecule():
    return {"mol": Molecule(["C", "O"]), "energy": -1.5, "grid": [[1, 2], [3, 4]]}


def test_python_value_comes_back_identical_after_resume(project):
    e = Experiment("values", workdir=project)
    e.add_task(PythonTask("mol", make_molecule))
    first = ExperimentExecutor(e, progress=False, checkpoint_dir="ck").run()
    second = ExperimentExecutor(e, progress=False).resume_from_checkpoint("ck")
    assert second["mol"].status is TaskStatus.CACHED
    assert second["mol"].value == first["mol"].value == make_molecule()
    assert second["mol"].start == first["mol"].start


def test_second_run_on_a_live_checkpoint_refuses_and_a_dead_holder_is_taken_over(tmp_path):
    (tmp_path / "workflow.py").write_text(dedent("""
        from molexp import Experiment, LocalTask
        experiment = Experiment("locked")
        experiment.add_task(LocalTask("long", commands=["sleep 64.5"]))
        """))
    first = start_run(tmp_path)
    try:
        wait_until(lambda: (tmp_path / "ckpt" / "journal.lock").exists()
                   and str(first.pid) in (tmp_path / "ckpt" / "journal.lock").read_text())
        e = Experiment("locked", workdir=tmp_path)
        e.add_task(LocalTask("long", commands=["touch second-ran"]))
        with pytest.raises(CheckpointLocked, match=f"pid {first.pid}"):
            ExperimentExecutor(e, progress=False, checkpoint_dir=tmp_path / "ckpt").run()
        assert not (tmp_path / "second-ran").exists()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close(), first.stderr.close()
        subprocess.run(["pkill", "-f", "sleep 64.5"])
    results = ExperimentExecutor(e, progress=False, checkpoint_dir=tmp_path / "ckpt").run()
    assert results.ok and (tmp_path / "second-ran").exists()


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.mark.parametrize("content", [b"this is not a journal\n", b'{"molexp_journal": 1, "experiment": "e"}\n'
                                     b'{"name": "a", "garbage\n{"name": "b"}\n'])
def test_corrupt_checkpoint_is_a_clear_error_and_left_unchanged(project, content):
    (project / "ck").mkdir()
    journal = project / "ck" / "journal.jsonl"
    journal.write_bytes(content)
    before = fingerprint(journal)
    e = Experiment("e", workdir=project)
    e.add_task(LocalTask("a", commands=["touch ran"]))
    with pytest.raises(CheckpointError) as err:
        ExperimentExecutor(e, progress=False, checkpoint_dir="ck").run()
    assert str(journal) in str(err.value) and err.value.path
    assert fingerprint(journal) == before and not (project / "ran").exists()


def test_foreign_checkpoint_is_a_clear_error_and_left_unchanged(project):
    other = Experiment("other", workdir=project)
    other.add_task(LocalTask("a", commands=["true"]))
    ExperimentExecutor(other, progress=False, checkpoint_dir="ck").run()
    files = {p: fingerprint(p) for p in (project / "ck").rglob("*") if p.is_file() and p.name != "journal.lock"}
    mine = Experiment("mine", workdir=project)
    mine.add_task(LocalTask("a", commands=["true"]))
    with pytest.raises(CheckpointError, match="other"):
        ExperimentExecutor(mine, progress=False, checkpoint_dir="ck").run()
    assert {p: fingerprint(p) for p in files} == files


def test_status_command_reports_counts_and_failures(project):
    e = Experiment("st", workdir=project)
    e.add_task(LocalTask("good", commands=["true"]))
    e.add_task(LocalTask("bad", commands=["echo disk full >&2", "exit 9"]))
    ExperimentExecutor(e, progress=False, fault_tolerance="continue", checkpoint_dir="ck").run()
    p = subprocess.run([sys.executable, "-m", "molexp.cli", "status", "ck"], capture_output=True, text=True)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == "experiment st: 2 tasks recorded: 1 completed, 1 failed"
    assert "--- bad failed (exit): command exited with code 9: exit 9" in p.stdout and "disk full" in p.stdout
    assert os.path.basename(e.workdir) in p.stdout


def test_compact_journal_records_rebuild_the_same_results():
    """The journal leaves out empty fields and a single attempt that is the result itself; nothing is lost."""
    import json

    from molexp.state.checkpoint import result_json
    from molexp.state.result import Attempt, TaskResult, TaskStatus

    ok = TaskResult("a", TaskStatus.COMPLETED, returncodes=[0], stdout_path="/w/a.out", stderr_path="/w/a.err",
                    start=10.0, end=12.5, attempts=1, attempt_log=[Attempt(1, 10.0, 12.5)], worker="w0",
                    cpu_time=0.25, peak_memory=123)
    retried = TaskResult("b", TaskStatus.FAILED, returncodes=[3], stdout="out\n", stderr="boom\n", start=1.0,
                         end=9.0, attempts=2, attempt_log=[Attempt(1, 1.0, 2.0, "exit", "code 3"),
                                                           Attempt(2, 5.0, 9.0, "exit", "code 3")],
                         failure="exit", error="code 3", command="false")
    failed_once = TaskResult("c", TaskStatus.FAILED, start=1.0, end=2.0, attempts=1,
                             attempt_log=[Attempt(1, 1.0, 2.0, "timeout", "timed out after 1s")],
                             failure="timeout", error="timed out after 1s", command="sleep 9")
    skipped = TaskResult("d", TaskStatus.SKIPPED, reason="upstream 'b' failed")
    for r in (ok, retried, failed_once, skipped):
        text = result_json(r)
        assert TaskResult.from_record(json.loads(text)) == r
        assert len(text) < len(json.dumps(r.to_record()))
    assert "attempt_log" not in json.loads(result_json(ok)) and "stdout" not in json.loads(result_json(ok))
    weird = TaskResult("n\u00e9\n\"x", TaskStatus.FAILED, error="\x00\u2603 tab\t", start=float("nan"), end=1.0)
    back = TaskResult.from_record(json.loads(result_json(weird)))
    assert back.name == weird.name and back.error == weird.error and back.start is None and back.end == 1.0
