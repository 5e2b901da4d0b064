"""Smoke tests for the real single-node SLURM started by ``ci/slurm-up.sh``.

Run with the environment's Python (SLURM job scripts written by dask-jobqueue
start workers with ``sys.executable``)::

    sudo ci/slurm-up.sh
    python -m pytest tests/test_slurm_infra.py -v
    sudo ci/slurm-down.sh
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        shutil.which("sbatch") is None,
        reason="sbatch not on PATH: no SLURM available (start one with ci/slurm-up.sh)",
    ),
]

JOB_TIMEOUT = 60.0  # seconds


def _run(*args: str) -> str:
    return subprocess.run(
        list(args), check=True, capture_output=True, text=True, timeout=30
    ).stdout


def _queued_job_ids() -> set[str]:
    """Ids of jobs still in the queue (pending/running/completing...)."""
    return set(_run("squeue", "-h", "-o", "%i").split())


def _job_state(job_id: str) -> str:
    out = _run("scontrol", "show", "job", "-o", job_id)
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    raise AssertionError(f"no JobState in scontrol output: {out!r}")


def _wait_until_gone(job_ids: set[str], timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    left = job_ids & _queued_job_ids()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = job_ids & _queued_job_ids()
    assert not left, f"jobs still in squeue after {timeout}s: {sorted(left)}"


def _scancel(job_ids: set[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *sorted(job_ids)], check=False, timeout=30)


def test_sbatch_wrap_job_runs_and_writes_file(tmp_path: Path) -> None:
    out_file = tmp_path / "result.txt"
    job_id = _run(
        "sbatch",
        "--parsable",
        "--job-name=molexp-infra-wrap",
        f"--chdir={tmp_path}",
        f"--output={tmp_path / 'slurm-%j.out'}",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--mem=100M",
        "--time=00:05:00",
        f"--wrap=echo hello-from-slurm > {out_file}",
    ).strip().split(";")[0]
    assert job_id.isdigit(), job_id

    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        state = _job_state(job_id)
        while state not in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                            "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}:
            assert time.monotonic() < deadline, (
                f"job {job_id} not finished after {JOB_TIMEOUT}s (state {state})"
            )
            time.sleep(0.2)
            state = _job_state(job_id)
    finally:
        _scancel({job_id} & _queued_job_ids())

    assert state == "COMPLETED", state
    assert out_file.read_text().strip() == "hello-from-slurm"
    _wait_until_gone({job_id})


def test_dask_jobqueue_slurmcluster_runs_workers(tmp_path: Path) -> None:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    job_ids: set[str] = set()
    cluster = SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        interface="lo",
        walltime="00:10:00",
        job_name="molexp-infra-dask",
        log_directory=str(tmp_path),
        local_directory=str(tmp_path),
        scheduler_options={"dashboard_address": ":0"},
    )
    try:
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            job_ids = {
                str(job.job_id)
                for job in cluster.workers.values()
                if getattr(job, "job_id", None)
            }
            assert len(job_ids) == 2, job_ids
            assert job_ids <= _queued_job_ids()

            assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
            squares = client.gather(client.map(lambda x: x * x, range(10)))
            assert sum(squares) == 285
            assert len(client.scheduler_info()["workers"]) == 2
    finally:
        cluster.close()
        try:
            _wait_until_gone(job_ids)
        finally:
            _scancel(job_ids & _queued_job_ids())
