"""`molexp show | logs | status | graph | clean`, `--version`, `python -m molexp`, -q: each on a real run's
checkpoint, as a real subprocess, asserting what it prints."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import dedent

WORKFLOW = dedent("""
    from molexp import Experiment, LocalTask, PythonTask

    experiment = Experiment("inspect-demo")
    experiment.add_task(LocalTask("prepare", commands=["seq 1 300 | sed 's/^/line /'",
                                                      "echo warning on stderr >&2"]))
    experiment.add_task(PythonTask("energies", "analysis:energies", deps=["prepare"]))
    experiment.add_task(LocalTask("plot", commands=["echo plotted"], deps=["energies"]))
    """)
ANALYSIS = dedent("""
    def energies(prepare=None):
        return {"energy": -1.5, "labels": ["a", "b"]}
    """)
CHECKPOINT = ".molexp/inspect-demo/checkpoint"


def molexp(*args: str, cwd: Path, module: str = "molexp", **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture
def ran(tmp_path):
    """A finished, successful `molexp run` of a workflow with shell and Python tasks."""
    (tmp_path / "workflow.py").write_text(WORKFLOW)
    (tmp_path / "analysis.py").write_text(ANALYSIS)
    p = molexp("run", "workflow.py", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    return tmp_path, p


def test_a_successful_run_ends_saying_where_the_logs_and_checkpoint_are(ran):
    cwd, p = ran
    last = p.stdout.splitlines()[-1]
    assert last.startswith("3 completed, 0 cached, 0 failed, 0 skipped in ")
    assert last.endswith(f"; logs in {CHECKPOINT}/logs, checkpoint in {CHECKPOINT}"), last
    assert (cwd / CHECKPOINT / "logs" / "prepare.out").exists()
    assert not (cwd / CHECKPOINT / "running.json").exists()   # only while a run goes


def test_show_prints_a_python_tasks_value_and_a_shell_tasks_logs(ran):
    cwd, _ = ran
    p = molexp("show", CHECKPOINT, "energies", cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert "status:    completed" in p.stdout and "attempts:  1" in p.stdout
    assert p.stdout.rstrip().endswith("value:\n  {'energy': -1.5, 'labels': ['a', 'b']}"), p.stdout
    shell = molexp("show", "workflow.py", "prepare", cwd=cwd)   # the experiment file names its checkpoint
    assert shell.returncode == 0, shell.stderr
    assert f"stdout:    {cwd / CHECKPOINT / 'logs' / 'prepare.out'}" in shell.stdout
    assert "  line 300" in shell.stdout and "exit codes: 0 0" in shell.stdout
    assert "  warning on stderr" in shell.stdout and "value:" not in shell.stdout


def test_logs_prints_the_whole_file_and_stderr_on_request(ran):
    cwd, _ = ran
    p = molexp("logs", CHECKPOINT, "prepare", cwd=cwd)
    assert p.returncode == 0 and p.stdout == "".join(f"line {i}\n" for i in range(1, 301))
    recorded = json.loads(molexp("status", CHECKPOINT, "--json", cwd=cwd).stdout)["tasks"]["prepare"]["stdout"]
    assert len(recorded.splitlines()) < 300   # the record keeps a tail; `logs` gives the whole file
    err = molexp("logs", CHECKPOINT, "prepare", "--stderr", cwd=cwd)
    assert err.returncode == 0 and err.stdout == "warning on stderr\n"
    none = molexp("logs", CHECKPOINT, "energies", cwd=cwd)
    assert none.returncode == 2 and none.stderr.count("\n") == 1 and "has no stdout log file" in none.stderr


def test_logs_on_a_terminal_goes_through_the_pager(ran):
    cwd, _ = ran
    leader, follower = pty.openpty()
    env = {**os.environ, "MOLEXP_PAGER": "sed -n 's/^/paged: /;$p'"}
    try:
        p = subprocess.run([sys.executable, "-m", "molexp", "logs", CHECKPOINT, "prepare"], cwd=cwd, env=env,
                           stdout=follower, stderr=subprocess.PIPE, timeout=60)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert p.returncode == 0, p.stderr
    assert out.decode().strip() == "paged: line 300"


def test_status_table_filters_and_json(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: mixed
        tasks:
          - {type: shell, name: good, commands: ["echo ok"]}
          - {type: shell, name: bad, commands: ["echo boom >&2", "exit 3"]}
          - {type: shell, name: after, deps: [bad], commands: ["true"]}
        """))
    assert molexp("run", "exp.yaml", "--continue", "--no-progress", cwd=tmp_path).returncode == 1
    ck = ".molexp/mixed/checkpoint"
    p = molexp("status", ck, cwd=tmp_path)
    lines = p.stdout.splitlines()
    assert lines[0] == "experiment mixed: 3 tasks recorded: 1 completed, 1 failed, 1 skipped"
    assert lines[1].split() == ["task", "status", "tries", "time", "detail"]
    rows = {line.split()[0]: line.split()[1] for line in lines[2:5]}
    assert rows == {"good": "completed", "bad": "failed", "after": "skipped"}
    failed = molexp("status", ck, "--failed", cwd=tmp_path).stdout.splitlines()
    assert failed[2].split()[:2] == ["bad", "failed"] and not any("good" in x for x in failed)
    assert "--- bad failed (exit): command exited with code 3: exit 3" in failed and "boom" in failed
    data = json.loads(molexp("status", ck, "--json", cwd=tmp_path).stdout)
    assert data["experiment"] == "mixed" and data["recorded"] == 3 and data["run"] is None
    assert {n: t["status"] for n, t in data["tasks"].items()} == rows
    assert data["tasks"]["bad"]["failure"] == "exit" and data["tasks"]["bad"]["returncodes"] == [0, 3]
    idle = molexp("status", ck, "--running", cwd=tmp_path)
    assert idle.returncode == 0 and "no run is going" in idle.stdout
    missing = molexp("status", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("molexp: error: no checkpoint in nowhere")


def test_status_during_a_run_shows_what_is_running(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: live
        tasks:
          - {type: shell, name: quick, commands: ["true"]}
          - {type: shell, name: waits, deps: [quick], commands: ["while [ ! -e go ]; do sleep 0.05; done"]}
          - {type: shell, name: last, deps: [waits], commands: ["true"]}
        """))
    run = subprocess.Popen([sys.executable, "-m", "molexp", "run", "exp.yaml", "--no-progress"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            p = molexp("status", ".molexp/live/checkpoint", "--running", cwd=tmp_path)
            if "waits  running" in p.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "waits  running" in p.stdout, p.stdout + p.stderr
        assert "a run is going: pid" in p.stdout and "1 running, 1 of 3 recorded" in p.stdout, p.stdout
        data = json.loads(molexp("status", ".molexp/live/checkpoint", "--json", cwd=tmp_path).stdout)
        assert data["run"]["alive"] and data["run"]["running"] == ["waits"] and data["run"]["total"] == 3
    finally:
        (tmp_path / "go").touch()
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert not (tmp_path / ".molexp/live/checkpoint/running.json").exists()


def test_graph_formats(ran):
    cwd, _ = ran
    text = molexp("graph", "workflow.py", cwd=cwd)
    assert text.stdout.splitlines() == ["layer 0: prepare", "layer 1: energies", "layer 2: plot"]
    mermaid = molexp("graph", "workflow.py", "--format", "mermaid", cwd=cwd).stdout
    assert mermaid.startswith("flowchart TD") and '["energies"]' in mermaid
    svg = molexp("graph", "workflow.py", "--format", "svg", "-o", "g.svg", cwd=cwd)
    assert svg.stdout == "wrote g.svg\n" and (cwd / "g.svg").read_text().lstrip().startswith("<svg")
    dot = molexp("graph", "workflow.py", "--format", "dot", cwd=cwd)
    assert dot.returncode == 0 and dot.stdout.startswith("digraph")
    if shutil.which("dot"):
        rendered = subprocess.run(["dot", "-Tsvg"], input=dot.stdout, capture_output=True, text=True, timeout=60)
        assert rendered.returncode == 0 and "<svg" in rendered.stdout, rendered.stderr
    bad = molexp("graph", "workflow.py", "--format", "png", cwd=cwd)
    assert bad.returncode == 2 and "invalid choice: 'png'" in bad.stderr


def test_clean_asks_then_removes_the_state(ran):
    cwd, _ = ran
    state = cwd / ".molexp" / "inspect-demo"
    refused = molexp("clean", "workflow.py", cwd=cwd, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr and state.exists()
    p = molexp("clean", "workflow.py", "--yes", cwd=cwd)
    assert p.returncode == 0 and p.stdout.startswith("removed .molexp/inspect-demo (") and not state.exists()
    assert (cwd / "workflow.py").exists() and (cwd / "analysis.py").exists()
    again = molexp("clean", "workflow.py", "--yes", cwd=cwd)
    assert again.returncode == 0 and again.stdout.startswith("nothing to clean")


def test_version_module_entry_quiet_and_help(ran):
    cwd, _ = ran
    from molexp import __version__

    for module in ("molexp", "molexp.cli"):
        v = molexp("--version", cwd=cwd, module=module)
        assert v.returncode == 0 and v.stdout.startswith(f"molexp {__version__} ")
    quiet = molexp("run", "workflow.py", "-q", cwd=cwd)
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == 1 and quiet.stderr == ""
    assert quiet.stdout.startswith("3 completed")
    for command in ("run", "status", "show", "logs", "graph", "clean", "report"):
        text = molexp(command, "--help", cwd=cwd).stdout
        positionals = text.split("positional arguments:")[1].split("options:")[0]
        entries = [line for line in positionals.splitlines() if line.startswith("  ") and not line.startswith("   ")]
        assert entries and all(len(e.split(None, 1)) == 2 for e in entries), (command, positionals)


def test_status_of_a_run_from_python_shows_what_runs_now(tmp_path):
    """The run's session writes the running file, so a run started from Python shows what runs now too."""
    (tmp_path / "run.py").write_text(dedent("""
        from molexp import Experiment, ExperimentExecutor, LocalTask

        e = Experiment("from-python")
        e.add_task(LocalTask("waits", commands=["while [ ! -e go ]; do sleep 0.05; done"]))
        ExperimentExecutor(e, progress=False, checkpoint_dir="ck").run()
        """))
    run = subprocess.Popen([sys.executable, "run.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            p = molexp("status", "ck", cwd=tmp_path)
            if "1 running" in p.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert p.stdout.splitlines()[0] == (f"experiment from-python: 0 tasks recorded: none yet (a run is going: pid "
                                            f"{run.pid}, 1 running, 0 of 1 recorded)")
        data = json.loads(molexp("status", "ck", "--json", cwd=tmp_path).stdout)
        assert data["run"]["alive"] and data["run"]["pid"] == run.pid and data["run"]["running"] == ["waits"]
    finally:
        (tmp_path / "go").touch()
        run.communicate(timeout=60)
    assert run.returncode == 0
