"""A real `dask scheduler` and two `dask worker` processes on 127.0.0.1: running through address=,
surviving a killed worker, and a clear error (then a resume) when the scheduler dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import leftovers
import pytest
import taskfuncs

from molexp import ClusterError, Experiment, ExperimentExecutor, LocalTask, PythonTask, TaskStatus

pytestmark = pytest.mark.cluster
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


class DaskProcesses:
    """`dask scheduler` + `dask worker` processes, each in its own process group."""

    def __init__(self, directory: Path, workers: int = 2, env: dict | None = None, worker_args=()):
        self.directory, self.env = directory, {**os.environ, **(env or {})}
        self.worker_args = list(worker_args)
        self.shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
        self.file = directory / "scheduler.json"
        self.scheduler = self._spawn(DASK + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                             "--scheduler-file", str(self.file)], "scheduler")
        deadline = time.monotonic() + 30
        while not self.file.exists() or not self.file.read_text().strip():
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [self.start_worker(i) for i in range(workers)]
        from distributed import Client

        with Client(self.address, timeout="20s") as c:
            c.wait_for_workers(workers, timeout=60)

    def _spawn(self, argv, name):
        with open(self.directory / f"{name}.log", "wb") as log:   # the process keeps its own copy
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def start_worker(self, i):
        return self._spawn(WORKER + [self.address, "--nthreads", "2", "--host", "127.0.0.1", "--no-dashboard",
                                     "--name", f"w{i}", *self.worker_args], f"worker{i}")

    def close(self):
        leftovers.stop_groups([*self.workers, self.scheduler], shm_before=self.shm_before)


@pytest.fixture
def dask_processes(tmp_path):
    procs = DaskProcesses(tmp_path)
    yield procs
    procs.close()


def chains(project, n_chains=4, length=5, seconds=0.3):
    e = Experiment("chains", workdir=project)
    for c in range(n_chains):
        for i in range(length):
            e.add_task(LocalTask(f"c{c}-{i}", commands=["echo $MOLEXP_TASK >> started.txt", f"sleep {seconds}",
                                                       "echo $MOLEXP_TASK >> done.txt"],
                                 deps=[f"c{c}-{i - 1}"] if i else []))
    return e


def test_runs_through_a_scheduler_address(project, dask_processes):
    results = ExperimentExecutor(chains(project, seconds=0.05), address=dask_processes.address,
                                 progress=False).run()
    assert results.ok and len(results) == 20
    assert {r.worker for r in results.values()} <= _worker_addresses(dask_processes.address)


def _worker_addresses(address):
    from distributed import Client

    with Client(address) as c:
        return set(c.scheduler_info()["workers"])


def test_a_worker_killed_mid_run_does_not_lose_tasks(project, dask_processes):
    import threading

    from distributed import Client

    with Client(dask_processes.address) as c:
        pids = list(c.run(os.getpid).values())   # the worker processes (their nannies restart them)

    def kill_a_worker_once_busy():
        done = project / "done.txt"
        while not done.exists() or len(done.read_text().split()) < 4:
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_once_busy, daemon=True)
    killer.start()
    results = ExperimentExecutor(chains(project), address=dask_processes.address, progress=False).run()
    killer.join(5)
    assert results.ok, results.table()
    assert len(results) == 20 and all(r.status is TaskStatus.COMPLETED for r in results.values())
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE  # it died


def _recorded_completed(journal: Path) -> set[str]:
    if not journal.exists():
        return set()
    names = set()
    for line in journal.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:   # a line being written
            continue
        if rec.get("status") == "completed":
            names.add(rec["name"])
    return names


def test_tasks_recorded_before_a_worker_is_killed_never_run_again(project, dask_processes):
    """SIGKILL of a worker holding finished tasks whose dependents have not run yet: Dask would compute those
    keys again; molexp gives tasks their upstream results as data, so nothing recorded runs twice."""
    import threading

    from distributed import Client

    with Client(dask_processes.address) as c:
        pids = c.run(os.getpid)   # worker address -> pid
    journal = project / "ck" / "journal.jsonl"
    seen: dict[str, set] = {}

    def kill_a_worker_once_tasks_are_recorded():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recorded = _recorded_completed(journal)
            if len(recorded) >= 6:
                break
            time.sleep(0.02)
        records = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        workers = {r["name"]: r["result"].get("worker") for r in records if r.get("status") == "completed"}
        victim = next(w for w in workers.values() if w in pids)
        seen["recorded"] = set(workers)
        seen["on_victim"] = {n for n, w in workers.items() if w == victim}
        os.kill(pids[victim], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_once_tasks_are_recorded, daemon=True)
    killer.start()
    results = ExperimentExecutor(chains(project, n_chains=4, length=6, seconds=0.2), address=dask_processes.address,
                                 progress=False, checkpoint_dir="ck").run()
    killer.join(5)
    assert results.ok, results.table()
    runs = (project / "done.txt").read_text().split()
    assert seen["on_victim"], "the killed worker had run nothing recorded"
    twice = sorted(n for n in seen["recorded"] if runs.count(n) != 1)
    assert not twice, f"recorded as completed, then executed again: {twice}"
    assert all(runs.count(n) >= 1 for n in results)


def test_a_value_that_cannot_be_sent_back_fails_its_task_only(project, dask_processes):
    e = Experiment("unpicklable", workdir=project)
    e.add_task(PythonTask("gen", taskfuncs.make_generator))
    e.add_task(PythonTask("after", taskfuncs.identity, kwargs={"x": 1}, deps=["gen"]))
    e.add_task(LocalTask("other", commands=["sleep 0.5", "echo done > other.txt"]))
    results = ExperimentExecutor(e, address=dask_processes.address, progress=False,
                                 fault_tolerance="continue").run()
    gen = results["gen"]
    assert gen.status is TaskStatus.FAILED and gen.failure == "exception", results.table()
    assert "cannot be sent back from the worker" in gen.error and "generator" in gen.error
    assert results["after"].status is TaskStatus.SKIPPED and results["after"].reason == "upstream 'gen' failed"
    assert results["other"].ok and (project / "other.txt").read_text() == "done\n"


def test_a_task_that_kills_its_workers_fails_as_lost_worker(project, tmp_path):
    (tmp_path / "cl").mkdir()
    procs = DaskProcesses(tmp_path / "cl", env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    try:
        e = Experiment("killer", workdir=project)
        e.add_task(PythonTask("killer", taskfuncs.kill_own_process))
        e.add_task(LocalTask("after", commands=["true"], deps=["killer"]))
        results = ExperimentExecutor(e, address=procs.address, progress=False, fault_tolerance="continue").run()
    finally:
        procs.close()
    killer = results["killer"]
    assert killer.status is TaskStatus.FAILED and killer.failure == "lost_worker"
    assert "'killer'" in killer.error and "workers that died" in killer.error
    assert results["after"].status is TaskStatus.SKIPPED and "killer" in results["after"].reason


def test_scheduler_killed_mid_run_is_a_clear_error_and_resume_completes(project, tmp_path):
    (tmp_path / "first").mkdir()
    first = DaskProcesses(tmp_path / "first")
    e = chains(project, n_chains=2, length=10, seconds=0.2)
    import threading

    running: list[str] = []

    def words(name):
        path = project / name
        return path.read_text().split() if path.exists() else []

    def kill_scheduler_when_half_done():
        # once 6 tasks are done, when a task has been running for 0.1 s (its start reported by then), of 0.2 s
        while True:
            done = words("done.txt")
            going = [n for n in words("started.txt") if n not in done]
            if len(done) >= 6 and going:
                time.sleep(0.1)
                if going[0] not in words("done.txt"):
                    running.append(going[0])
                    break
            time.sleep(0.01)
        os.killpg(first.scheduler.pid, signal.SIGKILL)

    threading.Thread(target=kill_scheduler_when_half_done, daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(ClusterError, match="lost the connection to the Dask scheduler") as lost:
            ExperimentExecutor(e, address=first.address, progress=False, checkpoint_dir="ck").run()
        assert time.monotonic() - t0 < 60
    finally:
        first.close()
    # every task has an outcome, and none that started claims it did not
    said = lost.value.results
    assert set(said) == set(e.tasks)
    started = set((project / "started.txt").read_text().split())
    for name, r in said.items():
        if r.reason and r.reason.startswith("not started"):
            assert name not in started, (name, r.reason)
    assert said[running[0]].reason.startswith("stopped while running: lost the connection"), said[running[0]]
    from molexp.state.journal import read_state

    recorded = {n for n, r in read_state(project / "ck")["records"].items() if r["status"] == "completed"}
    assert 3 <= len(recorded) < 20  # what reached the driver before the kill (a task may finish unseen)
    (tmp_path / "second").mkdir()
    second = DaskProcesses(tmp_path / "second")
    try:
        results = ExperimentExecutor(e, address=second.address, progress=False).resume_from_checkpoint("ck")
    finally:
        second.close()
    assert results.ok
    assert {n for n, r in results.items() if r.status is TaskStatus.CACHED} == recorded
    assert set((project / "done.txt").read_text().split()) == set(results)


def test_a_function_workers_cannot_import_fails_its_task_clearly(project, dask_processes, monkeypatch):
    (project / "client_side").mkdir()  # not the workers' current directory, so not on their path
    (project / "client_side" / "only_on_the_client.py").write_text("def compute():\n    return 42\n")
    monkeypatch.syspath_prepend(str(project / "client_side"))
    import only_on_the_client

    e = Experiment("imports", workdir=project)
    e.add_task(PythonTask("compute", only_on_the_client.compute))
    e.add_task(LocalTask("shell", commands=["true"]))
    results = ExperimentExecutor(e, address=dask_processes.address, progress=False,
                                 fault_tolerance="continue").run()
    r = results["compute"]
    assert r.status is TaskStatus.FAILED and r.failure == "error"
    assert "cannot load task 'compute' on this worker" in r.error and "only_on_the_client" in r.error
    assert results["shell"].ok


def test_workers_watch_a_runs_cancel_flag_only_while_it_runs(project, dask_processes):
    """A worker learns of a cancel from one thread per run waiting on the run's Dask Event (the tasks never ask
    the scheduler themselves); once the run is over, those threads stop and the scheduler forgets the event."""
    from distributed import Client

    e = Experiment("watch", workdir=project)
    e.add_task(LocalTask("first", commands=["true"]))
    e.add_task(PythonTask("threads", taskfuncs.thread_names, deps=["first"]))
    with Client(dask_processes.address, timeout="20s") as client:
        results = ExperimentExecutor(e, progress=False, client=client).run()
        assert results.ok and "molexp-cancel-watch" in results["threads"].value
        def watching():
            return any("molexp-cancel-watch" in names for names in client.run(taskfuncs.thread_names).values())

        deadline = time.monotonic() + 10
        while watching() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not watching()
        assert client.run_on_scheduler(taskfuncs.cancel_events) == []
    dask_processes.close()
    assert "ERROR" not in (dask_processes.directory / "scheduler.log").read_text()


def test_molexp_run_losing_its_scheduler_prints_the_table_and_one_line(project, tmp_path):
    """`molexp run --address` and the scheduler killed mid-run: exit 3, the table (running tasks say they
    were stopped while running), one line on stderr and none of Dask's tracebacks or reconnection logs."""
    (tmp_path / "cl").mkdir()
    procs = DaskProcesses(tmp_path / "cl")
    (project / "exp.yaml").write_text(
        "name: lose\n"
        "tasks:\n"
        "  - {name: long, type: shell, commands: ['touch long-started', 'sleep 120']}\n"
        "  - {name: quick, type: shell, commands: ['true']}\n"
        "  - {name: after, type: shell, commands: ['true'], deps: [long]}\n")
    try:
        run = subprocess.Popen([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--address", procs.address,
                                "--no-progress"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        deadline = time.monotonic() + 60
        while not (project / "long-started").exists():
            assert time.monotonic() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.05)
        time.sleep(1.0)   # the start event reaches the driver
        os.killpg(procs.scheduler.pid, signal.SIGKILL)
        out, err = run.communicate(timeout=90)
    finally:
        procs.close()
    assert run.returncode == 3, (out, err)
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "stopped while running: lost the connection" in rows["long"], out
    assert "completed" in rows["quick"] and "not started" in rows["after"] or "upstream" in rows["after"], out
    lines = [x for x in err.splitlines() if x.strip()]
    assert "Traceback" not in err and "Failed to reconnect" not in err, err
    assert [x for x in lines if x.startswith("molexp: cluster error: lost the connection")], err


def test_adaptive_reads_the_memory_of_the_workers_not_the_drivers_machine(project, tmp_path):
    """On a cluster that is not a LocalCluster the adaptive executor reads each worker's memory against its
    memory limit, from the scheduler: a task holding 300 MB in a 600 MB worker throttles submissions, though
    this machine's memory is far from the threshold; once it is freed, submissions are released again."""
    from molexp import AdaptiveExecutor

    machine = psutil.virtual_memory().percent / 100
    assert machine < 0.45, "this test needs a machine whose memory is less than 45 % used"
    procs = DaskProcesses(tmp_path, workers=2, worker_args=["--memory-limit", "600MB", "--nthreads", "1"])
    try:
        e = Experiment("memory", workdir=str(project))
        for i in range(4):
            e.add_task(PythonTask(f"hold{i}", taskfuncs.hold_memory, kwargs={"mb": 300, "seconds": 2.5}))
        for i in range(6):   # ready once the memory is freed: submitted after readings back under the threshold
            e.add_task(PythonTask(f"after{i}", taskfuncs.pause, kwargs={"seconds": 0.3},
                                  deps=[f"hold{j}" for j in range(4)]))
        with AdaptiveExecutor(e, address=procs.address, progress=False, memory_threshold=0.5, interval=0.2) as ex:
            results = ex.execute()
        assert results.ok, results.table()
        throttles = [d for d in ex.decisions if d.action == "throttle"]
        assert throttles, ex.report()
        assert all(d.memory >= 0.5 and d.source in ("worker w0", "worker w1") for d in throttles), ex.report()
        assert any(d.action == "release" for d in list(ex.decisions)[ex.decisions.index(throttles[0]):]), ex.report()
        held_back = [s for s in ex.backend.submissions if s[2] == 1]
        assert held_back and all(in_flight <= 1 for _, in_flight, _ in held_back)
    finally:
        procs.close()
