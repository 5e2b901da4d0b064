"""TaskGraph: topological order (insertion order when valid, else readiness order), bulk construction."""

from __future__ import annotations

import gc

import pytest

from molexp import Experiment, ExperimentExecutor, GraphError, LocalTask, PythonTask, TaskGraph, TaskPool


def t(name, *deps):
    return LocalTask(name, commands=["true"], deps=list(deps))


def test_insertion_order_is_kept_when_every_task_follows_its_dependencies():
    g = TaskGraph([t("a"), t("b", "a"), t("c"), t("d", "b", "c")])
    assert g.topological_order() == ["a", "b", "c", "d"]
    assert g.dependents() == {"a": ["b"], "b": ["d"], "c": ["d"], "d": []}
    assert g.layers() == [["a", "c"], ["b"], ["d"]]


def test_out_of_order_insertion_is_sorted_by_readiness():
    g = TaskGraph([t("d", "b", "c"), t("b", "a"), t("c"), t("a")])
    order = g.topological_order()
    assert order == ["c", "a", "b", "d"]
    assert g.dependents() == {"d": [], "b": ["d"], "c": ["d"], "a": ["b"]}


def test_the_order_follows_tasks_added_after_it_was_computed():
    g = TaskGraph([t("a"), t("b", "a")])
    assert g.topological_order() == ["a", "b"]
    g.add_task(t("c", "b"))
    assert g.topological_order() == ["a", "b", "c"]
    assert g.dependents()["b"] == ["c"]
    g.add_task(t("z", "late"))
    g.add_task(t("late"))
    assert g.topological_order() == ["a", "late", "b", "z", "c"]


@pytest.mark.parametrize("tasks, message", [
    ([t("a", "missing")], "'a' depends on 'missing', which is not in the graph"),
    ([t("a", "a")], "'a' depends on itself"),
])
def test_missing_or_self_dependencies_are_errors_on_either_path(tasks, message):
    with pytest.raises(GraphError, match=message):
        TaskGraph(tasks).validate()


def test_add_tasks_takes_a_generator_and_runs_it_with_the_garbage_collector_as_it_was():
    seen = []

    def make():
        for i in range(5):
            seen.append(gc.isenabled())
            yield t(f"s{i}", *([f"s{i - 1}"] if i else []))

    assert gc.isenabled()
    e = Experiment("bulk")
    e.add_tasks(make())
    assert seen == [True] * 5 and gc.isenabled()   # user code: never with the collector paused by molexp
    assert list(e.tasks) == [f"s{i}" for i in range(5)]
    assert e.graph.topological_order() == list(e.tasks)
    assert len(TaskPool(t(f"p{i}") for i in range(3))) == 3


def test_add_tasks_restores_the_garbage_collector_when_a_task_is_bad():
    def make():
        yield t("a")
        yield t("a")

    g = TaskGraph()
    with pytest.raises(GraphError, match="duplicate task name 'a'"):
        g.add_tasks(make())
    assert gc.isenabled()
    assert list(g.tasks) == ["a"]


def test_results_keep_the_graph_order_whatever_order_tasks_finish_in(project):
    # the driver makes its per-task state on first use; results still come back in the graph's order
    e = Experiment("order", workdir=project)
    e.add_tasks([LocalTask("slow", commands=["sleep 0.3"]), t("fast"), t("after", "fast")])
    res = ExperimentExecutor(e, progress=False, max_workers=2).run()
    assert list(res) == ["slow", "fast", "after"]
    assert res.ok


def test_python_tasks_sharing_a_function_each_get_their_arguments(project):
    # the function's signature is read once for all the tasks that call it (a cache per function)
    def scale(x, factor=1, **rest):
        return x * factor + len(rest)

    e = Experiment("shared-function", workdir=project, params={"factor": 10})
    e.add_tasks(PythonTask(f"s{i}", scale, kwargs={"x": i}) for i in range(3))
    e.add_task(PythonTask("total", lambda s0, s1, s2: s0 + s1 + s2, deps=["s0", "s1", "s2"]))
    assert e.tasks["s1"].accepts() == (frozenset({"x", "factor"}), True)
    assert PythonTask("builtin", max).accepts() == (frozenset(), True)  # no signature to read, nor to cache
    res = ExperimentExecutor(e, progress=False).run()
    assert res.ok
    assert [res[f"s{i}"].value for i in range(3)] == [0, 10, 20]
    assert res["total"].value == 30
