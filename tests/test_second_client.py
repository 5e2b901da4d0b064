"""A run on one client is not tied to another client of the process.

``distributed.as_completed`` tracks futures on ``default_client()``'s event loop unless told otherwise, and the
default client is the newest one of the process: a second client the user opened, or one left open whose
scheduler has gone away (it closes itself after failing to reconnect). When that client closed while a run
was in flight, its loop stopped with the run's futures on it and the run never ended; in the full test suite
the clients left open by the clusters page did this to the StreamExecutor test about once in three runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from molexp import (AdaptiveExecutor, BatchExecutor, ExperimentExecutor, LocalTask, StreamExecutor, TaskGraph,
                    TaskStatus)

EXECUTORS = {
    "batch": lambda client: BatchExecutor(batch_size=1, client=client),           # incremental submission
    "adaptive": lambda client: AdaptiveExecutor(client=client, adjust_parallelism=False),  # incremental, throttled
    "stream": lambda client: StreamExecutor(client=client),
    "experiment": lambda client: ExperimentExecutor(client=client),
}


def gated(go: Path) -> TaskGraph:
    """``gate`` runs until ``go`` exists; ``after`` and ``last`` are submitted once it has finished."""
    g = TaskGraph()
    g.add_task(LocalTask("gate", commands=[f"while [ ! -e {go} ]; do sleep 0.05; done"]))
    g.add_task(LocalTask("other", commands=["true"]))
    g.add_task(LocalTask("after", commands=["true"], deps=["gate"]))
    g.add_task(LocalTask("last", commands=["true"], deps=["after", "other"]))
    return g


@pytest.mark.parametrize("kind", list(EXECUTORS))
def test_a_newer_client_closing_mid_run_does_not_hang_it(project, local_cluster, cluster_client, kind):
    from distributed import Client

    other = Client(local_cluster.scheduler_address)  # newer than cluster_client: the process's default client
    assert other.loop is not cluster_client.loop
    ex = EXECUTORS[kind](cluster_client).configure(progress=False)
    started = threading.Event()
    ex.set_progress_callback(lambda task, status: task.name == "gate" and status is TaskStatus.RUNNING
                             and started.set())
    outcome = {}

    def run():
        try:
            outcome["results"] = ex.execute(gated(project / "go"))
        except BaseException as e:  # noqa: BLE001  (reported below)
            outcome["error"] = e

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        assert started.wait(60), "the gate task never started"
        other.close()  # its event loop stops, while the run waits for futures
        (project / "go").touch()
        runner.join(60)
        assert not runner.is_alive(), "the run hangs once another client of the process has closed"
    finally:
        (project / "go").touch()
        other.close()
    assert "error" not in outcome, outcome.get("error")
    assert {n: r.status.value for n, r in outcome["results"].items()} == dict.fromkeys(
        ["gate", "other", "after", "last"], "completed")
