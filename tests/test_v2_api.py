"""molexp v2's names, in the style of the v2 project's own tests (pool, graph, experiment, executor, task,
params): each is a thin layer over this version's code, and a v2-style script runs to the same results as the
native API. See docs/migrating.md."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from conftest import dedent

import molexp as mx
from molexp import (CycleError, Experiment, ExperimentExecutor, GraphError, LocalTask, PythonTask, Task,
                    TaskDefinitionError, TaskGraph, TaskPool)
from molexp.params import CartesianSampler, CombinationSampler, Param, ParamSpace, RandomSampler, SweepError, sweep


def chain_pool() -> TaskPool:
    pool = TaskPool("my_workflow")
    pool.add_task(LocalTask(name="prep", readme="Prepare input data", commands=["echo prep"]))
    pool.add_task(LocalTask(name="analysis", commands=["echo analysis"], deps=["prep"]))
    pool.add_task(LocalTask(name="plot", commands=["echo plot"], deps=["analysis"]))
    pool.add_task(LocalTask(name="other", commands=["echo other"], deps=["prep"]))
    return pool


# -- pool ---------------------------------------------------------------------------------------------------

class TestTaskPool:
    def test_name_first_and_crud(self):
        pool = chain_pool()
        assert pool.name == "my_workflow" and pool.task_count() == 4 == len(pool)
        assert pool.list_tasks() == ["prep", "analysis", "plot", "other"]
        assert pool.get_task("prep").readme == "Prepare input data" and pool.get_task("nope") is None
        assert pool.get_tasks_by_deps("prep") == ["analysis", "other"]
        pool.update_task(LocalTask("plot", commands=["echo new plot"], deps=["analysis"]))
        assert pool.get_task("plot").commands == ["echo new plot"]
        removed = pool.remove_task("other")
        assert removed.name == "other" and pool.list_tasks() == ["prep", "analysis", "plot"]
        assert pool.get_tasks_by_deps("prep") == ["analysis"]

    def test_other_forms_and_errors(self):
        assert TaskPool().name == "pool" and TaskPool(name="p").name == "p"
        assert TaskPool([Task("a")], name="jobs").list_tasks() == ["a"]
        assert TaskPool("p", tasks=[Task("a"), Task("b")]).task_count() == 2
        pool = chain_pool()
        with pytest.raises(GraphError, match="no task 'nope'"):
            pool.remove_task("nope")
        with pytest.raises(ValueError, match="no task 'plott' in this graph \\(did you mean 'plot'\\?\\)"):
            pool.update_task(Task("plott"))
        with pytest.raises(GraphError, match="duplicate task name 'prep'"):
            pool.add_task(Task("prep"))
        with pytest.raises(TaskDefinitionError, match="two names given"):
            TaskPool("a", name="b")

    def test_yaml_keeps_each_tasks_type(self, tmp_path):
        pool = TaskPool("mixed")
        pool.add_task(LocalTask("sh", commands=["echo hi"], readme="a shell task"))
        pool.add_task(PythonTask("py", "os.path:basename", kwargs={"p": "/a/b"}, deps=["sh"]))
        pool.add_task(Task("plain", args=["--fast"], deps=["py"]))
        text = pool.to_yaml(tmp_path / "pool.yaml")
        again = TaskPool.from_yaml(tmp_path / "pool.yaml")
        assert (tmp_path / "pool.yaml").read_text() == text and again.name == "mixed"
        assert [type(t) for t in again] == [LocalTask, PythonTask, Task]
        assert [t.to_dict() for t in again] == [t.to_dict() for t in pool]

    def test_v2_pool_yaml(self):
        pool = TaskPool.from_yaml(dedent("""
            name: v2pool
            tasks:
              first: {name: first, readme: null, args: [], kwargs: {}, outputs: [], deps: [], commands: [echo 1]}
              second: {name: second, readme: later, args: [-v], kwargs: {}, outputs: [], deps: [first]}
            """))
        assert pool.list_tasks() == ["first", "second"]
        assert type(pool["first"]) is LocalTask and type(pool["second"]) is Task
        assert pool["second"].readme == "later" and pool["second"].args == ["-v"]


# -- graph --------------------------------------------------------------------------------------------------

class TestTaskGraph:
    def test_queries(self):
        graph = TaskGraph(chain_pool())
        assert graph.topological_sort() == ["prep", "analysis", "plot", "other"]
        assert not graph.has_cycle() and graph.validate_dependencies() is True
        assert graph.get_dependencies("plot") == ["analysis"] and graph.get_dependents("prep") == ["analysis", "other"]
        assert graph.get_all_dependencies("plot") == {"prep", "analysis"}
        assert graph.get_all_dependents("prep") == {"analysis", "plot", "other"}
        assert graph.get_ready_tasks(set()) == ["prep"]
        assert graph.get_ready_tasks({"prep"}) == ["analysis", "other"]
        assert graph.get_ready_tasks({"prep", "analysis", "other"}) == ["plot"]

    def test_a_missing_name_is_a_clear_error(self):
        graph = TaskGraph(chain_pool())
        for method in (graph.get_dependencies, graph.get_dependents, graph.get_all_dependencies,
                       graph.get_all_dependents):
            with pytest.raises(GraphError, match="no task 'analyis' in this graph \\(did you mean 'analysis'\\?\\)"):
                method("analyis")
        with pytest.raises(GraphError, match="no task 'nope'"):
            graph.get_ready_tasks({"nope"})

    def test_cycles_and_missing_dependencies(self):
        cyclic = TaskGraph([Task("a", deps=["c"]), Task("b", deps=["a"]), Task("c", deps=["b"])])
        assert cyclic.has_cycle()
        with pytest.raises(CycleError, match="dependency cycle"):
            cyclic.topological_sort()
        missing = TaskGraph([Task("a", deps=["ghost"])])
        with pytest.raises(GraphError, match="depends on 'ghost', which is not in the graph"):
            missing.validate_dependencies()


# -- task ---------------------------------------------------------------------------------------------------

class TestTask:
    def test_readme_and_args(self):
        t = Task(name="data_preparation", readme="Prepare input data", args=["--input", "data.txt"])
        assert t.readme == t.description == "Prepare input data" and t.args == ["--input", "data.txt"]
        assert Task("x", description="d").readme == "d"
        shell = LocalTask("s", commands=["echo $args"], args=["two words", "x"])
        assert shell.render() == ["echo 'two words' x"]
        with pytest.raises(TaskDefinitionError, match="task 's': args must be a list of strings, got str"):
            LocalTask("s", commands=["true"], args="--fast")
        with pytest.raises(TaskDefinitionError, match="a PythonTask takes keyword arguments"):
            PythonTask("p", "os.path:basename", args=["x"])
        with pytest.raises(TaskDefinitionError, match="description= or readme="):
            Task("x", readme="a", description="b")

    @pytest.mark.parametrize("task", [
        Task("plain", readme="only a description", args=["-n", "3"], deps=["a"]),
        LocalTask("shell", commands=["echo $x"], kwargs={"x": 1}, retries=2),
        PythonTask("py", "os.path:join", kwargs={"a": "x"}, isolated=True),
    ], ids=lambda t: t.kind)
    def test_yaml_round_trip(self, task, tmp_path):
        text = task.to_yaml(tmp_path / "task.yaml")
        assert type(task).from_yaml(tmp_path / "task.yaml") == task == Task.from_yaml(text)
        if type(task) is not LocalTask:
            with pytest.raises(TaskDefinitionError, match="not a LocalTask"):
                LocalTask.from_yaml(text)


# -- experiment ---------------------------------------------------------------------------------------------

class TestExperiment:
    def test_task_pool_and_order(self):
        exp = Experiment(name="molecular_analysis", readme="An experiment")
        assert exp.readme == exp.description == "An experiment"
        pool = chain_pool()
        exp.set_task_pool(pool)
        assert exp.get_task_pool() is pool and len(exp) == 4
        assert exp.get_execution_order() == ["prep", "analysis", "plot", "other"]
        assert exp.validate_experiment() is None
        exp.add_task(Task("loop", deps=["loop2"]))
        exp.add_task(Task("loop2", deps=["loop"]))
        with pytest.raises(CycleError):
            exp.validate_experiment()

    def test_plain_tasks_round_trip_through_yaml(self, tmp_path):
        exp = Experiment("plain", readme="steps only", workdir=tmp_path)
        exp.add_task(Task("a", readme="first", args=["--x"]))
        exp.add_task(Task("b", deps=["a"]))
        exp.to_yaml(tmp_path / "exp.yaml")
        again = Experiment.from_yaml(tmp_path / "exp.yaml")
        assert again == exp and [type(t) for t in again.graph] == [Task, Task]
        assert "<td>first</td>" in again._repr_html_() and "(nothing to run)" in again._repr_html_()

    def test_v2_file_is_converted_and_said_once(self, tmp_path, caplog):
        (tmp_path / "v2.yaml").write_text(V2_FILE)
        with caplog.at_level(logging.WARNING, logger="molexp"):
            exp = Experiment.from_yaml(tmp_path / "v2.yaml")
        said = [r.getMessage() for r in caplog.records if r.name == "molexp"]
        assert len(said) == 1 and "molexp v2 file" in said[0] and "readme -> description" in said[0]
        assert "task_pool -> tasks" in said[0]
        assert exp.name == "molecular_analysis" and exp.description == "An analysis"
        assert exp.get_task_pool().name == "my_workflow"
        assert [(t.name, t.kind) for t in exp.graph] == [("prepare", "shell"), ("report", "shell")]
        assert exp.graph["prepare"].readme == "Prepare input data"
        assert exp.workdir == str(tmp_path)
        native = Experiment.from_yaml(exp.to_yaml())   # written back in this version's form: no conversion
        assert native == exp

    def test_a_v2_field_without_an_equivalent_names_the_task(self):
        with pytest.raises(TaskDefinitionError, match="tasks\\['ham'\\] \\('ham'\\): unknown field 'modules'"):
            Experiment.from_yaml("name: x\ntask_pool:\n  name: p\n  tasks:\n    ham: {name: ham, modules: [m]}\n")


V2_FILE = dedent("""
    name: molecular_analysis
    readme: An analysis
    task_pool:
      name: my_workflow
      tasks:
        prepare:
          name: prepare
          readme: Prepare input data
          args: [--input, data.txt]
          kwargs: {}
          outputs: []
          deps: []
          commands: ["echo prepared $args > prepared.txt"]
        report:
          name: report
          readme: null
          args: []
          kwargs: {who: v2}
          outputs: []
          deps: [prepare]
          commands: ["cat prepared.txt", "echo by $who"]
    """)


# -- executor -----------------------------------------------------------------------------------------------

def _analyse(prepare=None, scale=2):
    return {"scaled": scale * 21}


def v2_style(workdir) -> dict:
    """A v2-style script: TaskPool(name), readme=, set_task_pool, topological_sort, ExperimentExecutor(name=)."""
    pool = mx.TaskPool("pipeline_tasks")
    pool.add_task(mx.LocalTask(name="prepare", readme="make data", commands=["echo data > data.txt"]))
    pool.add_task(mx.PythonTask(name="analyse", func=_analyse, deps=["prepare"], kwargs={"scale": 2}))
    pool.add_task(mx.LocalTask(name="report", commands=["cat data.txt"], deps=["analyse"]))
    experiment = mx.Experiment(name="pipeline", readme="v2 style", workdir=workdir)
    experiment.set_task_pool(pool)
    order = mx.TaskGraph(experiment.get_task_pool()).topological_sort()
    results = mx.ExperimentExecutor(experiment, name="run1", progress=False).run()
    return {"order": order, "results": results}


def native(workdir) -> dict:
    exp = Experiment("pipeline", workdir=workdir, description="native")
    exp.add_task(LocalTask("prepare", commands=["echo data > data.txt"]))
    exp.add_task(PythonTask("analyse", _analyse, deps=["prepare"], kwargs={"scale": 2}))
    exp.add_task(LocalTask("report", commands=["cat data.txt"], deps=["analyse"]))
    return {"order": exp.graph.topological_order(), "results": ExperimentExecutor(exp, progress=False).run()}


class TestExecutor:
    def test_a_v2_style_script_runs_to_the_same_results_as_the_native_api(self, tmp_path):
        (tmp_path / "v2").mkdir()
        (tmp_path / "native").mkdir()
        v2, ours = v2_style(tmp_path / "v2"), native(tmp_path / "native")
        assert v2["order"] == ours["order"] == ["prepare", "analyse", "report"]
        a, b = v2["results"], ours["results"]
        assert a.ok and b.ok and list(a) == list(b)
        assert {n: (r.status, r.value, r.stdout) for n, r in a.items()} == \
               {n: (r.status, r.value, r.stdout) for n, r in b.items()}
        assert a["analyse"].value == {"scaled": 42} and a["report"].stdout == "data"
        # name= names the run: its logs live under .molexp/run1, the experiment keeps its name
        assert a["report"].stdout_path == str(tmp_path / "v2/.molexp/run1/logs/report.out")
        assert b["report"].stdout_path == str(tmp_path / "native/.molexp/pipeline/logs/report.out")
        data = json.loads(json.dumps(a.to_dict()))
        assert data["summary"]["completed"] == 3 and data["tasks"]["analyse"]["value"] == {"scaled": 42}
        assert data["tasks"]["report"]["status"] == "completed"

    def test_executor_construction(self, tmp_path):
        with pytest.raises(ValueError, match="ExperimentExecutor\\(None\\): expected an Experiment"):
            ExperimentExecutor(None)
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            ExperimentExecutor(Experiment("e"), name="")
        ex = ExperimentExecutor(Experiment("e", workdir=tmp_path), "run-a", progress=False)
        assert ex.name == "run-a" and ExperimentExecutor(Experiment("e")).name == "e"
        later = ExperimentExecutor(progress=False)   # the work given to execute()
        assert later.execute([LocalTask("t", commands=["echo hi"], cwd=str(tmp_path))])["t"].stdout == "hi"

    def test_to_dict_of_values_that_are_not_json(self, tmp_path):
        exp = Experiment("values", workdir=tmp_path)
        exp.add_task(PythonTask("obj", "builtins:object"))
        exp.add_task(PythonTask("nums", "builtins:list", kwargs={}))
        data = ExperimentExecutor(exp, progress=False).run().to_dict()
        text = json.dumps(data)
        assert data["tasks"]["obj"]["value"].startswith("<object object at") and data["tasks"]["nums"]["value"] == []
        assert json.loads(text)["summary"]["total"] == 2


# -- params -------------------------------------------------------------------------------------------------

class TestParams:
    space = ParamSpace({"x": [1, 2], "y": ["a", "b"]})

    def test_cartesian_sampler(self):
        samples = list(CartesianSampler().sample(self.space))
        assert {tuple(s.items()) for s in samples} == {(("x", 1), ("y", "a")), (("x", 1), ("y", "b")),
                                                        (("x", 2), ("y", "a")), (("x", 2), ("y", "b"))}
        assert list(CartesianSampler(self.space)) == samples and CartesianSampler()(self.space) == samples[0]

    def test_random_sampler(self):
        repeated = RandomSampler(num_samples=5, replace=True, seed=1).sample(self.space)
        assert len(repeated) == 5 and all(s["x"] in (1, 2) and s["y"] in ("a", "b") for s in repeated)
        distinct = RandomSampler(self.space, num_samples=4, seed=3).sample()
        assert sorted(map(str, distinct)) == sorted(map(str, CartesianSampler().sample(self.space)))
        assert RandomSampler(2, seed=1).num_samples == 2
        with pytest.raises(SweepError, match="n=5 is larger than the parameter space.*replace=True allows repeats"):
            RandomSampler(self.space, num_samples=5).sample()
        with pytest.raises(SweepError, match="RandomSampler: n must be an integer >= 1"):
            RandomSampler(num_samples=0)

    def test_combination_sampler(self):
        pairs = CombinationSampler(r=2).sample(self.space)
        assert len(pairs) == 6 and all(len(p) == 2 and p[0] != p[1] for p in pairs)
        assert CombinationSampler(self.space, 3).sample() == CombinationSampler(3).sample(self.space)
        assert len(CombinationSampler(self.space, 3).sample()) == 4
        with pytest.raises(SweepError, match="groups of r parameter sets"):
            e = Experiment("s")
            e.add_task(LocalTask("t", commands=["echo $x $y"]))
            sweep(e, self.space, CombinationSampler(2))
        with pytest.raises(SweepError, match="r \\(the size of each group\\) must be an integer >= 1"):
            CombinationSampler(self.space)

    def test_v2_param_dict_is_pointed_at_run_params(self):
        with pytest.raises(SweepError, match="molexp v2's Param \\(a dict of run values\\) is a plain dict"):
            Param({"temperature": 300})


# -- files next to the experiment ---------------------------------------------------------------------------

def test_yaml_func_imports_the_module_next_to_the_file(tmp_path):
    """`func: analysis:summarize` finds analysis.py in the YAML file's directory (as workflow.py's do), from
    any current directory."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "analysis.py").write_text("def summarize(prepare=None):\n    return {'n': 3}\n")
    (proj / "experiment.yaml").write_text(dedent("""
        name: files-next
        tasks:
          - {type: shell, name: prepare, commands: ["echo ok"]}
          - {type: python, name: summarize, func: "analysis:summarize", deps: [prepare]}
        """))
    p = subprocess.run([sys.executable, "-m", "molexp", "run", "proj/experiment.yaml", "--no-progress"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    shown = subprocess.run([sys.executable, "-m", "molexp", "show", "proj/experiment.yaml", "summarize"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.stdout.rstrip().endswith("value:\n  {'n': 3}"), shown.stdout + shown.stderr
    (proj / "experiment.yaml").write_text(
        (proj / "experiment.yaml").read_text().replace("analysis:summarize", "analysis:summarise"))
    bad = subprocess.run([sys.executable, "-m", "molexp", "run", "proj/experiment.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "cannot import 'analysis:summarise'" in bad.stderr and "summarise" in bad.stderr


def test_a_v2_file_runs_from_the_command_line_saying_once_what_it_converted(tmp_path):
    (tmp_path / "experiment.yaml").write_text(V2_FILE)
    p = subprocess.run([sys.executable, "-m", "molexp", "run", "experiment.yaml", "--no-progress"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("molexp v2 file") == 1
    assert (tmp_path / "prepared.txt").read_text() == "prepared --input data.txt\n"
    report = subprocess.run([sys.executable, "-m", "molexp", "logs", "experiment.yaml", "report"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert report.stdout == "prepared --input data.txt\nby v2\n"
