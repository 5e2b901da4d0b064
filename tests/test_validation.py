"""Bad input raises a molexp error naming the task or option, before any task runs."""

from __future__ import annotations

import pytest

from molexp import (ConfigError, CycleError, Experiment, ExperimentExecutor, GraphError, LocalTask, MolexpError,
                    PythonTask, TaskDefinitionError, TaskGraph, TemplateError)


def marker_task(project):
    return LocalTask("marker", commands=[f"touch {project / 'ran'}"])


def assert_nothing_ran(project):
    assert not (project / "ran").exists()


def test_cycle_names_the_cycle(project):
    g = TaskGraph()
    g.add_task(marker_task(project))
    g.add_task(LocalTask("a", commands=["true"], deps=["c"]))
    g.add_task(LocalTask("b", commands=["true"], deps=["a"]))
    g.add_task(LocalTask("c", commands=["true"], deps=["b"]))
    with pytest.raises(CycleError) as e:
        ExperimentExecutor(g, progress=False).run()
    assert str(e.value) == "dependency cycle: a -> b -> c -> a"
    assert e.value.cycle == ["a", "b", "c", "a"]
    assert isinstance(e.value, ValueError) and isinstance(e.value, MolexpError)
    assert_nothing_ran(project)


def test_missing_dependency(project):
    g = TaskGraph([marker_task(project), LocalTask("analyze", commands=["true"], deps=["prepare"])])
    with pytest.raises(GraphError, match="'analyze' depends on 'prepare', which is not in the graph"):
        ExperimentExecutor(g, progress=False).run()
    assert_nothing_ran(project)


def test_self_dependency(project):
    g = TaskGraph([marker_task(project), LocalTask("a", commands=["true"], deps=["a"])])
    with pytest.raises(GraphError, match="'a' depends on itself"):
        ExperimentExecutor(g, progress=False).run()
    assert_nothing_ran(project)


def test_duplicate_name():
    e = Experiment("x")
    e.add_task(LocalTask("a", commands=["true"]))
    with pytest.raises(GraphError, match="duplicate task name 'a'"):
        e.add_task(LocalTask("a", commands=["false"]))


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_empty_or_non_string_name(name):
    with pytest.raises(TaskDefinitionError, match="task name must be a non-empty string"):
        LocalTask(name, commands=["true"])


@pytest.mark.parametrize("commands, message", [
    ("echo hi", "commands must be a list of strings, got str"),
    ([], "commands must not be empty"),
    (["echo", 3], r"commands\[1\] must be a non-empty string, got 3"),
    (None, "commands must be a list of strings, got NoneType"),
])
def test_commands_must_be_a_list_of_strings(commands, message):
    with pytest.raises(TaskDefinitionError, match=message) as e:
        LocalTask("prep", commands=commands)
    assert "'prep'" in str(e.value)


def test_unknown_template_variable_fails_before_anything_runs(project):
    e = Experiment("x", workdir=project)
    e.add_task(marker_task(project))
    e.add_task(LocalTask("simulate", commands=["run --temp $temperature --steps ${nsteps}"],
                         kwargs={"temperature": 300}))
    with pytest.raises(TemplateError) as err:
        ExperimentExecutor(e, progress=False).run()
    assert "'simulate'" in str(err.value) and "$nsteps" in str(err.value)
    assert_nothing_ran(project)


def test_template_values_from_kwargs_params_and_environment(project):
    t = LocalTask("t", commands=["echo $a ${b} $HOME $$loop $1 ${x:-d}"], kwargs={"a": 1, "b": 2})
    assert t.render({"b": "B"}) == ["echo 1 B $HOME $loop $1 ${x:-d}"]


def test_unknown_configure_option():
    ex = ExperimentExecutor(Experiment("x"))
    with pytest.raises(ConfigError, match="unknown option 'retry_attempt' \\(did you mean 'retry_attempts'\\?\\)"):
        ex.configure(retry_attempt=3)


@pytest.mark.parametrize("option, value, expected", [
    ("retry_attempts", "3", "an integer >= 0"),
    ("retry_attempts", -1, "an integer >= 0"),
    ("retry_delay", "soon", "number of seconds"),
    ("fault_tolerance", "ignore", "'fail_fast' or 'continue'"),
    ("max_memory_per_task", "lots", "a size such as '4GB'"),
    ("cpu_affinity", "yes", "True or False"),
    ("max_workers", 0, "an integer >= 1"),
])
def test_bad_option_value_names_option_expected_and_given(option, value, expected):
    ex = ExperimentExecutor(Experiment("x"))
    with pytest.raises(ConfigError) as e:
        ex.configure(**{option: value})
    msg = str(e.value)
    assert f"option {option!r} expects" in msg and expected in msg and repr(value) in msg
    assert ex.config.retry_attempts == 0  # the config is unchanged


def test_configure_is_immutable_and_merges():
    ex = ExperimentExecutor(Experiment("x"))
    before = ex.config
    ex.configure(retry_attempts=2).configure(retry_delay="2s")
    assert (ex.config.retry_attempts, ex.config.retry_delay) == (2, 2.0)
    assert before.retry_attempts == 0
    with pytest.raises(Exception):
        ex.config.retry_attempts = 5  # frozen


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout": -1}, "timeout must be a positive number"),
    ({"retries": 1.5}, "retries must be an integer >= 0"),
    ({"deps": 3}, "deps must be a list"),
    ({"resources": {"memory": "much"}}, "resources\\['memory'\\] must be a size"),
    ({"env": {"A": 1}}, "env\\['A'\\] must be a string"),
])
def test_bad_task_fields(kwargs, message):
    with pytest.raises(TaskDefinitionError, match=message):
        LocalTask("t", commands=["true"], **kwargs)


def test_python_task_needs_a_callable():
    with pytest.raises(TaskDefinitionError, match="func must be callable"):
        PythonTask("p", 42)
    with pytest.raises(TaskDefinitionError, match="cannot import 'nope.module:f'"):
        PythonTask("p", "nope.module:f")


def test_executor_rejects_the_wrong_kind_of_work():
    with pytest.raises(TaskDefinitionError, match="expected an Experiment, a TaskGraph"):
        ExperimentExecutor("experiment.yaml")
    with pytest.raises(ConfigError, match="at most one of client=, cluster=, address="):
        ExperimentExecutor(Experiment("x"), address="tcp://127.0.0.1:1", cluster=object())
