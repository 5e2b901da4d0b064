"""The default order of ready tasks (issue 20 point 2): the longest remaining path first (in tasks, or in the
seconds earlier runs recorded), ties in declaration order; with ``priority_scheduling=True`` the tasks' own
priorities rank first. One worker, so the order in which tasks start is the scheduler's choice alone; each
task writes its name to a file as it starts.

On a cluster the driver learns that a task finished a moment after its worker did, and Dask has already handed
the worker its next task by then: so there, the order holds among the tasks that are ready at the same time
(``among``), and a task made ready by the one that just finished can start one task later than locally."""

from __future__ import annotations

import pytest

from molexp import Experiment, ExperimentExecutor, LocalTask


@pytest.fixture(params=["local", "cluster"])
def one_worker(request):
    """Executor options for one worker: the default scheduler, or a LocalCluster of one one-thread worker."""
    if request.param == "local":
        yield {"max_workers": 1}
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield {"client": client}


def started(project) -> list[str]:
    """The tasks' names in the order they started (each appended its name first thing)."""
    path = project / "started.txt"
    names = path.read_text().split()
    path.unlink()
    return names


def among(names: list[str], ready: list[str]) -> list[str]:
    """``names`` restricted to ``ready`` (tasks ready at the same time), in their order."""
    return [n for n in names if n in ready]


def add(e: Experiment, project, name: str, seconds: float = 0.05, **kw) -> None:
    e.add_task(LocalTask(name, commands=[f"echo {name} >> {project / 'started.txt'}", f"sleep {seconds}"], **kw))


def chain_and_short_tasks(project) -> Experiment:
    """Two short independent tasks declared first, then a three-task chain."""
    e = Experiment("order", workdir=project)
    add(e, project, "a")
    add(e, project, "b")
    add(e, project, "c1")
    add(e, project, "c2", deps=["c1"])
    add(e, project, "c3", deps=["c2"])
    return e


def test_the_longest_remaining_path_goes_first_and_ties_in_declaration_order(project, one_worker):
    e = chain_and_short_tasks(project)
    results = ExperimentExecutor(e, progress=False, **one_worker).run()
    assert results.ok
    order = started(project)
    # c1 heads 3 tasks; c2, made ready by c1, still heads 2; then c3, a and b head 1 each: declaration order
    if "client" in one_worker:
        assert among(order, ["a", "b", "c1"]) == ["c1", "a", "b"]
    else:
        assert order == ["c1", "c2", "a", "b", "c3"]


def test_independent_tasks_of_one_rank_run_in_declaration_order(project, one_worker):
    e = Experiment("flat", workdir=project)
    names = ["zeta", "alpha", "mid", "beta"]
    for n in names:
        add(e, project, n, 0.01)
    assert ExperimentExecutor(e, progress=False, **one_worker).run().ok
    assert started(project) == names


def learning_experiment(project) -> Experiment:
    """Counting tasks puts the two-task chain first; its seconds put the long single task first."""
    e = Experiment("learn", workdir=project)
    add(e, project, "root", 0)
    add(e, project, "quick", 0.02, deps=["root"])
    add(e, project, "quick2", 0.02, deps=["quick"])
    add(e, project, "slow", 0.4, deps=["root"])
    return e


def test_a_second_run_orders_by_the_seconds_the_first_run_recorded(project, one_worker):
    e = learning_experiment(project)
    executor = ExperimentExecutor(e, progress=False, **one_worker)
    assert executor.run().ok
    first = started(project)
    assert (project / ".molexp" / "learn" / "durations.json").exists()   # recorded with no options
    assert executor.run().ok
    second = started(project)
    if "client" in one_worker:   # quick and slow are ready together
        assert first[:2] == ["root", "quick"] and second[:2] == ["root", "slow"]
    else:
        assert first == ["root", "quick", "quick2", "slow"]   # no records: 2 tasks beat 1
        assert second == ["root", "slow", "quick", "quick2"]  # recorded: 0.4 s beat 0.04 s


def test_priority_scheduling_puts_the_tasks_priorities_on_top_of_the_path_length(project, one_worker):
    e = Experiment("ranked", workdir=project)
    add(e, project, "short")
    add(e, project, "c1")
    add(e, project, "c2", deps=["c1"])
    add(e, project, "c3", deps=["c2"])
    add(e, project, "p_short", priority=1)
    add(e, project, "p_head", priority=1)
    add(e, project, "p_tail", deps=["p_head"])
    add(e, project, "late", priority=-1)
    results = ExperimentExecutor(e, progress=False, priority_scheduling=True, **one_worker).run()
    assert results.ok
    order = started(project)
    # priority 1 first (the longer path first among them), then priority 0 by path length (c1 heads 3, c2
    # 2, then short, c3 and p_tail head 1 each: declaration order), priority -1 last
    if "client" in one_worker:
        assert among(order, ["short", "c1", "p_short", "p_head", "late"]) == ["p_head", "p_short", "c1", "short",
                                                                              "late"]
    else:
        assert order == ["p_head", "p_short", "c1", "c2", "short", "c3", "p_tail", "late"]


def test_ranks_put_priorities_first_and_path_lengths_second():
    from molexp.run.order import places, ranks

    order = ["a", "b", "c", "d"]
    dependents = {"a": ["b"], "b": [], "c": ["d"], "d": []}
    assert ranks(order, dependents, {}) == {"a": 2, "b": 1, "c": 2, "d": 1}
    r = ranks(order, dependents, {}, {"b": 1, "d": -1})
    assert r["a"] == r["c"] and 0 < r["a"] < 1 < r["b"] < 2 and -1 < r["d"] < 0
    # one distinct number each, higher first; equal ranks in the given order
    assert places(order, r) == {"b": 4, "a": 3, "c": 2, "d": 1}


def test_order_matters_only_where_ready_tasks_can_rank_differently():
    """The local scheduler keeps its ready list in order only for graphs where that can change what runs."""
    from molexp.run.order import order_matters, ranks

    def matters(tasks, known=None) -> bool:
        order = [n for n, _ in tasks]
        deps = dict(tasks)
        dependents = {n: [m for m, ds in tasks if n in ds] for n in order}
        return order_matters(order, deps.__getitem__, ranks(order, dependents, known or {}))

    independent = [(f"t{i}", ()) for i in range(5)]
    chain = [(f"c{i}", (f"c{i - 1}",) if i else ()) for i in range(5)]
    layers = [(f"l{k}_{i}", tuple(f"l{k - 1}_{j}" for j in range(3)) if k else ()) for k in range(3)
              for i in range(3)]
    fanout = [("root", ())] + [(f"f{i}", ("root",)) for i in range(5)]
    assert not any(map(matters, (independent, chain, layers, fanout)))
    assert matters(independent + chain)            # a chain's head and independent tasks are ready together
    assert matters(layers[:-1] + [("l2_2", ("l1_0",))])   # a task that needs part of the level above
    assert matters(independent, {"t0": 5.0, "t1": 1.0})   # recorded seconds tell independent tasks apart
