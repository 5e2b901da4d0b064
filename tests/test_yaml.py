"""Experiments round-trip through YAML, keeping every task's type and fields."""

from __future__ import annotations

import pytest
import taskfuncs

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask, ShellTask, TaskDefinitionError, \
    ValidationError


def rich_experiment() -> Experiment:
    e = Experiment("roundtrip", workdir="runs/a", params={"temperature": 300, "steps": [1, 2]},
                   description="shell and python tasks")
    e.add_task(LocalTask("prep", commands=["echo $temperature > t.txt", "cat t.txt"], kwargs={"x": 1.5},
                         timeout="10m", retries=2, priority=5, resources={"memory": "2GB", "cores": 2},
                         cwd="sub", env={"OMP_NUM_THREADS": "1"}))
    e.add_task(PythonTask("numbers", taskfuncs.make_numbers, kwargs={"n": 4}, condition=taskfuncs.always))
    e.add_task(PythonTask("total", "taskfuncs:total", deps=["numbers"]), dependencies=["prep"])
    return e


def test_round_trip_equals_original():
    e = rich_experiment()
    text = e.to_yaml()
    back = Experiment.from_yaml(text)
    assert back == e
    assert isinstance(back.tasks["prep"], ShellTask) and isinstance(back.tasks["total"], PythonTask)
    assert back.tasks["total"].func is taskfuncs.total and back.tasks["total"].deps == ["numbers", "prep"]
    assert back.tasks["prep"].timeout == 600.0 and back.tasks["numbers"].condition is taskfuncs.always
    assert "func: taskfuncs:make_numbers" in text and "type: shell" in text
    assert Experiment.from_yaml(back.to_yaml()) == e


def test_a_changed_field_is_not_equal():
    e, other = rich_experiment(), rich_experiment()
    other.tasks["prep"].commands[1] = "cat t.txt | wc"
    assert e != other


def test_file_round_trip_resolves_workdir_next_to_the_file(tmp_path):
    e = rich_experiment()
    path = tmp_path / "exp.yaml"
    e.to_yaml(path)
    back = Experiment.from_yaml(path)
    assert back.workdir == str(tmp_path / "runs/a")
    back.workdir = e.workdir
    assert back == e


def test_loaded_experiment_runs(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "name: small\nworkdir: .\nparams: {n: 3}\ntasks:\n"
        "  - {type: shell, name: hello, commands: ['echo n=$n']}\n"
        "  - {type: python, name: numbers, func: 'taskfuncs:make_numbers', deps: [hello]}\n")
    results = ExperimentExecutor(Experiment.from_yaml(tmp_path / "exp.yaml"), progress=False).run()
    assert results["hello"].stdout == "n=3" and results["numbers"].value == [0, 1, 2]


def test_lambda_cannot_be_written_to_yaml():
    e = Experiment("x")
    e.add_task(PythonTask("anon", lambda: 1))
    with pytest.raises(TaskDefinitionError, match="'anon': func: .* cannot be written to YAML"):
        e.to_yaml()


@pytest.mark.parametrize("text, message", [
    ("name: x\ntasks:\n  - {type: docker, name: a}\n", "'type' must be one of"),
    ("name: x\ntask: []\n", "unknown key"),
    ("tasks: []\n", "missing 'name'"),
    ("name: x\ntasks:\n  - {type: shell, name: a, commands: 'echo'}\n", "commands must be a list of strings"),
    ("name: x\ntasks:\n  - {type: shell, name: a, command: ['echo']}\n", "unknown field 'command' \\(did you mean 'commands'\\?\\)"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_yaml_is_a_clear_error(text, message):
    with pytest.raises(ValidationError, match=message):
        Experiment.from_yaml(text)
