"""Short tasks travel to a cluster in bundles (one Dask task runs several members, issue 20 point 1), and each
member keeps its own semantics: outcome, retries, timeout, memory limit, cancel, progress, and a lost worker
re-runs only the members that had not finished."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from test_cluster import DaskProcesses

from molexp import Experiment, ExperimentExecutor, LocalTask, StreamExecutor, TaskStatus
from molexp.backends.bundling import ALONE, HOLD, SHORT, Bundler, family

pytestmark = pytest.mark.cluster

STEP = """\
echo "$MOLEXP_TASK" >> starts.txt
case "$MODE" in
  ok) echo "out $MOLEXP_TASK"; echo "err $MOLEXP_TASK" >&2 ;;
  fail) echo "about to fail" >&2; exit 3 ;;
  flaky) if [ ! -e "flaky-$MOLEXP_TASK" ]; then touch "flaky-$MOLEXP_TASK"; exit 1; fi ;;
  sleep) sleep 30 ;;
  memory) python3 -c "b = bytearray(400 * 2**20); import time; time.sleep(5)" ;;
  slow) sleep "$SECONDS_" ;;
esac
echo "$MOLEXP_TASK" >> ends.txt
"""


def step_tasks(project: Path, modes: dict[str, str], n: int = 40, **extra) -> Experiment:
    """``n`` tasks running the same script (one family): ``t00``... in ``MODE=ok`` unless ``modes`` says."""
    (project / "step.sh").write_text(STEP)
    e = Experiment("bundles", workdir=project)
    for i in range(n):
        name = f"t{i:02d}"
        mode = modes.get(name, "ok")
        options = {"timeout": 2} if mode == "sleep" else {}
        if mode == "memory":
            options = {"resources": {"memory": "100MB"}}
        if mode == "flaky":
            options = {"retries": 1}
        e.add_task(LocalTask(name, commands=["sh step.sh"], env={"MODE": mode, **extra}, **options))
    return e


def _bundle_keys(client, run) -> list[str]:
    from distributed import get_task_stream

    with get_task_stream(client=client) as ts:
        results = run()
    return results, [t["key"] for t in ts.data if str(t["key"]).startswith("bundle-")]


def _comparable(r):
    error = (r.error or "").split("\n")[0] if r.failure != "memory_limit" else "(measured)"
    return (r.status, r.failure, error, r.attempts, r.reason)


MODES = {"t20": "fail", "t25": "flaky", "t30": "sleep", "t35": "memory"}


def test_a_bundle_member_ends_as_it_would_alone(project, cluster_client):
    """A member that fails, is retried, times out or exceeds its memory limit: the same outcome, attempts and
    error as the same task run alone; the others complete, with their logs."""
    alone = ExperimentExecutor(step_tasks(project, MODES), client=cluster_client, progress=False,
                               fault_tolerance="continue", bundle_seconds=0).run()
    for f in project.glob("flaky-*"):
        f.unlink()
    bundled, keys = _bundle_keys(cluster_client, lambda: ExperimentExecutor(
        step_tasks(project, MODES), client=cluster_client, progress=False, fault_tolerance="continue",
        bundle_seconds=4).run())
    assert keys, "nothing was bundled"
    assert {n: _comparable(r) for n, r in bundled.items()} == {n: _comparable(r) for n, r in alone.items()}
    assert bundled["t20"].failure == "exit" and bundled["t30"].failure == "timeout"
    assert bundled["t35"].failure == "memory_limit" and bundled["t25"].ok and bundled["t25"].attempts == 2
    assert Path(bundled["t10"].stdout_path).read_text() == "out t10\n"
    assert Path(bundled["t10"].stderr_path).read_text() == "err t10\n"


def test_a_failing_member_stops_its_bundle_with_fail_fast(project, cluster_client):
    modes = {"t12": "fail", **{f"t{i:02d}": "slow" for i in range(13, 40)}}
    results, keys = _bundle_keys(cluster_client, lambda: ExperimentExecutor(
        step_tasks(project, modes, SECONDS_="0.2"), client=cluster_client, progress=False,
        bundle_seconds=4).run())
    assert keys
    assert results["t12"].failure == "exit"
    skipped = [r for r in results.values() if r.status is TaskStatus.SKIPPED]
    assert len(skipped) >= 10, results.table()
    for r in skipped:
        assert r.reason in ("not started: fail_fast: task 't12' failed",
                            "terminated while running: fail_fast: task 't12' failed"), r.reason
    # "not started" is true: such a task never ran a command (one terminated may have been at its last line)
    starts = set((project / "starts.txt").read_text().split())
    assert not starts & {r.name for r in skipped if r.reason.startswith("not started")}


def test_progress_sees_every_member_in_order(project, cluster_client):
    seen: dict[str, list] = {}
    ex = ExperimentExecutor(step_tasks(project, {}), client=cluster_client, progress=False, bundle_seconds=4)
    ex.set_progress_callback(lambda task, status: seen.setdefault(task.name, []).append(status))
    results, keys = _bundle_keys(cluster_client, ex.run)
    assert keys and results.ok
    assert seen == {f"t{i:02d}": [TaskStatus.RUNNING, TaskStatus.COMPLETED] for i in range(40)}


def test_stream_executor_yields_bundle_members_one_by_one(project, cluster_client):
    modes = {f"t{i:02d}": "slow" for i in range(40)}
    ex = StreamExecutor(step_tasks(project, modes, SECONDS_="0.05"), client=cluster_client, progress=False,
                        bundle_seconds=4)
    arrivals = []
    for result in ex.execute_stream():
        arrivals.append(time.monotonic())
        assert result.ok
    assert len(arrivals) == 40
    # results of one bundle are not delivered all at once at its end
    assert len({round(t, 2) for t in arrivals}) > 10


def test_killing_the_worker_mid_bundle_reruns_only_unfinished_members(project, tmp_path):
    (tmp_path / "dask").mkdir()
    procs = DaskProcesses(tmp_path / "dask")
    try:
        from distributed import Client

        with Client(procs.address) as client:
            pids = client.run(os.getpid)   # worker address -> pid
            seen = {}

            def kill_mid_bundle():
                ends = project / "ends.txt"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    busy = {w: ks for w, ks in client.processing().items()
                            if any(str(k).startswith("bundle-") for k in ks)}
                    if busy and ends.exists() and len(ends.read_text().split()) >= 12:
                        seen["ended"] = set(ends.read_text().split())
                        time.sleep(0.15)   # the ends seen were reported (events go within 20 ms)
                        victim = next(iter(busy))
                        seen["victim"] = victim
                        os.kill(pids[victim], signal.SIGKILL)
                        return
                    time.sleep(0.02)

            modes = {f"t{i:02d}": "slow" for i in range(40)}
            killer = threading.Thread(target=kill_mid_bundle, daemon=True)
            killer.start()
            results = ExperimentExecutor(step_tasks(project, modes, SECONDS_="0.3"), client=client,
                                         progress=False, bundle_seconds=4).run()
            killer.join(5)
    finally:
        procs.close()
    assert "victim" in seen, "no bundle was seen running"
    assert results.ok, results.table()
    starts = (project / "starts.txt").read_text().split()
    twice = {n for n in set(starts) if starts.count(n) > 1}
    assert twice, "no member ran again after the worker was killed"
    assert not twice & seen["ended"], f"finished before the kill, then run again: {sorted(twice & seen['ended'])}"
    assert set((project / "ends.txt").read_text().split()) == set(results)


# -- the policy (pure logic) ---------------------------------------------------------------------------------

class _Spec:
    def __init__(self, commands, priority=None):
        self.kind, self.isolated, self.func = "shell", False, None
        self.task = type("T", (), {"commands": commands, "priority": priority})()


def _result(name, seconds):
    from molexp.state.result import Attempt, TaskResult

    return TaskResult(name, TaskStatus.COMPLETED, attempt_log=[Attempt(1, 100.0, 100.0 + seconds)])


def test_policy_probes_a_new_family_then_bundles_it():
    specs = {f"a{i}": _Spec(["true"]) for i in range(10)}
    specs["long"] = _Spec(["sleep 60"])
    b = Bundler(specs, {}, seconds=1.0)
    assert family(specs["a0"]) == family(specs["a9"]) != family(specs["long"])
    assert [b.route(f"a{i}", threads=2) for i in range(3)] == [ALONE, ALONE, HOLD]
    b.hold((0, "a2", ()))
    assert b.observe(_result("a0", 0.01)) == [(0, "a2", ())]
    assert b.route("a3", threads=2) == SHORT
    assert b.expected("a3") == pytest.approx(0.01)
    assert b.route("long", threads=2) == ALONE     # its own probe


def test_policy_a_slow_probe_makes_the_family_long(monkeypatch):
    specs = {f"a{i}": _Spec(["work"]) for i in range(5)}
    b = Bundler(specs, {}, seconds=0.05)
    assert b.route("a0", threads=1) == ALONE and b.route("a1", threads=1) == HOLD
    b.hold((0, "a1", ()))
    time.sleep(0.1)
    assert b.expire(running=set()) == []            # the probe waits for a worker: not slow
    assert b.expire(running={"a0"}) == []           # seen running from now on
    time.sleep(0.1)
    assert b.expire(running={"a0"}) == [(0, "a1", ())]
    assert b.route("a2", threads=1) == ALONE


def test_policy_uses_recorded_durations_and_sizes_bundles():
    specs = {f"a{i}": _Spec(["x"]) for i in range(4)}
    b = Bundler(specs, {"a0": 0.001, "a1": 5.0}, seconds=1.0)
    assert b.route("a0", threads=2) == SHORT and b.route("a1", threads=2) == ALONE
    assert b.expected("a2") == pytest.approx(2.5005)   # the family's records
    assert b.bundle_size(0.001, ready=1000, threads=2) == 250     # shared among threads
    assert b.bundle_size(0.1, ready=1000, threads=2) == 10        # the time budget
    assert Bundler(specs, {}, seconds=0).enabled() is False


def test_batch_executor_window_counts_bundle_members(project):
    from distributed import Client, LocalCluster

    from molexp import BatchExecutor, TaskPool

    with LocalCluster(n_workers=1, threads_per_worker=8, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        ex = BatchExecutor(batch_size=10, progress=False, client=client, bundle_seconds=4)
        backend = {}
        make = ex._backend
        ex._backend = lambda: backend.setdefault("b", make())
        pool = TaskPool([LocalTask(f"job-{i}", commands=["sleep 0.05"]) for i in range(60)], name="jobs")
        results = ex.execute(pool)
    assert results.ok and len(results) == 60
    assert backend["b"].bundled > 0
    assert backend["b"].max_in_flight == 10   # members count: never more than the batch size in flight


def test_adaptive_executor_runs_bundles(project):
    from molexp import AdaptiveExecutor, TaskPool

    pool = TaskPool([LocalTask(f"job-{i}", commands=["true"]) for i in range(200)], name="jobs")
    ex = AdaptiveExecutor(progress=False, min_workers=1, max_workers=2, interval=0.3,
                          monitor_system_resources=False, bundle_seconds=4)
    results = ex.execute(pool)
    assert results.ok and len(results) == 200
    assert ex.backend.bundled > 0


def test_adaptive_target_counts_tasks_held_for_a_probe(project):
    """Five tasks of one new family on one single-thread worker: one probe runs alone and four wait off the
    scheduler until it has run for ``bundle_seconds``. Dask sees one task and wants one worker; molexp counts
    the five (0.5 s each, Dask's unknown duration, against a 1 s target duration) and scales up at once."""
    import dask

    from molexp import AdaptiveExecutor, TaskPool

    pool = TaskPool([LocalTask(f"job-{i}", commands=["sleep 3"]) for i in range(5)], name="jobs")
    ex = AdaptiveExecutor(progress=False, min_cluster_workers=1, max_cluster_workers=3, interval=0.2,
                          monitor_system_resources=False, bundle_seconds=2.4)
    with dask.config.set({"distributed.adaptive.target-duration": "1s"}):
        results = ex.execute(pool)
    assert results.ok and len(results) == 5
    first_start = min(r.start for r in results.values())
    up = [d for d in ex.decisions if d.action == "scale-up"]
    assert up, ex.report()
    # the held tasks are released at first_start + 2.4 s: Dask alone would not have asked before then
    assert up[0].time < first_start + 1.5, (up[0].time - first_start, ex.report())
    assert up[0].wanted >= 3, ex.report()


def test_members_target_counts_each_member_as_dask_counts_a_task():
    from molexp.backends.adaptive_policy import members_target

    assert members_target([], 5, 1) == 0
    assert members_target([0.5] * 5, 1, 1) == 3           # 2.5 s of work for a 1 s target
    assert members_target([0.01] * 1000, 5, 1) == 2       # 10 s: what 1000 tasks sent alone would ask
    assert members_target([0.01] * 1000, 5, 2) == 1       # two threads per worker
    assert members_target([60.0] * 2, 1, 1) == 2          # never more threads than tasks
    assert members_target([0.001], 5, 1) == 1


def test_a_function_the_workers_cannot_import_fails_each_member_clearly(project, cluster_client, monkeypatch):
    """The tasks' function lives in a module only the driver can import: every task fails, alone or from a
    bundle, with the message a task run alone gives (and nothing hangs waiting for a probe)."""
    from molexp import PythonTask

    (project / "only_here.py").write_text("def work():\n    return 1\n")
    monkeypatch.syspath_prepend(str(project))
    import only_here

    e = Experiment("unloadable", workdir=project)
    for i in range(30):
        e.add_task(PythonTask(f"w{i:02d}", only_here.work))
    # durations recorded by an "earlier run": the tasks are known to be short and go straight into bundles
    (project / ".molexp" / "unloadable").mkdir(parents=True)
    (project / ".molexp" / "unloadable" / "durations.json").write_text(
        json.dumps({f"w{i:02d}": 0.001 for i in range(30)}))
    results, keys = _bundle_keys(cluster_client, lambda: ExperimentExecutor(
        e, client=cluster_client, progress=False, fault_tolerance="continue", bundle_seconds=4).run())
    assert keys, "nothing was bundled"
    assert len(results) == 30
    for r in results.values():
        assert r.status is TaskStatus.FAILED and f"cannot load task {r.name!r} on this worker" in r.error, r
