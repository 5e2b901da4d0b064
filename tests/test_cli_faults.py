"""Faults a real `molexp run` answers for (issue 17, points 7, 6, 11): bad input refused with exit 2 and one
line before anything runs, a locked checkpoint (exit 4), a checkpoint that cannot be written (the table, one
line, exit 5), an internal error (one line, exit 70), and progress lines when stderr is a file."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import time

import psutil
import pytest
from conftest import dedent

RUN = [sys.executable, "-m", "molexp.cli", "run"]


def molexp_run(*args: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    """`molexp run ARGS` to its end; afterwards no process it started may be left."""
    proc = subprocess.Popen([*RUN, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(cwd), **(env or {})})
    me = psutil.Process(proc.pid)
    seen: set[psutil.Process] = set()
    try:
        while proc.poll() is None:   # who it starts, to check that none survives it
            try:
                seen.update(me.children(recursive=True))
            except psutil.Error:
                pass
            time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def refused(p: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr naming ``fragments``, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "" and p.stderr.count("\n") == 1 and p.stderr.startswith("molexp: error: "), p.stderr
    assert "Traceback" not in p.stderr
    for f in fragments:
        assert f in p.stderr, (f, p.stderr)
    return p.stderr


# -- point 7: NUL characters ---------------------------------------------------------------------------------

def test_a_nul_in_the_experiment_name_is_refused(tmp_path):
    (tmp_path / "exp.yaml").write_text('name: "x\\0y"\ntasks:\n  - {name: t, commands: [touch ran]}\n')
    refused(molexp_run("exp.yaml", cwd=tmp_path), "experiment name must not contain a NUL character")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("task, named", [
    ('{name: "a\\0b", commands: ["touch ran"]}', "task name must not contain a NUL character"),
    ('{name: a, commands: ["touch ran", "echo \\"x\\0y\\""]}', "task 'a': commands[1] must not contain a NUL"),
    ('{name: a, commands: ["touch ran"], env: {X: "x\\0y"}}', "task 'a': env['X'] must not contain a NUL"),
], ids=["name", "command", "env"])
def test_a_nul_character_is_refused_before_anything_runs(tmp_path, task, named):
    (tmp_path / "exp.yaml").write_text(f"name: nul\ntasks:\n  - {{name: first, commands: [touch ran]}}\n  - {task}\n")
    refused(molexp_run("exp.yaml", cwd=tmp_path), named)
    assert not (tmp_path / "ran").exists() and not (tmp_path / ".molexp").exists()


def test_a_nul_in_a_template_value_is_refused(tmp_path):
    (tmp_path / "exp.yaml").write_text('name: nul\nparams: {word: "x\\0y"}\n'
                                       'tasks:\n  - {name: say, commands: ["echo $word > said"]}\n')
    refused(molexp_run("exp.yaml", cwd=tmp_path), "task 'say': the value of $word", "NUL")
    assert not (tmp_path / "said").exists()


# -- point 7: paths made from the experiment's name and --checkpoint-dir --------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/abs/x", ".."])
def test_an_odd_experiment_name_makes_no_path_outside_the_workdir(tmp_path, name):
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    (work / "exp.yaml").write_text(dedent(f"""
        name: "{name}"
        tasks:
          - {{name: t, commands: ["echo hi"]}}
        """))
    p = molexp_run("exp.yaml", "--no-progress", cwd=work)
    assert p.returncode == 0, p.stderr
    made = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*"))
    assert all(m.startswith("a/b/work") or m in ("a", "a/b") for m in made), made
    journals = list((work / ".molexp").glob("*/checkpoint/journal.jsonl"))
    assert len(journals) == 1 and (journals[0].parent / "logs" / "t.out").read_text() == "hi\n"
    assert not os.path.exists("/abs")


def test_checkpoint_dir_that_is_a_file_or_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "exp.yaml").write_text("name: ck\ntasks:\n  - {name: t, commands: [touch ran]}\n")
    (tmp_path / "afile").write_text("x")
    refused(molexp_run("exp.yaml", "--checkpoint-dir", "afile", cwd=tmp_path),
            "--checkpoint-dir afile: expected a directory, but afile is a file")
    refused(molexp_run("exp.yaml", "--checkpoint-dir", "afile/sub", cwd=tmp_path),
            "--checkpoint-dir afile/sub: cannot create the directory afile/sub")
    refused(molexp_run("exp.yaml", "--checkpoint-dir", "/proc/nope", cwd=tmp_path),
            "--checkpoint-dir /proc/nope: cannot create the directory /proc/nope")
    assert not (tmp_path / "ran").exists() and not (tmp_path / ".molexp").exists()
    assert (tmp_path / "afile").read_text() == "x" and sorted(os.listdir(tmp_path)) == ["afile", "exp.yaml"]


# -- point 7: --param --------------------------------------------------------------------------------------

@pytest.fixture
def param_exp(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: params
        params: {temperature: 300}
        tasks:
          - {name: sim, commands: ["echo T=$temperature P=${pressure} > out.txt"], kwargs: {pressure: 1}}
        """))
    return tmp_path


def test_a_malformed_param_is_refused_in_one_line(param_exp):
    refused(molexp_run("exp.yaml", "-p", "pressure=[1", cwd=param_exp),
            "--param pressure: the value '[1' is not valid YAML")
    refused(molexp_run("exp.yaml", "-p", "pressure", cwd=param_exp), "--param expects KEY=VALUE, got 'pressure'")
    refused(molexp_run("exp.yaml", "-p", "=3", cwd=param_exp), "--param expects KEY=VALUE, got '=3'")
    assert not (param_exp / "out.txt").exists()


def test_a_param_no_task_uses_is_refused_or_with_the_option_a_warning(param_exp):
    refused(molexp_run("exp.yaml", "-p", "presure=2", cwd=param_exp),
            "--param presure: no task of 'params' uses a parameter 'presure' (did you mean 'pressure'?)",
            "known parameters: pressure, temperature", "--allow-unused-params")
    assert not (param_exp / "out.txt").exists()
    p = molexp_run("exp.yaml", "-p", "presure=2", "-p", "temperature=310", "--allow-unused-params",
                   "--no-progress", cwd=param_exp)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("molexp: warning: --param presure: no task of 'params' uses")
    assert (param_exp / "out.txt").read_text() == "T=310 P=1\n"
    # a parameter the experiment declares, or a Python task takes, is known
    (param_exp / "wf.py").write_text(dedent("""
        from molexp import Experiment, task
        experiment = Experiment("wf", params={"unused_but_declared": 1})

        @task
        def scale(factor=2):
            return factor * 2

        experiment.add_task(scale)
        """))
    p = molexp_run("wf.py", "-p", "factor=5", "-p", "unused_but_declared=3", "--no-progress", cwd=param_exp)
    assert p.returncode == 0 and p.stderr == "", p.stderr


# -- point 7: a workflow.py that cannot be loaded -----------------------------------------------------------

@pytest.mark.parametrize("source, line, error", [
    ("x = 1\ndef broken(:\n    pass\n", 2, "SyntaxError: invalid syntax"),
    ("import os\nimport no_such_module_here\n", 2, "ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("def f():\n    return 1 / 0\n\nvalue = f()\n", 2, "ZeroDivisionError: division by zero"),
    ("from molexp import LocalTask\n\nt = LocalTask('bad\\0name', commands=['true'])\n", 3,
     "task name must not contain a NUL character"),
    ("import sys\nsys.exit(3)\n", 2, "it called sys.exit(3)"),
], ids=["syntax", "import", "exception", "molexp-error", "exit"])
def test_a_workflow_file_that_fails_to_load_is_one_line_with_its_line(tmp_path, source, line, error):
    (tmp_path / "workflow.py").write_text(source)
    refused(molexp_run("workflow.py", cwd=tmp_path), "cannot load workflow.py", f"line {line}", error)


# -- point 7: a locked checkpoint has its own exit code -----------------------------------------------------

def test_a_checkpoint_another_run_holds_exits_4(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: locked
        tasks:
          - {name: hold, commands: ["touch holding; while [ ! -f release ]; do sleep 0.05; done"]}
        """))
    first = subprocess.Popen([*RUN, "exp.yaml", "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "holding").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = molexp_run("exp.yaml", "--no-progress", cwd=tmp_path)
        (tmp_path / "release").touch()
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert second.returncode == 4 and second.stdout == "" and second.stderr.count("\n") == 1
    assert second.stderr.startswith("molexp: checkpoint locked: checkpoint directory ")
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr


# -- point 6 (CLI side): the checkpoint cannot be written during the run --------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_a_full_checkpoint_disk_prints_the_table_one_line_and_exits_5(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (tmp_path / "workflow.py").write_text(dedent("""
        import os
        from molexp import Experiment, LocalTask, PythonTask

        def big():
            return os.urandom(200_000)    # does not fit in the 64 KB checkpoint disk

        experiment = Experiment("full")
        experiment.add_task(LocalTask("first", commands=["true"]))
        experiment.add_task(PythonTask("big", big, deps=["first"]))
        experiment.add_task(LocalTask("running", commands=["touch running-started; sleep 97.25"]))
        experiment.add_task(LocalTask("after", commands=["touch after-ran"], deps=["big"]))
        """))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(ck)], check=True)
    try:
        p = molexp_run("workflow.py", "--checkpoint-dir", "ck", "--no-progress", "--workers", "3", cwd=tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(ck)], check=False)
    assert p.returncode == 5, (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"molexp: checkpoint error: cannot write the checkpoint {ck}")
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["task", "status", "tries", "time", "detail"]
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:5]}
    assert rows["first"].startswith("completed") and (tmp_path / "running-started").exists()
    assert rows["running"].split()[0] == "skipped" and "terminated while running: the checkpoint cannot" in rows[
        "running"]
    # `after` may have started in the moment between `big`'s end and the journal failing (the local scheduler
    # starts dependents itself): the table says what happened either way, and its summary line agrees
    ran = (tmp_path / "after-ran").exists()
    assert rows["after"].split()[0] == ("completed" if ran else "skipped"), (ran, rows["after"])
    statuses = [r.split()[0] for r in rows.values()]
    assert f" {statuses.count('skipped')} skipped in " in lines[-1]   # the summary line closes the table


def test_a_corrupt_journal_is_one_line_and_exit_5(tmp_path):
    (tmp_path / "exp.yaml").write_text("name: c\ntasks:\n  - {name: t, commands: ['touch ran']}\n")
    assert molexp_run("exp.yaml", "--no-progress", cwd=tmp_path).returncode == 0
    (tmp_path / "ran").unlink()
    journal = tmp_path / ".molexp/c/checkpoint/journal.jsonl"
    with open(journal, "a") as f:
        f.write('{"garbage": 1\n')
    p = molexp_run("exp.yaml", "--no-progress", "--resume", cwd=tmp_path)
    assert p.returncode == 5 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"molexp: checkpoint error: journal {journal}: line 3 is not valid JSON")
    assert not (tmp_path / "ran").exists()


# -- point 5: an internal error -----------------------------------------------------------------------------

INTERNAL = dedent("""
    from molexp import LocalTask, TaskGraph

    class Broken(TaskGraph):          # an object molexp's internals do not expect to fail
        def topological_order(self):
            raise RuntimeError("boom inside")

    experiment = Broken([LocalTask("t", commands=["touch ran"])])
    """)


def test_an_internal_error_is_one_line_and_the_traceback_goes_to_a_file(tmp_path):
    (tmp_path / "workflow.py").write_text(INTERNAL)
    p = molexp_run("workflow.py", "--no-progress", cwd=tmp_path)
    assert p.returncode == 70 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("molexp: internal error: RuntimeError: boom inside (the traceback is in ")
    written = p.stderr.split("the traceback is in ", 1)[1].split(";", 1)[0]
    assert os.path.dirname(written) == str(tmp_path)   # $TMPDIR
    with open(written) as f:
        text = f.read()
    assert text.startswith("Traceback") and "boom inside" in text and "topological_order" in text
    assert not (tmp_path / "ran").exists()
    for how in (["-v"], []):
        p = molexp_run("workflow.py", "--no-progress", *how, cwd=tmp_path, env={"MOLEXP_DEBUG": "" if how else "1"})
        assert p.returncode == 70 and p.stderr.startswith("Traceback (most recent call last):"), p.stderr
        assert p.stderr.splitlines()[-1] == "molexp: internal error: RuntimeError: boom inside"


# -- point 11: progress without a terminal ------------------------------------------------------------------

def test_progress_to_a_file_is_plain_lines_not_bar_frames(tmp_path):
    (tmp_path / "exp.yaml").write_text(dedent("""
        name: lines
        tasks:
          - {name: a, commands: ["true"]}
          - {name: b, commands: ["false"]}
          - {name: c, deps: [a], commands: ["true"]}
        """))
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.run([*RUN, "exp.yaml", "--continue"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=err,
                              text=True, timeout=120)
    assert proc.returncode == 1
    text = (tmp_path / "err.txt").read_text()
    assert "\r" not in text and "it/s" not in text and "task/s" not in text
    assert text.splitlines()[-1] == "molexp: 3/3 tasks done, 1 failed", text


def test_progress_on_a_terminal_is_a_bar(tmp_path):
    (tmp_path / "exp.yaml").write_text("name: bar\ntasks:\n  - {name: a, commands: ['true']}\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # 24 rows, 100 columns
    try:
        proc = subprocess.run([*RUN, "exp.yaml"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=follower,
                              timeout=120)
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:   # EIO: nothing more (the writer is gone)
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"\r" in drawn and b"1/1" in drawn and b"tasks done" not in drawn
