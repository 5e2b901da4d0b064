"""The `molexp` command on real files, as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import dedent

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "conformers"


def molexp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molexp.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_shipped_example_runs_and_prints_the_table(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "conformers")
    p = molexp("run", "conformers/experiment.yaml", "--param", "n_conformers=12", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["task", "status", "tries", "time", "detail"]
    assert {line.split()[0] for line in lines[1:7]} == {"generate", "energy-0", "energy-1", "energy-2", "energy-3",
                                                        "aggregate"}
    assert all(line.split()[1] == "completed" for line in lines[1:7])
    assert lines[-1].startswith("6 completed, 0 cached, 0 failed, 0 skipped")
    summary = (tmp_path / "conformers/results/summary.txt").read_text()
    assert summary.startswith("12 conformers; lowest energies:")


def test_failing_experiment_exits_non_zero_and_shows_the_error(tmp_path):
    (tmp_path / "bad.yaml").write_text(dedent("""
        name: bad
        tasks:
          - {type: shell, name: ok, commands: ["echo fine"]}
          - {type: shell, name: broken, deps: [ok], commands: ["echo about to fail >&2", "exit 4"]}
          - {type: shell, name: never, deps: [broken], commands: ["touch never"]}
        """))
    p = molexp("run", "bad.yaml", "--no-progress", cwd=tmp_path)
    assert p.returncode == 1
    rows = {line.split()[0]: line.split()[1] for line in p.stdout.splitlines()[1:4]}
    assert rows == {"ok": "completed", "broken": "failed", "never": "skipped"}
    assert "--- broken failed (exit): command exited with code 4: exit 4" in p.stdout
    assert "about to fail" in p.stdout
    assert not (tmp_path / "never").exists()


def test_workflow_py_with_params_and_workers(tmp_path):
    (tmp_path / "workflow.py").write_text(dedent("""
        from molexp import Experiment, LocalTask, task

        experiment = Experiment("wf", params={"greeting": "hello"})
        experiment.add_task(LocalTask("say", commands=["echo $greeting > said.txt"]))

        @task(deps=["say"])
        def shout(greeting):
            return greeting.upper()

        experiment.add_task(shout)
        """))
    p = molexp("run", "workflow.py", "--param", "greeting=bonjour", "--workers", "1", "--no-progress",
               cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "said.txt").read_text() == "bonjour\n"
    assert "shout  completed" in p.stdout


def test_bad_input_exits_2_before_running(tmp_path):
    (tmp_path / "cycle.yaml").write_text(dedent("""
        name: c
        tasks:
          - {type: shell, name: a, deps: [b], commands: ["touch ran"]}
          - {type: shell, name: b, deps: [a], commands: ["touch ran"]}
        """))
    p = molexp("run", "cycle.yaml", cwd=tmp_path)
    assert p.returncode == 2 and "dependency cycle: a -> b -> a" in p.stderr
    assert not (tmp_path / "ran").exists()
    assert molexp("run", "missing.yaml", cwd=tmp_path).returncode == 2
    (tmp_path / "empty.py").write_text("x = 1\n")
    p = molexp("run", "empty.py", cwd=tmp_path)
    assert p.returncode == 2 and "must define `experiment`" in p.stderr


def test_graph_command_prints_layers(tmp_path):
    p = molexp("graph", str(EXAMPLE / "experiment.yaml"), cwd=tmp_path)
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["layer 0: generate", "layer 1: energy-0, energy-1, energy-2, energy-3",
                                     "layer 2: aggregate"]


def test_dry_run_targets_and_force_on_the_shipped_example(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "conformers")
    exp = ["conformers/experiment.yaml", "--no-progress", "--param", "n_conformers=12"]
    p = molexp("run", *exp, "--dry-run", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.splitlines()[-1].startswith("6 to run, 0 cached, 0 skipped (dry run")
    assert not (tmp_path / "conformers/.molexp").exists() and not (tmp_path / "conformers/data").exists()
    assert molexp("run", *exp, cwd=tmp_path).returncode == 0
    p = molexp("run", *exp, "--resume", "-n", cwd=tmp_path)
    assert p.returncode == 0 and "0 to run, 6 cached, 0 skipped" in p.stdout, p.stdout
    with open(tmp_path / "conformers/scripts/aggregate.py", "a") as f:
        f.write("# edited\n")
    p = molexp("run", *exp, "--resume", "--dry-run", cwd=tmp_path)
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in p.stdout.splitlines()[1:7]}
    assert rows["aggregate"] == ["run", "input scripts/aggregate.py changed"]
    assert {n for n, (action, _) in rows.items() if action == "cached"} == {"generate"} | {
        f"energy-{i}" for i in range(4)}
    p = molexp("run", *exp, "--resume", "--target", "energy-1", "--force", "energy-1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = {line.split()[0]: line.split()[1] for line in p.stdout.splitlines()[1:-1]}
    assert rows == {"generate": "cached", "energy-1": "completed"}
    p = molexp("run", *exp, "--resume", cwd=tmp_path)
    assert "aggregate  completed  1" in p.stdout and "input scripts/aggregate.py changed" in p.stdout
    status = molexp("status", "conformers/.molexp/conformer-scan/checkpoint", cwd=tmp_path)
    assert "input scripts/aggregate.py changed" in status.stdout
    for bad in (["--target", "nope"], ["--force", "generate"]):
        p = molexp("run", *exp, *bad, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr


def test_a_missing_source_input_is_refused_with_exit_2(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: missing
        tasks:
          - {name: first, commands: ["touch first.txt"]}
          - {name: reader, commands: ["cat $inputs"], inputs: [data/raw.txt]}
        """))
    p = molexp("run", "exp.yaml", "--no-progress", cwd=tmp_path)
    assert p.returncode == 2 and not (tmp_path / "first.txt").exists()
    assert p.stderr == ("molexp: error: task 'reader': input 'data/raw.txt' does not exist and no task declares it "
                        f"as an output (looked for {tmp_path / 'data/raw.txt'})\n")
