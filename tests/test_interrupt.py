"""Ctrl-C (SIGINT) and SIGTERM stop a real `molexp run`: running tasks are terminated, nothing is orphaned."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
    assert proc.returncode == 130, err
    assert elapsed < 15  # seconds, not the sleep's minute
    assert "interrupted" in err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:5]}
    assert rows["quick"] == "completed" and rows["long"] == "skipped" and rows["after"] == "skipped"
    assert not (tmp_path / "after-ran").exists()
    assert children_before and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                       for p in children_before)
    assert no_process_matching(marker)
