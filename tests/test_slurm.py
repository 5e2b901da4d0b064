"""molexp on a real single-node SLURM (ci/slurm-up.sh) through dask-jobqueue."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import dedent

from molexp import AdaptiveExecutor, Experiment, ExperimentExecutor, LocalTask, TaskGraph

pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(shutil.which("sbatch") is None,
                                 reason="sbatch not on PATH: no SLURM available (start one with ci/slurm-up.sh)")]


def jobs_in_queue() -> int:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout
    return len(out.split())


def wait_for_empty_queue(timeout=90.0) -> bool:
    deadline = time.monotonic() + timeout
    while jobs_in_queue():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture
def slurm_cluster(tmp_path):
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(cores=1, processes=1, memory="1GB", walltime="00:10:00", interface="lo",
                           scheduler_options={"dashboard_address": ":0"}, log_directory=str(tmp_path / "logs"),
                           local_directory=str(tmp_path / "scratch"))
    yield cluster
    cluster.close()
    subprocess.run(["scancel", "--name", "dask-worker"], timeout=30)
    wait_for_empty_queue()


def fan(project, n=8, seconds=0.3) -> Experiment:
    e = Experiment("on-slurm", workdir=project)
    e.add_task(LocalTask("prepare", commands=["echo ready > ready.txt"]))
    for i in range(n):
        e.add_task(LocalTask(f"sim-{i}", commands=["cat ready.txt", f"sleep {seconds}", "hostname"],
                             deps=["prepare"]))
    e.add_task(LocalTask("collect", commands=["echo collected"], deps=[f"sim-{i}" for i in range(n)]))
    return e


def test_experiment_runs_through_a_slurm_cluster_of_two_jobs(project, slurm_cluster):
    slurm_cluster.scale(jobs=2)
    seen = []
    watcher = threading.Thread(target=lambda: [seen.append(jobs_in_queue()) or time.sleep(0.3) for _ in range(20)],
                               daemon=True)
    watcher.start()
    results = ExperimentExecutor(fan(project), cluster=slurm_cluster, progress=False).run()
    watcher.join()
    assert results.ok, results.table()
    assert max(seen) == 2
    workers = {r.worker for r in results.values()}
    assert 1 <= len(workers) <= 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)


def test_molexp_run_cluster_slurm(project):
    (project / "exp.yaml").write_text(dedent("""
        name: cli-slurm
        tasks:
          - {type: shell, name: a, commands: ["echo a"]}
          - {type: shell, name: b, deps: [a], commands: ["echo b from $$(hostname)"]}
        """))
    p = subprocess.run([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--no-progress", "--cluster", "slurm",
                        "--jobs", "2", "--cores", "1", "--memory", "1GB", "--walltime", "00:10:00",
                        "--interface", "lo"], cwd=project, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "dashboard:" in p.stderr
    assert p.stdout.splitlines()[-1].startswith("2 completed")
    assert wait_for_empty_queue()  # molexp closed the cluster it made: no job left behind


def test_adaptive_scales_jobs_from_zero_and_back(project, slurm_cluster):
    g = TaskGraph()
    for i in range(8):
        g.add_task(LocalTask(f"work-{i}", commands=["sleep 1"]))
    counts: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            counts.append(jobs_in_queue())
            time.sleep(0.3)

    assert jobs_in_queue() == 0
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ex = AdaptiveExecutor(cluster=slurm_cluster, progress=False, min_workers=0, max_workers=2, interval=0.5)
    results = ex.execute(g)
    assert results.ok, results.table()
    try:
        assert wait_for_empty_queue(60)  # idle: adapt retires every job
    finally:
        stop.set()
        watcher.join()
    counts.append(jobs_in_queue())
    assert counts[0] == 0 and max(counts) >= 1 and counts[-1] == 0, counts
    assert any(d.action == "scale-up" for d in ex.decisions)


# -- starting a cluster truthfully: Ctrl-C, sbatch failures, jobs that never start ----------------------------

REPO = Path(__file__).resolve().parents[1]
SLURMCTLD_PID = Path("/run/slurm/slurmctld.pid")


def molexp_env(project: Path | None = None) -> dict:
    """The environment of a ``molexp`` subprocess (and so of its sbatch jobs): this checkout first, and Dask's
    scratch space (the scheduler's, in the molexp process) under ``project``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if project is not None:
        env["DASK_TEMPORARY_DIRECTORY"] = str(project / "dask-tmp")
    return env


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def jobs_named(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30).stdout
    return re.search(r"JobState=(\S+)", out).group(1)


def processes_with(fragment: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            line = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if fragment in line:
            found.append(f"{p.pid}: {line}")
    return found


@pytest.fixture
def job_name():
    """A unique job name for this test's worker jobs; whatever the test's outcome, none is left queued."""
    name = f"molexp-{uuid.uuid4().hex[:8]}"
    yield name
    if jobs_named(name):
        subprocess.run(["scancel", "--name", name], timeout=30)
        wait_until(lambda: not jobs_named(name), 60, f"jobs named {name} cancelled")


def cluster_yaml(project: Path, name: str, tasks: str) -> None:
    """An experiment file whose worker jobs are called ``name`` and keep their files under ``project``
    (so a worker of this test shows ``project`` on its command line)."""
    (project / "exp.yaml").write_text(dedent(f"""
        name: start-test
        cluster:
          options: {{job_name: {name}, log_directory: {project / 'logs'}, local_directory: {project / 'scratch'}}}
        tasks:
        """) + dedent(tasks))


def molexp_run(project: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--no-progress",
                             "--no-checkpoint", "--cluster", "slurm", "--cores", "1", "--memory", "1GB",
                             "--walltime", "00:10:00", "--interface", "lo", *flags],
                            cwd=project, env=molexp_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(p: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"molexp run did not end within {timeout}s\nstdout:\n{out}\nstderr:\n{err}")


def error_line(stderr: str) -> str:
    """The one line molexp printed for a cluster error (and nothing of a traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("molexp: cluster error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_nothing_left(project: Path, job_name: str) -> None:
    wait_until(lambda: not jobs_named(job_name), 30, f"squeue still lists the jobs named {job_name}")
    wait_until(lambda: not processes_with(str(project / "scratch")), 30, "a dask worker of this test is alive")


def test_importing_dask_jobqueue_through_molexp_keeps_python_sigint_handling():
    code = dedent("""
        import signal
        from molexp.backends.cluster_start import import_jobqueue
        import_jobqueue()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)
        import dask_jobqueue   # already imported: nothing changes
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        print("kept")
        """)
    p = subprocess.run([sys.executable, "-c", code], env=molexp_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "kept", p.stderr
    # and the import by itself does replace it (else the test above says nothing)
    p = subprocess.run([sys.executable, "-c", "import signal, dask_jobqueue; "
                        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "False", p.stderr
    # imported first by someone else (a workflow file): molexp puts Python's handler back when it needs it
    code = dedent("""
        import signal
        import dask_jobqueue
        from molexp.backends.cluster_start import import_jobqueue
        import_jobqueue()
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """)
    p = subprocess.run([sys.executable, "-c", code], env=molexp_env(), capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "True", p.stderr


@pytest.mark.parametrize("given", ["soon", "-5s", "0", True])
def test_start_timeout_is_validated(given):
    from molexp.backends.cluster import make_cluster
    from molexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"start_timeout \(--start-timeout\) expects .* got "):
        make_cluster({"type": "slurm", "start_timeout": given})


@pytest.mark.parametrize("given, seconds", [(None, 300.0), ("20s", 20.0), ("10m", 600.0), ("2 hours", 7200.0),
                                             (45, 45.0), ("none", None)])
def test_start_timeout_accepts_dask_durations(given, seconds):
    from molexp.backends.cluster_start import parse_start_timeout

    assert parse_start_timeout(given) == seconds


def test_molexp_run_start_timeout_flag_is_validated(project):
    (project / "exp.yaml").write_text("name: x\ntasks:\n  - {type: shell, name: a, commands: ['true']}\n")
    p = subprocess.run([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--cluster", "slurm",
                        "--start-timeout", "soon"], cwd=project, env=molexp_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert "start_timeout (--start-timeout) expects a duration such as '90s', '10m' or '2h' (or 'none'), got " \
           "'soon'" in p.stderr


@pytest.mark.parametrize("flags, options, said", [
    (["--interface", "no-such-if"], "{}", "'no-such-if' is not a valid network interface"),
    ([], "{no_such_option: 1}", "Got unexpected keyword argument 'no_such_option'.")])
def test_arguments_the_cluster_refuses_are_one_line_exit_2(project, flags, options, said):
    (project / "exp.yaml").write_text(f"name: x\ncluster: {{options: {options}}}\n"
                                      "tasks:\n  - {type: shell, name: a, commands: ['true']}\n")
    p = subprocess.run([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--cluster", "slurm", *flags],
                       cwd=project, env=molexp_env(project), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if ln.startswith("molexp: error:")]
    assert line.startswith("molexp: error: cluster: SLURMCluster refused its arguments (the cluster spec and its "
                           "'options'): ") and said in line, line


def test_ctrl_c_of_molexp_run_cluster_slurm_exits_130_and_cancels_the_job(project, job_name):
    marker = f"sleep {uuid.uuid4().int % 900000 + 100000}"
    cluster_yaml(project, job_name, f"""
          - {{type: shell, name: long, commands: ["touch started", "{marker}"]}}
          - {{type: shell, name: after, deps: [long], commands: ["echo after"]}}
        """)
    p = molexp_run(project, "--start-timeout", "120s")
    try:
        wait_until(lambda: (project / "started").exists() or p.poll() is not None, 150, "the task started")
        assert p.poll() is None, finish(p, 10)
        jobs = jobs_named(job_name)
        assert len(jobs) == 1 and job_state(jobs[0]) == "RUNNING", jobs
        wait_until(lambda: processes_with(marker), 30, f"{marker} is running on the node")
        p.send_signal(signal.SIGINT)
        out, err = finish(p, 60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    # the running task says so (starts are reported on every backend); its dependent never started
    assert re.search(r"^long\s+skipped.*interrupted while running", out, re.M), out
    assert re.search(r"^after\s+skipped.*(not started|upstream)", out, re.M), out
    assert "0 completed" in out.splitlines()[-1], out
    assert "interrupted" in err
    wait_until(lambda: not processes_with(marker), 20, f"{marker} outlived the run")
    wait_until(lambda: not jobs_named(job_name), 20, f"job {jobs[0]} still in squeue after molexp exited")
    assert job_state(jobs[0]) == "CANCELLED"   # closed by molexp (scancel), not ended by itself
    assert_nothing_left(project, job_name)


def test_sbatch_error_ends_the_run_with_exit_3_and_its_message(project, job_name):
    cluster_yaml(project, job_name, """
          - {type: shell, name: a, commands: ["echo a"]}
        """)
    p = molexp_run(project, "--queue", "no-such-partition", "--start-timeout", "60s")
    out, err = finish(p, 90)
    assert p.returncode == 3, err
    line = error_line(err)
    assert "no worker job could be submitted: sbatch: error:" in line and "Invalid partition name" in line, line
    assert out == ""
    assert_nothing_left(project, job_name)


def slurmctld_pid() -> int | None:
    try:
        pid = int(SLURMCTLD_PID.read_text())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


def controller_up() -> bool:
    out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30).stdout
    return "is UP" in out


def node_ready() -> bool:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout
    return any(s.startswith(("idle", "mixed", "allocated")) for s in out.split())


@pytest.fixture
def controller_down():
    """slurmctld stopped (by its pid file) for the test, started again afterwards with its saved state (so
    jobs of others survive: ci/slurm-up.sh would start it clean)."""
    pid = slurmctld_pid()
    if os.geteuid() != 0 or pid is None:
        pytest.skip("stopping slurmctld needs root and the SLURM of ci/slurm-up.sh (its pid file)")
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
                   "slurmctld stopped")
        yield
    finally:
        if slurmctld_pid() is None:
            subprocess.run(["slurmctld"], timeout=60, check=True)
        wait_until(controller_up, 60, "slurmctld answers again")
        wait_until(node_ready, 60, "the node is usable again")


def test_controller_down_ends_the_run_with_exit_3_and_sbatchs_error(project, job_name, controller_down):
    cluster_yaml(project, job_name, """
          - {type: shell, name: a, commands: ["echo a"]}
        """)
    p = molexp_run(project, "--start-timeout", "20s")
    out, err = finish(p, 20 + 40)   # the timeout, plus a little
    assert p.returncode == 3, err
    line = error_line(err)
    assert "sbatch: error: Batch job submission failed: Unable to contact slurm controller" in line, line
    assert processes_with(str(project / "scratch")) == []
    assert out == ""


def test_a_job_that_never_starts_ends_the_run_with_exit_3_and_its_state(project, job_name):
    cluster_yaml(project, job_name, """
          - {type: shell, name: a, commands: ["echo a"]}
        """)
    p = molexp_run(project, "--cores", "64", "--start-timeout", "8s")   # the node has 4 CPUs
    _, err = finish(p, 8 + 40)
    assert p.returncode == 3, err
    line = error_line(err)
    found = re.search(r"no Dask worker joined within 8s \(start_timeout, --start-timeout\): job (\d+) is "
                      r"PENDING \(\w+\)", line)
    assert found, line
    assert_nothing_left(project, job_name)
    assert job_state(found.group(1)) == "CANCELLED"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_waiting_for_the_first_worker_cancels_the_job(project, job_name, sig):
    cluster_yaml(project, job_name, """
          - {type: shell, name: a, commands: ["echo a"]}
        """)
    p = molexp_run(project, "--cores", "64", "--start-timeout", "120s")   # pending: the node has 4 CPUs
    try:
        wait_until(lambda: jobs_named(job_name) or p.poll() is not None, 60, "the job was submitted")
        assert p.poll() is None, finish(p, 10)
        [job] = jobs_named(job_name)
        p.send_signal(sig)
        _, err = finish(p, 60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # ended by the signal, or with its conventional exit code (128 + signal number)
    assert p.returncode in (-sig, 128 + sig), (p.returncode, err)
    assert_nothing_left(project, job_name)
    assert job_state(job) == "CANCELLED"
