"""Truthful outcomes under faults, driver and state side: resume on every executor, what a run holds is
released on every way out, a journal that cannot be written, values that cannot be stored, fail_fast with a
gate, per-run log files, names that make paths."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import no_process_matching

import molexp
from molexp import (BatchExecutor, CheckpointError, Experiment, ExperimentExecutor, LocalTask, PythonTask,
                    StreamExecutor, TaskStatus)


def two_tasks(project, name="resumable"):
    e = Experiment(name, workdir=project)
    e.add_task(LocalTask("a", commands=["echo a >> a.log"]))
    e.add_task(LocalTask("b", commands=["echo b >> b.log"], deps=["a"]))
    return e


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("kind", ["batch", "stream", "adaptive"])
def test_resume_from_checkpoint_works_on_every_executor_and_changes_no_option(project, kind):
    e = two_tasks(project)
    ExperimentExecutor(e, progress=False, checkpoint_dir="ck").run()
    if kind == "batch":
        ex = BatchExecutor(2, work=e, progress=False)
    elif kind == "stream":
        ex = StreamExecutor(e, progress=False)
    else:
        ex = molexp.AdaptiveExecutor(e, progress=False, min_workers=1, max_workers=1)
    before = ex.config
    results = ex.resume_from_checkpoint("ck")
    assert [r.status for r in results.values()] == [TaskStatus.CACHED, TaskStatus.CACHED]
    assert ex.config == before and not ex.config.auto_resume and ex.config.checkpoint_dir is None
    assert lines(project / "a.log") == ["a"]
    if kind == "batch":   # work given to resume_from_checkpoint
        again = BatchExecutor(2, progress=False).resume_from_checkpoint("ck", work=e)
        assert again.ok and lines(project / "a.log") == ["a"]


def test_resume_from_a_path_with_no_checkpoint_is_refused(project):
    e = two_tasks(project)
    with pytest.raises(CheckpointError, match="no checkpoint to resume at no/such/dir"):
        ExperimentExecutor(e, progress=False).resume_from_checkpoint("no/such/dir")
    assert not (project / "a.log").exists() and not (project / "no").exists()


def locked_out(project) -> bool:
    """Whether another run could not take the checkpoint "ck" now."""
    try:
        ExperimentExecutor(two_tasks(project), progress=False, checkpoint_dir="ck").run()
    except molexp.CheckpointLocked:
        return True
    return False


def test_a_stream_closed_or_dropped_before_its_first_item_releases_the_checkpoint(project):
    stream = StreamExecutor(two_tasks(project), progress=False, checkpoint_dir="ck").execute_stream()
    assert locked_out(project)
    stream.close()
    assert not locked_out(project)
    stream = StreamExecutor(two_tasks(project), progress=False, checkpoint_dir="ck").execute_stream()
    del stream
    gc.collect()
    assert not locked_out(project)
    assert lines(project / "a.log") == ["a", "a"]   # the two runs of locked_out that got the checkpoint


def test_a_set_up_failure_releases_the_checkpoint(project):
    class Broken(ExperimentExecutor):
        def _backend(self):
            raise RuntimeError("no backend today")

    with pytest.raises(RuntimeError, match="no backend today"):
        Broken(two_tasks(project), progress=False, checkpoint_dir="ck").run()
    assert not locked_out(project)


def test_a_malformed_journal_record_is_a_checkpoint_error_naming_the_file(project):
    e = two_tasks(project)
    ExperimentExecutor(e, progress=False, checkpoint_dir="ck").run()
    journal = project / "ck" / "journal.jsonl"
    records = journal.read_text().splitlines()
    bad = json.loads(records[1])
    bad["result"] = {"no": "status"}
    journal.write_text("\n".join([records[0], json.dumps(bad), *records[2:]]) + "\n")
    with pytest.raises(CheckpointError, match=rf"journal {journal}: the record of task 'a' has a malformed result"):
        ExperimentExecutor(e, progress=False, checkpoint_dir="ck", auto_resume=True).run()
    assert not locked_out(project)


def _generator():
    yield 1


def test_a_value_the_checkpoint_cannot_store_fails_its_task_only(project):
    e = Experiment("unpicklable", workdir=project)
    e.add_task(PythonTask("gen", _generator))
    e.add_task(LocalTask("other", commands=["sleep 0.5", "echo done > other.txt"]))
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", checkpoint_dir="ck").run()
    assert results["gen"].status is TaskStatus.FAILED and results["gen"].failure == "exception"
    assert "cannot be stored in the checkpoint" in results["gen"].error
    assert results["other"].ok and (project / "other.txt").exists()
    again = ExperimentExecutor(e, progress=False, checkpoint_dir="ck", auto_resume=True).run()
    assert again["other"].status is TaskStatus.CACHED and again["gen"].reason == "failed last time"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_a_full_disk_under_the_checkpoint_stops_the_run_clearly_and_a_resume_finishes(project):
    ck = project / "ck"
    ck.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(ck)], check=True)
    try:
        e = Experiment("full", workdir=project)
        e.add_task(LocalTask("first", commands=["true"]))
        e.add_task(PythonTask("big", _big_value, deps=["first"]))     # 200 KB value: does not fit
        e.add_task(LocalTask("running", commands=["sleep 91.5"]))
        e.add_task(LocalTask("after", commands=["true"], deps=["big"]))
        t0 = time.monotonic()
        with pytest.raises(CheckpointError, match=rf"cannot write the checkpoint {ck}") as caught:
            ExperimentExecutor(e, progress=False, checkpoint_dir=str(ck), kill_grace=1).run()
        assert time.monotonic() - t0 < 30
        results = caught.value.results
        assert results["first"].ok and results["running"].status is TaskStatus.SKIPPED
        assert results["running"].reason.startswith("terminated while running: the checkpoint cannot be written")
        assert no_process_matching("sleep 91.5")
        recorded = [json.loads(line)["name"] for line in (ck / "journal.jsonl").read_text().splitlines()[1:]]
        assert recorded[0] == "first"
        subprocess.run(["mount", "-o", "remount,size=4m", str(ck)], check=True)
        e.graph["running"].commands = ["true"]
        done = ExperimentExecutor(e, progress=False, checkpoint_dir=str(ck), auto_resume=True).run()
        assert done.ok and done["first"].status is TaskStatus.CACHED
    finally:
        subprocess.run(["umount", "-l", str(ck)], check=False)


def _big_value():
    return os.urandom(200_000)


def test_fail_fast_starts_no_command_once_the_driver_has_seen_a_failure(project):
    gate = project / "gate"

    def open_gate(task, status):   # the driver has seen the failure: open the gate
        if task.name == "bad" and status == "failed":
            gate.touch()

    def wait_for_gate(task, context):
        deadline = time.monotonic() + 20
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    e = Experiment("gated", workdir=project)
    e.add_task(LocalTask("bad", commands=["exit 1"]))
    e.add_task(LocalTask("held", commands=["touch held-started"], condition=wait_for_gate))
    ex = ExperimentExecutor(e, progress=False, max_workers=2)
    ex.set_progress_callback(open_gate)
    results = ex.run()
    assert gate.exists() and not (project / "held-started").exists()
    assert results["held"].reason == "not started: fail_fast: task 'bad' failed"


def test_each_run_has_its_own_log_files(project):
    e = Experiment("logs", workdir=project)
    e.add_task(LocalTask("say", commands=["echo $word"]))
    one = ExperimentExecutor(e, progress=False, checkpoint_dir="ck1").run(params={"word": "first"})
    two = ExperimentExecutor(e, progress=False, checkpoint_dir="ck2").run(params={"word": "second"})
    assert one["say"].stdout_path != two["say"].stdout_path
    assert Path(one["say"].stdout_path).read_text() == "first\n" and Path(two["say"].stdout_path).read_text() == "second\n"
    assert one["say"].stdout_path.startswith(str(project / "ck1"))
    # two runs at once without a checkpoint: the second does not write into the first one's logs
    slow = Experiment("logs", workdir=project)
    slow.add_task(LocalTask("say", commands=["echo $word", "sleep 1"]))
    first = {}
    thread = threading.Thread(target=lambda: first.update(
        r=ExperimentExecutor(slow, progress=False).run(params={"word": "A"})))
    thread.start()
    time.sleep(0.3)
    second = ExperimentExecutor(e, progress=False).run(params={"word": "B"})
    thread.join()
    a, b = first["r"]["say"].stdout_path, second["say"].stdout_path
    assert a != b and Path(a).read_text() == "A\n" and Path(b).read_text() == "B\n"


def test_long_names_and_odd_experiment_names_make_safe_paths(project):
    name = "t" * 300
    e = Experiment("..", workdir=project)
    e.add_task(LocalTask(name, commands=["echo long"]))
    results = ExperimentExecutor(e, progress=False).run()
    assert results.ok and results[name].stdout == "long"
    path = results[name].stdout_path
    assert len(os.path.basename(path)) < 255 and path.startswith(str(project / ".molexp") + os.sep)
    for odd in ("../../x", "/abs/x"):
        e = Experiment(odd, workdir=project)
        e.add_task(LocalTask("t", commands=["echo odd"]))
        r = ExperimentExecutor(e, progress=False).run()
        assert os.path.dirname(os.path.dirname(r["t"].stdout_path)).startswith(str(project / ".molexp") + os.sep)


def test_the_adaptive_decision_log_is_bounded():
    import dask

    ex = molexp.AdaptiveExecutor(progress=False)
    bound = dask.config.get("distributed.admin.low-level-log-length")
    for i in range(bound + 50):
        ex._record(molexp.Decision(float(i), 0.5, 1, 1, 1, "hold"))
    assert len(ex.decisions) == bound and ex.decisions[-1].time == float(bound + 49)
