"""Parameter sweeps: spaces, samplers, sweep() expanding one experiment into one DAG, grouping, YAML."""

from __future__ import annotations

import re

import pytest
import taskfuncs
import yaml
from snippets import DOCS, snippet

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask, TaskStatus, ValidationError
from molexp.params import (CartesianSampler, LogUniform, Param, ParamSet, ParamSpace, RandomSampler, SweepError,
                           Uniform, copies, copy_name, expand_sweep, group_results, param_sets,
                           sampler_from_spec, split_name, sweep)

SPACE = {"temperature": [300, 350], "pressure": [1, 2, 5]}


def pipeline(workdir) -> Experiment:
    """prepare -> simulate -> analyse; every file lives in a directory named after the parameter set."""
    e = Experiment("scan", workdir=workdir, params={"steps": 100, "temperature": 1})
    d = "T${temperature}_P${pressure}"
    e.add_task(LocalTask("prepare", commands=[f"mkdir -p {d}",
                                              f"echo prepared T=$temperature P=$pressure > {d}/in.txt"]))
    e.add_task(LocalTask("simulate", deps=["prepare"], commands=[
        f"cat {d}/in.txt > {d}/out.txt", f"echo simulated T=$temperature P=$pressure steps=$steps >> {d}/out.txt"]))
    e.add_task(LocalTask("analyse", deps=["simulate"], commands=[
        f"grep -c T=$temperature {d}/out.txt > {d}/count.txt",
        f"echo analysed $temperature $pressure $$(cat {d}/count.txt)"]))
    return e


def test_a_two_by_three_sweep_runs_six_pipelines_in_one_run(project, target):
    base = pipeline(project)
    scan = sweep(base, ParamSpace(SPACE))
    assert len(scan) == 18 and len(base) == 3 and base.params["temperature"] == 1  # the original is unchanged
    assert scan.params == {"steps": 100}  # swept names leave params: the sweep's values win over defaults
    sim = scan.tasks["simulate[temperature=300,pressure=1]"]
    assert sim.deps == ["prepare[temperature=300,pressure=1]"] and sim.kwargs == {"temperature": 300, "pressure": 1}

    results = ExperimentExecutor(scan, progress=False, **target).run()  # ONE run of the whole sweep
    assert results.ok and len(results) == 18
    assert all(r.status is TaskStatus.COMPLETED for r in results.values())
    for t in SPACE["temperature"]:
        for p in SPACE["pressure"]:
            out = (project / f"T{t}_P{p}" / "out.txt").read_text()
            assert out == f"prepared T={t} P={p}\nsimulated T={t} P={p} steps=100\n"
            assert results[f"analyse[temperature={t},pressure={p}]"].stdout == f"analysed {t} {p} 2"

    groups = group_results(results, scan)
    assert len(groups) == 6 and all(len(g) == 3 for g in groups.values())
    assert list(groups) == [ParamSet(temperature=t, pressure=p) for t in (300, 350) for p in (1, 2, 5)]
    g = groups[ParamSet(temperature=350, pressure=5)]
    assert list(g) == ["prepare", "simulate", "analyse"] and g["analyse"].stdout == "analysed 350 5 2"
    assert group_results(results) == groups  # names carry the sets: the results alone suffice
    assert param_sets(scan) == list(groups) == [dict(s) for s in CartesianSampler().sample(ParamSpace(SPACE))]


def test_tasks_without_swept_parameters_run_once_and_python_tasks_get_their_arguments(project):
    seen = []

    def fetch():
        seen.append("fetch")
        return 10

    def simulate(fetch, temperature, steps=1):
        return fetch + temperature * steps

    def analyse(simulate, **rest):  # uses no swept parameter, but its upstream is copied
        return {"simulate": simulate, "rest": sorted(rest)}

    e = Experiment("py", workdir=project, params={"steps": 2})
    e.add_task(PythonTask("fetch", fetch))
    e.add_task(LocalTask("download", commands=["echo once >> downloads.txt"]))
    e.add_task(PythonTask("simulate", simulate, deps=["fetch", "download"]))
    e.add_task(PythonTask("analyse", analyse, deps=["simulate"]))
    scan = sweep(e, {"temperature": [1, 2, 3]})
    copied = [f"{t}[temperature={v}]" for t in ("simulate", "analyse") for v in (1, 2, 3)]
    assert sorted(scan.tasks) == sorted(["fetch", "download"] + copied)
    assert scan.tasks["simulate[temperature=2]"].deps == ["fetch", "download"]
    assert scan.tasks["analyse[temperature=2]"].kwargs == {}  # a Python copy gets only the values it takes

    results = ExperimentExecutor(scan, progress=False).run()
    assert results.ok and seen == ["fetch"] and (project / "downloads.txt").read_text() == "once\n"
    assert [results[f"simulate[temperature={v}]"].value for v in (1, 2, 3)] == [12, 14, 16]
    assert results["analyse[temperature=3]"].value == {"simulate": 16, "rest": []}  # by its original name
    groups = group_results(results, scan)
    assert len(groups) == 3 and all(set(g) == {"fetch", "download", "simulate", "analyse"} for g in groups.values())
    assert groups[ParamSet(temperature=1)]["fetch"] is groups[ParamSet(temperature=3)]["fetch"]
    assert copies(scan, "fetch") == {p: "fetch" for p in param_sets(scan)}


def test_sweep_values_beat_task_kwargs_and_params_and_other_params_still_apply(project):
    e = Experiment("prec", workdir=project, params={"x": "default", "y": "param"})
    e.add_task(LocalTask("show", commands=["echo x=$x y=$y z=$z"], kwargs={"x": "kwarg", "z": "kw"}))
    scan = sweep(e, [{"x": "a b"}, {"x": "300"}])  # strings with spaces, strings that look like numbers
    assert list(scan.tasks) == ["show[x=a%20b]", "show[x=%27300%27]"]
    assert param_sets(scan) == [{"x": "a b"}, {"x": "300"}]  # read back with their type
    results = ExperimentExecutor(scan, progress=False).run()
    assert [r.stdout for r in results.values()] == ["x=a b y=param z=kw", "x=300 y=param z=kw"]
    assert ExperimentExecutor(scan, progress=False).run(params={"y": "run"})["show[x=a%20b]"].stdout == \
        "x=a b y=run z=kw"


def test_fan_in_over_copies_and_names_round_trip(project):
    scan = sweep(pipeline(project), ParamSpace(SPACE), RandomSampler(3, seed=7))
    names = list(copies(scan, "analyse").values())
    scan.add_task(LocalTask("report", commands=["ls -d T*_P* | sort | paste -sd' '"], deps=names))
    results = ExperimentExecutor(scan, progress=False).run()
    assert results.ok and len(results["report"].stdout.split()) == 3
    for name in scan.tasks:
        base, p = split_name(name)
        assert (p is None and name == "report") or copy_name(base, p) == name
    for value in [0.1, 1e-05, -2, True, None, "", "'q'", "a,b=c[d]/e", "inf", float("inf")]:
        base, p = split_name(copy_name("t", {"v": value}))
        assert base == "t" and p["v"] == value and type(p["v"]) is type(value)
        assert not re.search(r'[/\\:*?"<>| ]', copy_name("t", {"v": value}))


def test_random_sampler_is_reproducible_and_respects_n():
    space = ParamSpace(temperature=range(300, 400, 10), pressure=[1, 2, 5], solvent=["water", "NPT run"])
    a, b = RandomSampler(7, seed=3).sample(space), space.sample(RandomSampler(7, seed=3))
    assert a == b and len(a) == 7 and len({ParamSet(s) for s in a}) == 7
    assert all(s["temperature"] in range(300, 400, 10) and s["pressure"] in (1, 2, 5) for s in a)
    assert RandomSampler(7, seed=4).sample(space) != a
    every = RandomSampler(space.size, seed=0).sample(space)  # n == size: a permutation of the whole space
    assert sorted(map(str, every)) == sorted(map(str, CartesianSampler().sample(space)))
    mixed = ParamSpace([Param("rate", LogUniform(1e-4, 1e-1, precision=3)), Param("x", Uniform(0, 1))], seed=[1, 2])
    draws = mixed.sample({"random": {"n": 5, "seed": 1}})
    assert draws == mixed.sample(RandomSampler(5, seed=1)) and len(draws) == 5
    assert all(1e-4 <= d["rate"] <= 1e-1 and float(f"{d['rate']:.3g}") == d["rate"] for d in draws)
    assert all(0 <= d["x"] < 1 and d["seed"] in (1, 2) for d in draws)


@pytest.mark.parametrize("make, message", [
    (lambda: ParamSpace(temperature=[]), "parameter 'temperature': the list of values is empty"),
    (lambda: ParamSpace({"2fast": [1]}), "parameter name '2fast' is not an identifier"),
    (lambda: ParamSpace({"temp-k": [1]}), "parameter name 'temp-k' is not an identifier"),
    (lambda: ParamSpace(), "no axes"),
    (lambda: ParamSpace(t=[1, 2, 1]), "value 1 is listed twice"),
    (lambda: ParamSpace(t=[1, 1.0]), "values 1 and 1.0 cannot both be swept"),
    (lambda: ParamSpace(t=[[1, 2]]), "must be a string, number, bool or None"),
    (lambda: ParamSpace(t="abc"), "values must be a list"),
    (lambda: sampler_from_spec("grid"), "unknown sampler 'grid'"),
    (lambda: sampler_from_spec({"random": {"m": 2}}), "sampler 'random': bad options"),
    (lambda: RandomSampler(0), "n must be an integer >= 1"),
    (lambda: ParamSpace(SPACE).sample(RandomSampler(7, seed=1)), "n=7 is larger than the parameter space \\(6"),
    (lambda: ParamSpace(t=Uniform(0, 1)).sample(), "'t' is continuous"),
    (lambda: Uniform(2, 1), "low must be less than high"),
    (lambda: LogUniform(0, 1), "low must be > 0"),
    (lambda: sweep(pipeline("."), {"temperature": [300], "pressur": [1]}), "\\['pressur'\\] are not used by any task"),
    (lambda: sweep(pipeline("."), [{"temperature": 1, "pressure": 1}, {"temperature": 2}]), "every set must give"),
    (lambda: sweep(pipeline("."), [{"temperature": 1, "pressure": 1}] * 2), "is given twice"),
    (lambda: sweep(pipeline("."), [], None), "no parameter sets"),
    (lambda: sweep(pipeline("."), [{"temperature": 1, "pressure": 1}], "cartesian"),
     "a sampler applies to a ParamSpace"),
    (lambda: sweep(sweep(pipeline("."), SPACE), {"steps": [1]}), "is named like a swept copy"),
])
def test_bad_input_is_a_validation_error_naming_the_problem(make, message):
    with pytest.raises(SweepError, match=message) as info:
        make()
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)


YAML = """\
name: scan
workdir: {workdir}
params: {{steps: 100}}
sweep:
  sampler: {sampler}
  params: {{temperature: [300, 350], pressure: [1, 2, 5]}}
tasks:
  - {{type: shell, name: prepare, commands: ["mkdir -p T${{temperature}}_P${{pressure}}"]}}
  - type: shell
    name: simulate
    deps: [prepare]
    commands: ["echo T=$temperature P=$pressure steps=$steps > T${{temperature}}_P${{pressure}}/out.txt"]
  - {{type: python, name: make_numbers, func: "taskfuncs:make_numbers", kwargs: {{n: 3}}, deps: [simulate]}}
  - {{type: python, name: total, func: "taskfuncs:total", deps: [make_numbers], kwargs: {{scale: 2}}}}
"""


def test_yaml_sweep_expands_and_runs(project):
    data = yaml.safe_load(YAML.format(workdir=project, sampler="cartesian"))
    expanded = expand_sweep(data)
    assert "sweep" not in expanded and "sweep" in data and expanded["params"] == {"steps": 100}
    assert len(expanded["tasks"]) == 24 and yaml.safe_load(yaml.safe_dump(expanded)) == expanded  # plain data
    scan = Experiment.from_dict(expanded)
    results = ExperimentExecutor(scan, progress=False).run()
    assert results.ok and len(results) == 24
    for t in (300, 350):
        for p in (1, 2, 5):
            assert (project / f"T{t}_P{p}" / "out.txt").read_text() == f"T={t} P={p} steps=100\n"
    groups = group_results(results, scan)
    assert len(groups) == 6 and all(g["total"].value == 6 for g in groups.values())
    assert expand_sweep({"name": "plain", "tasks": []}) == {"name": "plain", "tasks": []}


def test_yaml_random_sampler_and_explicit_sets(project):
    data = yaml.safe_load(YAML.format(workdir=project, sampler="{random: {n: 4, seed: 1}}"))
    first, again = expand_sweep(data), expand_sweep(data)
    assert first == again and len(first["tasks"]) == 16
    sets = param_sets([t["name"] for t in first["tasks"]])
    assert sets == ParamSpace(SPACE).sample(RandomSampler(4, seed=1))
    data["sweep"] = {"sets": [{"temperature": 310, "pressure": 3}]}
    assert [t["name"] for t in expand_sweep(data)["tasks"]][:2] == [
        "prepare[temperature=310,pressure=3]", "simulate[temperature=310,pressure=3]"]
    data["sweep"] = {"params": {"temperature": {"uniform": {"low": 300, "high": 400, "precision": 3}},
                                "pressure": [1]}, "sampler": {"random": {"n": 2, "seed": 5}}}
    assert all(300 <= p["temperature"] < 400 for p in param_sets([t["name"] for t in expand_sweep(data)["tasks"]]))


@pytest.mark.parametrize("section, message", [
    ({"params": {"temperature": [300]}, "sampler": "grid"}, "unknown sampler 'grid'"),
    ({"params": {"temperature": []}}, "the list of values is empty"),
    ({"params": {"temperature": 300}}, "temperature: expected a list of values"),
    ({"params": {"temperature": {"normal": [0, 1]}}}, "unknown distribution 'normal'"),
    ({"param": {"temperature": [300]}}, "unknown key\\(s\\) \\['param'\\]"),
    ({"sets": [{"temperature": 1, "pressure": 1}], "params": {"t": [1]}}, "either 'params'"),
    ({"params": {"temperature": [300], "pressure": [1]}, "sampler": {"random": {"n": 5}}}, "n=5 is larger"),
    ([1, 2], "expected a mapping"),
])
def test_bad_yaml_sweep_section(section, message):
    data = yaml.safe_load(YAML.format(workdir=".", sampler="cartesian"))
    data["sweep"] = section
    with pytest.raises(SweepError, match=message):
        expand_sweep(data)


def test_errors_in_a_sweep_files_tasks_name_the_file():
    data = yaml.safe_load(YAML.format(workdir=".", sampler="cartesian"))
    data["tasks"][0]["command"] = data["tasks"][0].pop("commands")
    with pytest.raises(ValidationError, match="scan.yaml: tasks\\[0\\] \\('prepare'\\): unknown field 'command'"):
        expand_sweep(data, source="scan.yaml")


def test_doc_example_runs_as_written(project, capsys):
    ns: dict = {}
    exec(compile(snippet("sweeps.md", "Example"), "docs/sweeps.md", "exec"), ns)
    assert ns["results"].ok and len(ns["results"]) == 18
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"temperature={t},pressure={p} -> T={t} P={p} steps=100" for t in (300, 350) for p in (1, 2, 5)]
    page = (DOCS / "sweeps.md").read_text()
    printed = re.search(r"It prints.*?```\n(.*?)```", page, re.S).group(1).splitlines()
    assert [line for line in printed if line != "..."] == [lines[0], lines[1], lines[-1]]


def test_doc_yaml_runs(project):
    text = re.search(r"```yaml\n(.*?)```", (DOCS / "sweeps.md").read_text(), re.S).group(1)
    data = yaml.safe_load(text)
    data["workdir"] = str(project)
    results = ExperimentExecutor(Experiment.from_yaml(yaml.safe_dump(data)), progress=False).run()
    assert results.ok and len(results) == 12
    assert (project / "T350_P2" / "out.txt").read_text() == "T=350 P=2 steps=100\n"
    assert taskfuncs  # the YAML test above refers to taskfuncs by 'module:function'
