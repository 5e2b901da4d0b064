"""The user guide's workflow patterns, run as written (docs/workflow-execution.md) with real scripts."""

from __future__ import annotations

import sys

import pytest
from conftest import overlapped, timeline, write_stage
from snippets import snippet

from molexp import ExperimentExecutor, LocalTask, TaskGraph, TaskStatus

PAGE = "workflow-execution.md"


def run_snippet(heading: str, namespace: dict | None = None) -> dict:
    ns = dict(namespace or {})
    exec(compile(snippet(PAGE, heading), f"{PAGE}:{heading}", "exec"), ns)
    return ns


def test_experiment_based_workflow_runs_as_written(project):
    write_stage(project / "scripts/prepare_data.py", "prepare_data", outputs=["data/prepared.txt"])
    write_stage(project / "scripts/analyze.py", "run_analysis", inputs=["data/prepared.txt"],
                outputs=["results/analysis.txt"])
    write_stage(project / "scripts/visualize.py", "create_visualization", inputs=["results/analysis.txt"],
                outputs=["plots/figure.txt"])
    ns = run_snippet("Experiment-Based Workflows")
    results = ns["results"]
    assert [r.status for r in results.values()] == [TaskStatus.COMPLETED] * 3
    seen = timeline(project)
    assert seen["run_analysis"]["inputs"] == ["data/prepared.txt"]
    assert seen["create_visualization"]["inputs"] == ["results/analysis.txt"]
    assert seen["prepare_data"]["end"] <= seen["run_analysis"]["start"]
    assert seen["run_analysis"]["end"] <= seen["create_visualization"]["start"]
    assert results["prepare_data"].stdout.strip() == "prepare_data done"
    assert (project / "plots/figure.txt").exists()


def test_pipeline_pattern_runs_as_written(project):
    (project / "data/raw").mkdir(parents=True)
    (project / "data/raw/sample1.txt").write_text("1\n")
    write_stage(project / "preprocess.py", "preprocess", dir_args=True)
    write_stage(project / "analyze.py", "analyze", dir_args=True)
    write_stage(project / "visualize.py", "visualize", dir_args=True)
    results = run_snippet("Pipeline Pattern")["results"]
    assert results.ok and list(results) == ["preprocess", "analyze", "visualize"]
    seen = timeline(project)
    assert seen["analyze"]["inputs"] == ["data/clean/preprocess.txt"]
    assert seen["visualize"]["inputs"] == ["results/analyze.txt"]
    assert (project / "plots/visualize.txt").read_text() == "visualize\n"


def stage_task(project, name, inputs=(), sleep=0.3):
    script = write_stage(project / f"{name}.py", name, inputs=[f"out/{i}.txt" for i in inputs],
                         outputs=[f"out/{name}.txt"], sleep=sleep)
    return LocalTask(name, commands=[f"{sys.executable} {script.name}"])


@pytest.mark.parametrize("heading, names, shape", [
    ("Fan-out Pattern", ["prepare_task", "analysis1_task", "analysis2_task", "analysis3_task"],
     {"analysis1_task": ["prepare_task"], "analysis2_task": ["prepare_task"], "analysis3_task": ["prepare_task"]}),
    ("Fan-in Pattern", ["source1_task", "source2_task", "source3_task", "combine_task"],
     {"combine_task": ["source1_task", "source2_task", "source3_task"]}),
    ("Diamond Pattern", ["task_a", "task_b", "task_c", "task_d"],
     {"task_b": ["task_a"], "task_c": ["task_a"], "task_d": ["task_b", "task_c"]}),
])
def test_graph_patterns_run_as_written(project, target, heading, names, shape):
    tasks = {}
    for n in names:
        tasks[n] = stage_task(project, n, inputs=shape.get(n, ()))
    graph = run_snippet(heading, {"TaskGraph": TaskGraph, **tasks})["graph"]
    results = ExperimentExecutor(graph, progress=False, max_workers=3, **target).run()
    assert results.ok, results.table()
    seen = timeline(project)
    for name, deps in shape.items():
        assert seen[name]["inputs"] == sorted(f"out/{d}.txt" for d in deps)
        for d in deps:
            assert results[d].end <= results[name].start
    # Tasks with no path between them ran at the same time (recorded start/end, not wall-clock limits).
    independent = [n for n in names if n not in shape] if heading == "Fan-in Pattern" else \
        [n for n in names if shape.get(n) == shape.get(names[1])]
    spans = [(results[n].start, results[n].end) for n in independent]
    assert any(overlapped(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]), spans
