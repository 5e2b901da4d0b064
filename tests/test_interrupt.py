"""Ctrl-C (SIGINT) and SIGTERM stop a real `molexp run`: running tasks are terminated, nothing is orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib

import psutil
import pytest
from conftest import dedent, no_process_matching


def wait_for_process(fragment: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while no_process_matching(fragment):
        if time.monotonic() > deadline:
            raise AssertionError(f"no process running {fragment!r} after {timeout}s")
        time.sleep(0.05)


@pytest.mark.parametrize("sig, marker", [(signal.SIGINT, "sleep 62.5"), (signal.SIGTERM, "sleep 63.5")])
def test_signal_to_molexp_run_terminates_tasks_and_exits(tmp_path, sig, marker):
    (tmp_path / "exp.yaml").write_text(dedent(f"""
        name: interrupt
        tasks:
          - {{type: shell, name: quick, commands: ["echo quick"]}}
          - {{type: shell, name: long, commands: ["{marker}"]}}
          - {{type: shell, name: piped, commands: ["{marker} | cat"]}}
          - {{type: shell, name: after, deps: [long], commands: ["touch after-ran"]}}
        """))
    proc = subprocess.Popen([sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--workers", "3",
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_process(marker)
        children_before = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert elapsed < 15  # seconds, not the sleep's minute
    assert "interrupted" in err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:5]}
    assert rows["quick"] == "completed" and rows["long"] == "skipped" and rows["after"] == "skipped"
    assert not (tmp_path / "after-ran").exists()
    assert children_before and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                       for p in children_before)
    assert no_process_matching(marker)


# -- every way a terminal or a batch system stops `molexp run` ----------------------------------------------

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def start_run(workdir, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "molexp.cli", "run", *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_files(paths, count: int, proc: subprocess.Popen, timeout: float = 60.0) -> list:
    """Wait until ``count`` of ``paths`` exist (written by the tasks themselves: they are running)."""
    deadline = time.monotonic() + timeout
    while True:
        there = [p for p in paths if p.exists()]
        if len(there) >= count:
            return there
        if proc.poll() is not None:
            raise AssertionError(f"molexp run ended early ({proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {there} of {paths} appeared within {timeout}s")
        time.sleep(0.02)


def alive(processes) -> list:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[str, str]:
    """Wait for the run to end (killing it, and failing, if it does not)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.communicate()
        raise AssertionError("molexp run did not end after the signal")


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    assert lines and lines[0].split() == ["task", "status", "tries", "time", "detail"], out
    return {line.split()[0]: line.split(None, 1)[1] for line in lines[1:] if line and not line[0].isdigit()}


def write_three_sleepers(tmp_path, token: str):
    """quick, then three sleepers that ignore SIGTERM (s1 in a pipe) on two workers, and a task after s1.
    Each sleeper touches started-<name> first: two of them run, the third cannot start while they do."""
    (tmp_path / "exp.yaml").write_text(dedent(f"""
        name: stop
        tasks:
          - {{name: quick, commands: ["echo quick"]}}
          - {{name: s1, deps: [quick], commands: ["trap '' TERM; touch started-s1; sleep {token}1 | cat"]}}
          - {{name: s2, deps: [quick], commands: ["trap '' TERM; touch started-s2; sleep {token}2"]}}
          - {{name: s3, deps: [quick], commands: ["trap '' TERM; touch started-s3; sleep {token}3"]}}
          - {{name: after, deps: [s1], commands: ["touch after-ran"]}}
        """))
    return [tmp_path / f"started-{n}" for n in ("s1", "s2", "s3")]


INT, TERM, HUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP


@pytest.mark.parametrize("signals, gap", [
    ([INT], 0), ([TERM], 0), ([HUP], 0),
    # a second Ctrl-C 0.1 s after the first (tried three times), at once, and a third
    ([INT, INT], 0.1), ([INT, INT], 0.1), ([INT, INT], 0.1), ([INT, INT], 0.0), ([INT, INT, INT], 0.1),
    ([TERM, INT], 0.1),
], ids=["int", "term", "hup", "int-int-1", "int-int-2", "int-int-3", "int-int-at-once", "int-int-int", "term-int"])
def test_every_stop_signal_prints_the_table_closes_the_journal_and_leaves_no_process(tmp_path, request, signals,
                                                                                      gap):
    from molexp.state.journal import read_state

    token = f"30{os.getpid() % 1000:03d}.{zlib.crc32(request.node.callspec.id.encode()) % 10000:04d}"   # sleep's
    gates = write_three_sleepers(tmp_path, token)
    proc = start_run(tmp_path, "exp.yaml", "--workers", "2", "--no-progress")
    try:
        started = wait_for_files(gates, 2, proc)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        for i, sig in enumerate(signals):
            if i and gap:
                time.sleep(gap)   # the scenario: a second Ctrl-C 0.1 s after the first
            proc.send_signal(sig)
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == SIGNAL_EXIT[signals[0]], (out, err)
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"molexp: interrupted by {signals[0].name}; running tasks were terminated"), err
    rows = table_rows(out)
    assert rows["quick"].split()[0] == "completed"
    ran = {p.name.removeprefix("started-") for p in started}
    assert len(ran) == 2
    for name in ("s1", "s2", "s3"):
        if name in ran:
            assert rows[name].split()[0] == "skipped" and rows[name].endswith("interrupted while running"), rows
        else:
            assert rows[name].split()[0] == "skipped" and rows[name].endswith("not started: interrupted"), rows
            assert not (tmp_path / f"started-{name}").exists()
    assert rows["after"].split()[0] == "skipped" and not (tmp_path / "after-ran").exists()
    # the journal is closed (no live holder) and holds every outcome the table shows
    state = read_state(tmp_path / ".molexp/stop/checkpoint")
    assert not (state["holder"] or {}).get("alive")
    assert {n: r["status"] for n, r in state["records"].items()} == {n: r.split()[0] for n, r in rows.items()}
    # no process of a task survives, though each ignored SIGTERM (killed after the kill grace, or at once
    # after a second signal)
    assert descendants and not alive(descendants), alive(descendants)
    assert no_process_matching(f"sleep {token}")


def test_a_signal_while_the_workflow_file_loads_exits_with_one_line(tmp_path):
    (tmp_path / "workflow.py").write_text(dedent("""
        import pathlib, time
        pathlib.Path("loading").touch()
        time.sleep(120)
        """))
    proc = start_run(tmp_path, "workflow.py", "--no-progress")
    try:
        wait_for_files([tmp_path / "loading"], 1, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143 and out == ""
    assert err == "molexp: interrupted by SIGTERM before any task started\n"


def test_closing_the_terminal_stops_the_run_like_sighup(tmp_path):
    """The real thing behind SIGHUP: `molexp run` on a terminal (a pty it controls) that goes away."""
    import pty
    import select

    from molexp.state.journal import read_state

    token = f"31{os.getpid() % 1000:03d}"
    (tmp_path / "exp.yaml").write_text(dedent(f"""
        name: hup
        tasks:
          - {{name: s1, commands: ["trap '' TERM; touch started-s1; sleep {token}.1 | cat"]}}
          - {{name: s2, commands: ["touch started-s2; sleep {token}.2"]}}
        """))
    pid, fd = pty.fork()
    if pid == 0:   # the child: a new session whose controlling terminal is the pty
        try:
            os.chdir(tmp_path)
            os.execv(sys.executable, [sys.executable, "-m", "molexp.cli", "run", "exp.yaml", "--workers", "2"])
        finally:
            os._exit(127)
    status = None
    try:
        deadline = time.monotonic() + 60
        while not ((tmp_path / "started-s1").exists() and (tmp_path / "started-s2").exists()):
            assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0)
            if select.select([fd], [], [], 0.02)[0]:
                os.read(fd, 65536)   # keep the terminal drained
        descendants = psutil.Process(pid).children(recursive=True)
        os.close(fd)   # the terminal window is closed: the kernel sends SIGHUP
        fd = -1
        deadline = time.monotonic() + 60
        while status is None and time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            status = st if done else None
            time.sleep(0.05)
    finally:
        if fd != -1:
            os.close(fd)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert status is not None and os.waitstatus_to_exitcode(status) == 129
    state = read_state(tmp_path / ".molexp/hup/checkpoint")
    assert not (state["holder"] or {}).get("alive")
    assert {n: (r["status"], r["result"]["reason"]) for n, r in state["records"].items()} == {
        "s1": ("skipped", "interrupted while running"), "s2": ("skipped", "interrupted while running")}
    assert descendants and not alive(descendants) and no_process_matching(f"sleep {token}")
