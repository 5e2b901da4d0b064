"""molexp on a real single-node SLURM (ci/slurm-up.sh) through dask-jobqueue."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

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
    assert results.ok
    try:
        assert wait_for_empty_queue(60)  # idle: adapt retires every job
    finally:
        stop.set()
        watcher.join()
    counts.append(jobs_in_queue())
    assert counts[0] == 0 and max(counts) >= 1 and counts[-1] == 0, counts
    assert any(d.action == "scale-up" for d in ex.decisions)
