"""Running experiments: results, logs, Python values, failures, and the same outcome on every Dask target."""

from __future__ import annotations

import os
from pathlib import Path

import taskfuncs

from molexp import (Experiment, ExperimentExecutor, FailureKind, LocalTask, PythonTask, Results, TaskResult,
                    TaskStatus, current_task, task)


def small_experiment(workdir) -> Experiment:
    e = Experiment("basics", workdir=workdir, params={"n": 4})
    e.add_task(LocalTask("write", commands=["echo value=$n > numbers.txt", "echo to-stderr >&2"]))
    e.add_task(LocalTask("check", commands=["grep -q value=4 numbers.txt", "cat numbers.txt"], deps=["write"]))
    e.add_task(PythonTask("make_numbers", taskfuncs.make_numbers, deps=["check"]))
    e.add_task(PythonTask("total", taskfuncs.total, deps=["make_numbers"], kwargs={"scale": 10}))
    return e


def test_results_carry_everything(project, target):
    results = ExperimentExecutor(small_experiment(project), progress=False, **target).run()
    assert isinstance(results, Results) and results.ok
    w = results["write"]
    assert isinstance(w, TaskResult) and w.status == "completed" and w.status is TaskStatus.COMPLETED
    assert w.returncodes == [0, 0] and w.attempts == 1 and w.stderr == "to-stderr"
    assert Path(w.stderr_path).read_text() == "to-stderr\n"
    assert Path(w.stderr_path).parent == project / ".molexp" / "basics" / "logs"
    assert w.stdout_path is None   # its stdout went to numbers.txt: an empty log leaves no file
    assert results["check"].stdout == "value=4"
    assert results["make_numbers"].value == [0, 1, 2, 3]  # params reach Python tasks by argument name
    assert results["total"].value == 60                    # upstream values arrive as keyword arguments
    for r in results.values():
        assert r.start <= r.end and r.duration >= 0 and r.worker
    s = results.summary()
    assert s["total"] == 4 and s["completed"] == 4 and s["failed"] == 0 and s["wall_time"] > 0


def test_same_results_on_local_scheduler_and_local_cluster(project, cluster_client):
    local = ExperimentExecutor(small_experiment(project), progress=False).run(params={"n": 7})
    (project / "numbers.txt").unlink()
    dist = ExperimentExecutor(small_experiment(project), progress=False, client=cluster_client).run(params={"n": 7})
    assert not local.ok and not dist.ok  # check greps for value=4: both fail the same way
    for name in local:
        assert local[name].status == dist[name].status
        assert local[name].value == dist[name].value
        assert local[name].returncodes == dist[name].returncodes
        assert local[name].reason == dist[name].reason
    assert dist["check"].worker.startswith("tcp://127.0.0.1")
    ok_local = ExperimentExecutor(small_experiment(project), progress=False).run()
    ok_dist = ExperimentExecutor(small_experiment(project), progress=False, client=cluster_client).run()
    assert ok_local.ok and ok_dist.ok
    assert {n: r.value for n, r in ok_local.items()} == {n: r.value for n, r in ok_dist.items()}


def test_a_failing_command_stops_its_task_and_its_dependents(project, target):
    e = Experiment("fails", workdir=project)
    e.add_task(LocalTask("bad", commands=["echo first", "exit 3", "touch should-not-exist"]))
    e.add_task(LocalTask("after", commands=["touch after-ran"], deps=["bad"]))
    results = ExperimentExecutor(e, progress=False, **target).run()
    bad = results["bad"]
    assert bad.status is TaskStatus.FAILED and bad.failure == FailureKind.EXIT == "exit"
    assert bad.returncodes == [0, 3] and bad.command == "exit 3"
    assert "exited with code 3" in bad.error
    assert not (project / "should-not-exist").exists() and not (project / "after-ran").exists()
    assert results["after"].status is TaskStatus.SKIPPED and results["after"].reason == "upstream 'bad' failed"
    assert results.failed == ["bad"] and not results.ok


def test_python_exception_carries_the_remote_traceback(project, target):
    e = Experiment("py", workdir=project)
    e.add_task(PythonTask("explode", taskfuncs.boom))
    r = ExperimentExecutor(e, progress=False, **target).run()["explode"]
    assert r.status is TaskStatus.FAILED and r.failure == "exception"
    assert "RuntimeError: boom from a python task" in r.error
    assert "Traceback (most recent call last)" in r.error and "in boom" in r.error


def test_task_decorator_cwd_env_and_current_task(project):
    (project / "sub").mkdir()
    seen = {}

    @task
    def first():
        me = current_task()
        if me is not None:
            seen["current"] = (me.name, me.attempt)
        return 5

    @task(deps=["first"], name="second")
    def second_fn(first, **rest):
        return first + 1

    e = Experiment("deco", workdir=project)
    e.add_task(first)
    e.add_task(second_fn)
    e.add_task(LocalTask("where", commands=["pwd", "echo $GREETING $MOLEXP_TASK $MOLEXP_ATTEMPT"], cwd="sub",
                         env={"GREETING": "hi"}))
    results = ExperimentExecutor(e, progress=False).run()
    assert results["second"].value == 6 and first() == 5
    assert seen["current"] == ("first", 1)
    assert results["where"].stdout.splitlines() == [str(project / "sub"), "hi where 1"]


def test_commands_run_in_bash_with_shell_features(project):
    e = Experiment("bash", workdir=project)
    e.add_task(LocalTask("shell", commands=["for i in 1 2 3; do echo $$i; done | paste -sd+ | bc > sum.txt",
                                            "[[ $(cat sum.txt) == 6 ]]", "missing-program-xyz"]))
    r = ExperimentExecutor(e, progress=False).run()["shell"]
    assert r.returncodes == [0, 0, 127] and "missing-program-xyz" in r.stderr
    assert (project / "sum.txt").read_text() == "6\n"


def test_commands_start_clean_in_their_own_session(project):
    """Whether a command is exec'd directly or through bash: its own session (so molexp can signal its whole
    tree), default signal dispositions (Python ignores SIGPIPE; children must not inherit that), only
    stdin/stdout/stderr open, and the task's directory and environment."""
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.dup2(leaked, 100)              # an inheritable descriptor of the driver's, which no task may see
    os.set_inheritable(100, True)
    try:
        e = Experiment("clean", workdir=project)
        (project / "sub").mkdir()
        for name, cmd in [("direct", "cat /proc/self/stat /proc/self/status"),
                          ("bash", "cat /proc/self/stat /proc/self/status | cat")]:
            e.add_task(LocalTask(f"{name}-proc", commands=[cmd]))
            e.add_task(LocalTask(f"{name}-fds", commands=["ls /proc/self/fd" + (" | cat" if name == "bash" else "")]))
            e.add_task(LocalTask(f"{name}-where", commands=["pwd" if name == "direct" else "pwd | cat"], cwd="sub",
                                 env={"MARK": name}))
        e.add_task(LocalTask("env", commands=["printenv MARK MOLEXP_TASK"], env={"MARK": "yes"}))
        results = ExperimentExecutor(e, progress=False, max_workers=1).run()
    finally:
        os.close(100)
        os.close(leaked)
    assert results.ok, results.summary()
    for name in ("direct", "bash"):
        stat, *status = Path(results[f"{name}-proc"].stdout_path).read_text().splitlines()
        fields = stat.rsplit(")", 1)[1].split()   # after "pid (comm)": state ppid pgrp session ...
        assert fields[2] == fields[3], f"{name}: process group {fields[2]} is not its session {fields[3]}"
        ignored = next(line for line in status if line.startswith("SigIgn:")).split()[1]
        assert int(ignored, 16) & (1 << (13 - 1) | 1 << (25 - 1)) == 0, f"{name}: SIGPIPE/SIGXFSZ ignored"
        fds = results[f"{name}-fds"].stdout.split()
        assert "100" not in fds and set(fds) <= {"0", "1", "2", "3", "4"}, fds
        assert results[f"{name}-where"].stdout == str(project / "sub")
    assert results["env"].stdout.splitlines() == ["yes", "env"]


def test_workdir_default_is_current_directory(project):
    e = Experiment("here")
    e.add_task(LocalTask("t", commands=["pwd"]))
    assert ExperimentExecutor(e, progress=False).run()["t"].stdout == os.getcwd()


def test_the_compiled_graph_is_one_dask_delayed_per_task_with_readable_keys(project):
    import queue

    import dask.threaded

    from molexp.run.compile import compile_graph
    from molexp.run.config import ExecutionConfig
    from molexp.backends.local import LocalCancel, LocalSink
    from molexp.run.spec import RunContext

    e = small_experiment(project)
    ctx = RunContext(run_id="run1", experiment=e.name, workdir=str(project), sink=LocalSink(queue.SimpleQueue()),
                     cancel=LocalCancel(), params=e.params)
    compiled = compile_graph(e.graph, ctx, ExecutionConfig())
    compiled.graph().validate()   # a HighLevelGraph whose layers declare their dependencies truly
    delayed = compiled.delayed()
    assert list(delayed) == ["write", "check", "make_numbers", "total"]
    assert delayed["write"].key.endswith("-write") and delayed["make_numbers"].key.startswith("make-")
    (total,) = dask.compute(delayed["total"], scheduler=dask.threaded.get)
    assert total.status == "completed" and total.value == 60


def test_large_graphs_run_in_slices_locally_and_incrementally_on_a_cluster(project, monkeypatch, target):
    """Graphs above backend_local.SEGMENT tasks never reach dask.order whole (it took 16 GB on a 100k-task
    layered graph): locally they go to dask.local in slices, on a cluster they are submitted as their inputs
    finish. Values, skips and fail-fast cross slice boundaries unchanged."""
    import taskfuncs

    import molexp.backends.distributed as backend_distributed
    import molexp.backends.local as backend_local
    from molexp import ExperimentExecutor, PythonTask, TaskGraph

    calls, backends = [], []
    real_slices, real_start = backend_local.run_in_segments, backend_distributed.DistributedBackend.start
    monkeypatch.setattr(backend_local, "SEGMENT", 7)
    monkeypatch.setattr(backend_local, "run_in_segments",
                        lambda get, compiled, keys, size: calls.append(size) or real_slices(get, compiled, keys, size))
    monkeypatch.setattr(backend_distributed.DistributedBackend, "start",
                        lambda self, *a: backends.append(self) or real_start(self, *a))

    def layered(fail=None):
        g = TaskGraph()
        for layer in range(5):
            for i in range(6):
                deps = [f"n{layer - 1}_{j}" for j in (i, (i + 1) % 6)] if layer else []
                fn = taskfuncs.boom_any if (layer, i) == fail else taskfuncs.add_inputs
                g.add_task(PythonTask(f"n{layer}_{i}", fn, kwargs={"start": i}), dependencies=deps)
        return g

    results = ExperimentExecutor(layered(), progress=False, max_workers=2, **target).run()
    if target:
        assert backends and not any(b.schedules_dependents for b in backends) and not calls
    else:
        assert calls == [7]
    assert results.ok and len(results) == 30
    # n{L}_i = 1 + its two inputs: every value is right only if every slice got its inputs' values
    expect = {f"n0_{i}": i + 1 for i in range(6)}
    for layer in range(1, 5):
        for i in range(6):
            expect[f"n{layer}_{i}"] = 1 + expect[f"n{layer - 1}_{i}"] + expect[f"n{layer - 1}_{(i + 1) % 6}"]
    assert {n: r.value for n, r in results.items()} == expect

    failed = ExperimentExecutor(layered(fail=(1, 0)), progress=False, max_workers=2, fault_tolerance="continue",
                                **target).run()
    assert failed["n1_0"].status.value == "failed"
    assert failed["n4_0"].status.value == "skipped" and "upstream" in failed["n4_0"].reason
    assert failed["n4_2"].ok                       # not downstream of n1_0: still ran, in a later slice
    # with priorities (the local scheduler then keeps its ready list in order across slices): same outcomes
    ranked = ExperimentExecutor(layered(fail=(1, 0)), progress=False, max_workers=2, fault_tolerance="continue",
                                priority_scheduling=True, **target).run()
    assert {n: r.status for n, r in ranked.items()} == {n: r.status for n, r in failed.items()}
    assert ranked["n4_2"].value == failed["n4_2"].value


def test_many_small_tasks_are_dispatched_in_chunks_without_losing_parallelism(project):
    """Dask's local scheduler hands big graphs' ready tasks over in chunks (one hand-off for several tasks);
    a chunk is still shared by every free thread: two independent chains, whose two ready tasks always
    arrive in one chunk, run side by side on two workers."""
    from molexp.backends import local as backend_local

    e = Experiment("chains")
    links = 100
    assert backend_local.chunk_size(2 * links, 2) > 1
    for chain in "ab":
        e.add_tasks(LocalTask(f"{chain}{i}", commands=["sleep 0.01"], deps=[f"{chain}{i - 1}"] if i else [])
                    for i in range(links))
    results = ExperimentExecutor(e, progress=False, max_workers=2).run()
    assert results.ok
    together = sum(results[f"a{i}"].start < results[f"b{i}"].end and results[f"b{i}"].start < results[f"a{i}"].end
                   for i in range(links))
    assert together > links * 0.8, f"only {together} of {links} pairs ran side by side"


def test_params_and_context_of_any_size_reach_tasks_on_a_cluster(project, cluster_client):
    """A run's params and context travel inside each task when small and as one piece of data every task
    depends on when large (over 64 KiB): conditions on the workers see them either way, whether the whole
    graph goes in at once or tasks are submitted as they become ready (BatchExecutor)."""
    from molexp import BatchExecutor

    for size in (10, 200_000):
        e = Experiment("context", workdir=project, params={"blob": "x" * size})
        e.add_task(LocalTask("first", commands=["true"]))
        e.add_task(LocalTask("only_if_big", commands=["true"], deps=["first"], condition=taskfuncs.blob_is_big))
        runs = [ExperimentExecutor(e, progress=False, client=cluster_client).run(context={"note": "y" * size}),
                BatchExecutor(batch_size=1, progress=False, client=cluster_client).execute(
                    e, context={"note": "y" * size})]
        for results in runs:
            assert results["first"].status is TaskStatus.COMPLETED
            expected = TaskStatus.COMPLETED if size > 100_000 else TaskStatus.SKIPPED
            assert results["only_if_big"].status is expected, (size, results["only_if_big"])
