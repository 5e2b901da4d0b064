"""The documentation site (docs/, mkdocs.yml): every Python block of the user-guide pages runs as written,
the `molexp` command lines of the bash blocks run with the exit codes they state, and the site builds
with `mkdocs build --strict`.

A page's Python blocks run in order in one namespace (a page is one story), in an empty temporary
directory that is also the current directory. The SLURM page runs only where `sbatch` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import leftovers
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Pages whose Python blocks are run here (the seed guide, sweeps.md and reports.md have their own tests).
LOCAL_PAGES = ["index.md", "tasks.md", "files.md", "execution.md", "resources.md", "checkpoint.md", "executors.md",
               "cli.md", "migrating.md"]
CLUSTER_PAGES = ["clusters.md", "slurm.md"]
TESTED_ELSEWHERE = {"workflow-execution.md", "sweeps.md", "reports.md"}

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
_EXPECTED_EXIT = re.compile(r"#.*\bexits (\d+)")
HAVE_SBATCH = shutil.which("sbatch") is not None


def blocks(page: str, lang: str, heading: str | None = None) -> list[str]:
    """The code of the ```lang blocks of docs/<page>, in order; only those under ``heading`` if given."""
    text = (DOCS / page).read_text()
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) != lang:
            continue
        under = max((h for h in headings if h[0] < m.start()), default=(0, ""))[1]
        if heading is None or under == heading:
            out.append(m.group(2))
    return out


def run_python_blocks(page: str, ns: dict | None = None, only: list[int] | None = None) -> dict:
    ns = {"__name__": "docs_" + page.replace(".", "_"), **(ns or {})}
    for i, code in enumerate(blocks(page, "python")):
        if only is None or i in only:
            exec(compile(code, f"docs/{page}[python block {i}]", "exec"), ns)
    return ns


def molexp_lines(page: str, heading: str) -> list[tuple[str, int]]:
    """(command line, expected exit code) for each `molexp ...` line of the bash blocks under ``heading``."""
    out = []
    for code in blocks(page, "bash", heading):
        for line in code.splitlines():
            if line.startswith("molexp "):
                m = _EXPECTED_EXIT.search(line)
                out.append((line.split("#")[0].strip(), int(m.group(1)) if m else 0))
    return out


def run_cli(line: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a documented `molexp ...` line with this interpreter (and this checkout's molexp)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = line.replace("molexp ", f"'{sys.executable}' -m molexp.cli ", 1)
    return subprocess.run(["bash", "-c", argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_cli_section(page: str, heading: str, cwd: Path) -> list[subprocess.CompletedProcess]:
    """Write the section's YAML block to experiment.yaml, then run its `molexp` lines, checking exit codes."""
    yaml_blocks = blocks(page, "yaml", heading)
    if yaml_blocks:
        (cwd / "experiment.yaml").write_text(yaml_blocks[0])
    done = []
    lines = molexp_lines(page, heading)
    assert lines, f"no molexp command under {heading!r} in {page}"
    for code in blocks(page, "bash", heading):
        for line in code.splitlines():
            if line.startswith("touch "):  # file preparation written in the block itself
                subprocess.run(["bash", "-c", line], cwd=cwd, check=True)
            elif line.startswith("molexp "):
                m = _EXPECTED_EXIT.search(line)
                cmd, expected = line.split("#")[0].strip(), int(m.group(1)) if m else 0
                p = run_cli(cmd, cwd)
                assert p.returncode == expected, f"{cmd!r} exited {p.returncode}, not {expected}:\n{p.stdout}\n{p.stderr}"
                done.append(p)
    return done


# -- every block is accounted for -------------------------------------------------------------------------

def test_every_page_with_python_blocks_is_run_here_or_elsewhere():
    pages = {p.name for p in DOCS.glob("*.md") if blocks(p.name, "python")}
    assert pages <= set(LOCAL_PAGES) | set(CLUSTER_PAGES) | TESTED_ELSEWHERE, pages
    for page in LOCAL_PAGES + CLUSTER_PAGES:
        assert blocks(page, "python"), f"{page} has no python block"


def test_api_reference_lists_every_public_name():
    import molexp

    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^::: molexp\.(\w+)$", text, re.M))
    assert set(molexp.__all__) - documented == set()


def test_nav_lists_every_page():
    yaml = pytest.importorskip("yaml")
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {next(iter(item.values())) for item in nav}
    assert listed == {p.name for p in DOCS.glob("*.md")}
    assert {"User guide (seed)": "workflow-execution.md"} in nav


# -- the pages that run on this machine -------------------------------------------------------------------

@pytest.mark.parametrize("page", LOCAL_PAGES)
def test_python_blocks_run_as_written(project, page, capsys):
    ns = run_python_blocks(page)
    out = capsys.readouterr().out
    if page == "index.md":
        assert out.splitlines()[0].split() == ["task", "status", "tries", "time", "detail"]
        assert ns["results"]["analyse"].value == "T=310"
    if page == "tasks.md":
        assert (project / "experiment.yaml").exists() and ns["results"].ok
    if page == "files.md":
        assert "input data/A.fastq changed" in out and "missing_output" not in out
    if page == "execution.md":
        assert "exit: command exited with code 3: exit 3" in out
    if page == "executors.md":
        assert "scale-up" in out
    if page == "migrating.md":
        assert out.splitlines()[:2] == ["['data_preparation', 'analysis']", "preparing --input data.txt"]
        assert ns["results"]["total"].stdout == "6" and (project / "experiment.yaml").exists()


def test_index_command_line(project):
    (project / "experiment.yaml").write_text(
        "name: first\nparams: {temperature: 300}\ntasks:\n"
        "  - {type: shell, name: simulate, commands: ['echo T=$temperature > out.txt']}\n")
    [p] = run_cli_section("index.md", "A first experiment", project)
    assert (project / "out.txt").read_text() == "T=310\n"


def test_cli_page_commands(project):
    ran = run_cli_section("cli.md", "Example", project)
    graph, run, failed, status, report, missing = ran
    assert graph.stdout.splitlines() == ["layer 0: simulate", "layer 1: analyse, check"]
    assert run.stdout.splitlines()[-1].startswith("3 completed, 0 cached, 0 failed")
    assert "--- check failed (exit)" in failed.stdout
    assert status.stdout.startswith("experiment cli-demo: 3 tasks recorded: 2 completed, 1 failed")
    assert (project / "report.html").exists() and "wrote report.html" in report.stdout
    assert "no such experiment file: missing.yaml" in missing.stderr

    status_failed, as_json, show, logs, stderr, dot, clean = run_cli_section("cli.md", "Looking at a run", project)
    assert status_failed.stdout.splitlines()[2].split()[:2] == ["check", "failed"]
    assert "analyse" not in status_failed.stdout and "--- check failed (exit)" in status_failed.stdout
    assert json.loads(as_json.stdout)["counts"] == {"completed": 2, "failed": 1}
    assert "status:    failed" in show.stdout and "failure:   exit" in show.stdout
    assert logs.stdout == "T=300\n" and stderr.stdout == ""
    assert dot.stdout.startswith("digraph") and '[label="check"' in dot.stdout
    assert clean.stdout.startswith("removed .molexp/cli-demo") and not (project / ".molexp/cli-demo").exists()

    (project / "workflow.py").write_text(blocks("cli.md", "python", "A Python workflow file")[0])
    [wf] = run_cli_section("cli.md", "A Python workflow file", project)
    assert (project / "said.txt").read_text() == "bonjour\n" and "shout  completed" in wf.stdout


def test_checkpoint_page_commands(project):
    first, status, resumed = run_cli_section("checkpoint.md", "From the command line", project)
    assert "simulate  failed" in first.stdout
    assert status.stdout.startswith("experiment ckpt-demo: 2 tasks recorded: 1 completed, 1 failed")
    assert resumed.stdout.splitlines()[-1].startswith("1 completed, 1 cached, 0 failed")


# -- clusters ---------------------------------------------------------------------------------------------

class HandStartedCluster:
    """The page's `dask scheduler` / `dask worker` lines, as processes in their own sessions."""

    def __init__(self, directory: Path, bash: str):
        self.procs = []
        self.directory = directory
        extra = {"dask scheduler": ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"],
                 "dask worker": ["--host", "127.0.0.1", "--no-dashboard"]}
        module = {"dask scheduler": "distributed.cli.dask_scheduler", "dask worker": "distributed.cli.dask_worker"}
        for i, line in enumerate(l.rstrip(" &") for l in bash.splitlines() if l.startswith("dask ")):
            which = " ".join(line.split()[:2])
            argv = [sys.executable, "-m", module[which], *line.split()[2:], *extra[which]]
            with open(directory / f"dask-{i}.log", "wb") as log:   # the process keeps its own copy
                self.procs.append(subprocess.Popen(argv, cwd=directory, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
            if which == "dask scheduler":
                self._wait_for_file(directory / "scheduler.json")

    @staticmethod
    def _wait_for_file(path: Path, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not path.exists() or not path.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not write its file"
            time.sleep(0.1)

    def close(self):
        leftovers.stop_groups(self.procs)


@pytest.mark.cluster
def test_clusters_page(project, capsys, caplog):
    import logging

    [bash] = blocks("clusters.md", "bash")
    procs = HandStartedCluster(project, bash)
    try:
        with caplog.at_level(logging.INFO, logger="molexp"):
            ns = run_python_blocks("clusters.md")
        out = capsys.readouterr().out
        address = json.loads((project / "scheduler.json").read_text())["address"]
    finally:
        procs.close()   # (a scheduler stopped with SIGTERM removes its file)
    assert address == ns["address"]
    assert "http://" in out                      # the dashboard link, printed
    assert "dashboard: http://" in caplog.text   # and logged by molexp
    assert len((project / "done.txt").read_text().split()) == 12 + 6  # by-address twice, dashboard once
    assert ns["many_results"].ok and len(ns["many_results"]) == 500    # bundles


# -- SLURM ------------------------------------------------------------------------------------------------

def _squeue() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout
    return out.split()


def _wait_for_empty_queue(timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while _squeue():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.fixture
def slurm_project(project):
    assert _wait_for_empty_queue(), "jobs from an earlier test are still queued"
    yield project
    subprocess.run(["scancel", "--name", "dask-worker"], timeout=30)
    _wait_for_empty_queue()


@pytest.mark.slurm
@pytest.mark.skipif(not HAVE_SBATCH, reason="sbatch not on PATH: no SLURM here (start one with ci/slurm-up.sh)")
def test_slurm_page_python_blocks(slurm_project):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (pip install -e '.[hpc]')")
    ns = run_python_blocks("slurm.md")
    assert ns["results"].ok
    assert _wait_for_empty_queue(60)   # each block closed its cluster (the adaptive one shrank to zero)


@pytest.mark.slurm
@pytest.mark.skipif(not HAVE_SBATCH, reason="sbatch not on PATH: no SLURM here (start one with ci/slurm-up.sh)")
def test_slurm_page_command_line(slurm_project):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (pip install -e '.[hpc]')")
    [p] = run_cli_section("slurm.md", "From an experiment file", slurm_project)
    assert "dashboard:" in p.stderr
    assert p.stdout.splitlines()[-1].startswith("2 completed")
    assert _wait_for_empty_queue(60)   # molexp closed the cluster it made


# -- the site ---------------------------------------------------------------------------------------------

def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    for page in ["index.html", "tasks/index.html", "slurm/index.html", "api/index.html",
                 "workflow-execution/index.html"]:
        assert (tmp_path / "site" / page).exists(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "ExperimentExecutor" in api and "Options shared by every executor" in api


# -- the seed guide: every snippet runs as a script of its own ---------------------------------------------

def standalone_scripts(page: str) -> dict[str, str]:
    """Heading -> the last python block under it (the complete script that follows a fragment, or the
    snippet itself when it is complete). Headings are read outside code blocks only."""
    text = (DOCS / page).read_text()
    fences = [(m.start(), m.end(), m.group(1), m.group(2)) for m in _FENCE.finditer(text)]
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)
                if not any(a <= m.start() < b for a, b, _, _ in fences)]
    out: dict[str, str] = {}
    for start, _, lang, code in fences:
        if lang == "python":
            out[max((h for h in headings if h[0] < start), default=(0, ""))[1]] = code
    return out


GUIDE_SCRIPTS = {   # heading -> what the script prints (a fragment of its stdout)
    "Experiment-Based Workflows": "", "Pipeline Pattern": "",
    "Fan-out Pattern": "4 completed, 0 cached, 0 failed", "Fan-in Pattern": "4 completed, 0 cached, 0 failed",
    "Diamond Pattern": "4 completed, 0 cached, 0 failed",
    "Conditional Execution": "skipped condition is false", "Retry Logic": "completed 2",
    "Resource Management": "peak mem", "Progress Monitoring": "Task analysis: completed",
    "Batch Processing": "job-7", "Streaming Processing": "fast completed\nafter-fast completed\nslow completed",
    "Adaptive Execution": "4 completed, 0 cached, 0 failed",
    "Fault Tolerance": "1 completed, 0 cached, 1 failed, 1 skipped",
    "Checkpoint and Resume": "{'prepare': 'cached', 'analysis': 'cached'}",
}


def test_every_seed_guide_snippet_has_a_standalone_script():
    assert set(standalone_scripts("workflow-execution.md")) == set(GUIDE_SCRIPTS)


@pytest.mark.parametrize("heading", list(GUIDE_SCRIPTS))
def test_seed_guide_snippets_run_as_standalone_scripts(tmp_path, heading):
    code = standalone_scripts("workflow-execution.md")[heading]
    (tmp_path / "script.py").write_text(code)
    stage = "import pathlib, sys\nfor d in sys.argv[2:]:\n    pathlib.Path(d).mkdir(parents=True, exist_ok=True)\n" \
            "pathlib.Path(sys.argv[-1] if len(sys.argv) > 2 else 'out').mkdir(exist_ok=True)\nprint(sys.argv[0])\n"
    for script in ("scripts/prepare_data.py", "scripts/analyze.py", "scripts/visualize.py", "preprocess.py",
                   "analyze.py", "visualize.py"):
        (tmp_path / script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / script).write_text(stage)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)   # the seed's commands say `python`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PATH": os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", "")])}
    p = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=240)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    assert GUIDE_SCRIPTS[heading] in p.stdout, p.stdout
    if heading in ("Experiment-Based Workflows", "Pipeline Pattern"):   # the scripts ran, in order
        assert (tmp_path / ".molexp").is_dir() and list((tmp_path / ".molexp").rglob("*.out"))
