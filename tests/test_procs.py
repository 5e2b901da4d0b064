"""No process of a task outlives it (background, nohup and setsid children, on every way a task ends, a dead
driver or worker included), the option that lets a task leave a daemon, a bounded condition, sys.exit() and
KeyboardInterrupt as a task's own failure, and a log directory that cannot be written. Real processes, checked
with psutil."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from molexp import ConfigError, Experiment, ExperimentExecutor, LocalTask, PythonTask, TaskStatus
from molexp.run import procs

pytestmark = pytest.mark.skipif(not procs.supported(), reason="needs Linux's child subreaper and /proc")


def matching(fragment: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose command line contains ``fragment``."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and fragment in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except psutil.Error:
            pass
    return out


def none_left(fragment: str) -> bool:
    """No live process runs ``fragment``, now and a moment later (a process caught between two execs has no
    command line for an instant)."""
    if matching(fragment):
        return False
    time.sleep(0.3)
    return not matching(fragment)


def gone_within(fragment: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while matching(fragment):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for(fragment: str, seconds: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + seconds
    while True:
        found = matching(fragment)
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no process running {fragment!r} after {seconds}s"
        time.sleep(0.05)


def kill_all(fragment: str) -> None:
    """Test clean-up: kill what a failing assertion may have left."""
    for p in matching(fragment):
        try:
            p.kill()
            p.wait(5)   # reaps it where it is our child (this process is a subreaper): no zombie is left
        except psutil.Error:
            pass


def own_zombies() -> list[int]:
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]


# Each task leaves a process behind its command in another way; the marker (a sleep's length) names it.
LEFTOVERS = {
    "amp": "sleep 181.01 &",
    "nohup": "nohup sleep 181.02 > /dev/null 2>&1 &",
    "setsid": "setsid sleep 181.03 &",
    "deep": "bash -c 'setsid bash -c \"sleep 181.04 & sleep 181.05\" &' &",
    "daemon": "python3 -c \"import os; os.fork() and os._exit(0); os.setsid(); os.fork() and os._exit(0); "
              "os.execvp('sleep', ['sleep', '181.06'])\"",
}


def test_processes_a_successful_task_leaves_behind_are_gone_when_it_ends(project, target):
    e = Experiment("leftovers", workdir=project)
    for name, command in LEFTOVERS.items():
        e.add_task(LocalTask(name, commands=[command, "echo started"]))
    try:
        results = ExperimentExecutor(e, progress=False, **target).run()
        assert results.ok, results.table()
        assert none_left("sleep 181.0")      # the task ended after its processes did
        if not target:
            assert not own_zombies()               # and each was reaped
    finally:
        kill_all("sleep 181.0")


def test_processes_of_a_failed_timed_out_or_memory_killed_task_are_gone(project, target):
    hog = "python3 -c \"import time; b = b'x' * 300_000_000; time.sleep(60)\""
    e = Experiment("ends", workdir=project)
    e.add_task(LocalTask("fails", commands=["setsid sleep 182.01 & nohup sleep 182.02 >/dev/null 2>&1 & exit 3"]))
    e.add_task(LocalTask("times-out", commands=["setsid sleep 182.03 & sleep 182.04"], timeout=1))
    e.add_task(LocalTask("memory", commands=[f"setsid sleep 182.05 & {hog}"], resources={"memory": "100MB"}))
    e.add_task(PythonTask("isolated", _spawn_setsid_child, isolated=True))
    try:
        results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", kill_grace=1, **target).run()
        assert results["fails"].failure == "exit"
        assert results["times-out"].failure == "timeout"
        assert results["memory"].failure == "memory_limit"
        assert results["isolated"].ok
        assert none_left("sleep 182.0")
        if not target:
            assert not own_zombies()
    finally:
        kill_all("sleep 182.0")


def _spawn_setsid_child():
    """An isolated Python task that starts a process of its own in a new session and returns."""
    subprocess.Popen(["sleep", "182.06"], start_new_session=True)
    return "spawned"


def test_a_cancelled_task_takes_its_setsid_children_along(project):
    e = Experiment("cancel", workdir=project)
    e.add_task(LocalTask("long", commands=["setsid sleep 183.01 & sleep 183.02"]))
    e.add_task(LocalTask("bad", commands=["sleep 0.5", "exit 1"]))
    try:
        results = ExperimentExecutor(e, progress=False, max_workers=2, kill_grace=1).run()   # fail_fast
        assert results["bad"].failure == "exit"
        assert results["long"].status is TaskStatus.SKIPPED
        assert results["long"].reason.startswith("terminated while running")
        assert none_left("sleep 183.0") and not own_zombies()
    finally:
        kill_all("sleep 183.0")


def test_background_processes_live_until_the_task_ends_so_later_commands_can_use_them(project):
    e = Experiment("server", workdir=project)
    e.add_task(LocalTask("uses", commands=["setsid sleep 184.01 &", "pgrep -f 'sleep 184.01' > seen.txt"]))
    try:
        assert ExperimentExecutor(e, progress=False).run().ok
        assert (project / "seen.txt").read_text().strip()   # alive during the second command
        assert none_left("sleep 184.01")
    finally:
        kill_all("sleep 184.01")


def test_without_a_subreaper_the_commands_process_group_is_killed_when_the_task_ends(project, monkeypatch):
    monkeypatch.setattr(procs, "_prctl", None)   # as on a system without PR_SET_CHILD_SUBREAPER
    e = Experiment("fallback", workdir=project)
    e.add_task(LocalTask("amp", commands=["sleep 189.01 &", "true"]))
    try:
        assert ExperimentExecutor(e, progress=False).run().ok
        assert gone_within("sleep 189.01", 5)   # SIGKILLed when the task ended (under load it takes a moment)
    finally:
        kill_all("sleep 189.01")


def test_the_users_own_children_are_neither_killed_nor_reaped(project):
    plain = subprocess.Popen(["sh", "-c", "sleep 0.5; exit 7"])
    own_session = subprocess.Popen(["sh", "-c", "sleep 0.5; exit 8"], start_new_session=True)
    long = subprocess.Popen(["sleep", "188.01"], start_new_session=True)
    e = Experiment("users", workdir=project)
    for i in range(6):   # orphans to sweep while the user's children end
        e.add_task(LocalTask(f"t{i}", commands=[f"setsid sleep 188.1{i} &", "sleep 0.3"]))
    try:
        assert ExperimentExecutor(e, progress=False, max_workers=2).run().ok
        assert plain.wait(10) == 7 and own_session.wait(10) == 8   # their exit codes are still theirs to read
        assert long.poll() is None and none_left("sleep 188.1")
    finally:
        long.kill()
        long.wait()
        kill_all("sleep 188.1")


def test_keep_processes_lets_the_named_tasks_leave_a_daemon_running(project):
    e = Experiment("daemons", workdir=project)
    e.add_task(LocalTask("start-server", commands=["setsid sleep 185.01 &", "nohup sleep 185.02 >/dev/null &"]))
    e.add_task(LocalTask("other", commands=["setsid sleep 185.03 &"]))
    try:
        results = ExperimentExecutor(e, progress=False, keep_processes=["start-server"]).run()
        assert results.ok
        wait_for("sleep 185.01", 10)
        wait_for("sleep 185.02", 10)
        assert none_left("sleep 185.03")
        # the kept processes carry no molexp token: a dying worker's watchdog leaves them alone too
        environ = matching("sleep 185.01")[0].environ()
        assert procs.SCOPE_VAR not in environ or environ[procs.SCOPE_VAR] == os.environ.get(procs.SCOPE_VAR)
    finally:
        kill_all("sleep 185.0")


def test_keep_processes_is_validated():
    ex = ExperimentExecutor([LocalTask("a", commands=["true"])], progress=False)
    assert ex.configure(keep_processes=True).config.keep_processes is True
    assert ex.configure(keep_processes=("a", "b")).config.keep_processes == frozenset({"a", "b"})
    with pytest.raises(ConfigError, match=r"option 'keep_processes' expects True, False or a list of task "
                                          r"names, got 'server' \(str\)"):
        ex.configure(keep_processes="server")
    with pytest.raises(ConfigError, match="option 'keep_processes' .* 3 is not a task name"):
        ex.configure(keep_processes=["a", 3])


def test_keep_processes_naming_no_task_of_the_run_is_refused_before_anything_runs(project):
    e = Experiment("typo", workdir=project)
    e.add_task(LocalTask("start-server", commands=["touch ran"]))
    with pytest.raises(ConfigError, match="option 'keep_processes' names 'start-sever', not a task of this run "
                                          r"\(did you mean 'start-server'\?\)"):
        ExperimentExecutor(e, progress=False, keep_processes=["start-sever"]).run()
    assert not (project / "ran").exists()


# -- a dead owner -----------------------------------------------------------------------------------

# argv: workdir, a sleep's length (the marker, given here so that this script's own command line does not match)
DRIVER = """
import sys
from molexp import Experiment, ExperimentExecutor, LocalTask
e = Experiment("dead-driver", workdir=sys.argv[1])
m = sys.argv[2]
e.add_task(LocalTask("long", commands=[f"setsid sleep {m}1 & nohup sleep {m}2 >/dev/null 2>&1 & sleep {m}3"]))
e.add_task(LocalTask("quick", commands=["true"]))
ExperimentExecutor(e, progress=False, max_workers=2).run()
"""


def _python(script, *args, cwd):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _watchdogs_of(pid: int) -> list[psutil.Process]:
    found = []
    for c in psutil.Process(pid).children():
        try:   # (a task's process that just ended is a zombie until the driver reaps it: not a watchdog)
            if "--watchdog" in " ".join(c.cmdline()):
                found.append(c)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass
    return found


def test_a_driver_killed_with_sigkill_takes_its_task_processes_along(project):
    marker = "sleep 186.0"
    driver = _python(DRIVER, project, "186.0", cwd=project)
    try:
        wait_for(marker + "3")
        wait_for(marker + "1")
        [watchdog] = _watchdogs_of(driver.pid)
        driver.kill()
        driver.wait(10)
        assert gone_within(marker, 10), [p.cmdline() for p in matching(marker)]
        watchdog.wait(10)   # it did its work and left
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stderr.close()
        kill_all(marker)


def test_the_watchdog_leaves_with_a_driver_that_exits_normally(project):
    driver = _python(DRIVER, project, "1.", cwd=project)   # the task ends after 1.3 s
    try:
        deadline = time.monotonic() + 30
        while not _watchdogs_of(driver.pid):
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.05)
        [watchdog] = _watchdogs_of(driver.pid)
        assert driver.wait(30) == 0, driver.stderr.read()
        watchdog.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stderr.close()


CLIENT = """
import sys
from molexp import Experiment, ExperimentExecutor, LocalTask
e = Experiment("dead-worker", workdir=sys.argv[1])
m = sys.argv[3]
e.add_task(LocalTask("long", commands=[f"setsid sleep {m}1 & sleep {m}2"]))
ExperimentExecutor(e, progress=False, address=sys.argv[2]).run()
"""


@pytest.mark.cluster
def test_a_dask_worker_killed_with_sigkill_takes_its_task_processes_along(project):
    def spawn(argv, name):
        with open(project / f"{name}.log", "wb") as log:   # the process keeps its own copy
            return subprocess.Popen([sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=project)

    started = []
    try:
        sched_file = project / "scheduler.json"
        started.append(spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--dashboard-address", ":0", "--scheduler-file", str(sched_file)], "scheduler"))
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        worker = spawn(["distributed.cli.dask_worker", address, "--no-nanny", "--nthreads", "1", "--host",
                        "127.0.0.1", "--no-dashboard"], "worker")
        started.append(worker)
        started.append(_python(CLIENT, project, address, "187.0", cwd=project))
        leader = wait_for("sleep 187.02", 60)
        wait_for("sleep 187.01")
        assert worker.pid in [p.pid for p in leader.parents()]   # the task runs in the worker process
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert gone_within("sleep 187.0", 10), [p.cmdline() for p in matching("sleep 187.0")]
    finally:
        for p in started:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
            if p.stderr:
                p.stderr.close()
        kill_all("sleep 187.0")


# -- conditions, sys.exit, KeyboardInterrupt ----------------------------------------------------------

def test_a_condition_that_does_not_return_fails_its_task_after_condition_timeout(project):
    gate = threading.Event()

    def waits_for_the_gate(task, context):
        return gate.wait()

    e = Experiment("hung-condition", workdir=project)
    e.add_task(LocalTask("held", commands=["touch held-ran"], condition=waits_for_the_gate))
    e.add_task(LocalTask("after", commands=["true"], deps=["held"]))
    e.add_task(LocalTask("free", commands=["touch free-ran"]))
    try:
        results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", condition_timeout=0.5).run()
    finally:
        gate.set()   # lets the condition's thread finish
    held = results["held"]
    assert held.status is TaskStatus.FAILED and held.failure == "error"
    assert "condition 'waits_for_the_gate' of task 'held' did not return within condition_timeout=0.5s" \
        in held.error
    assert not (project / "held-ran").exists()
    assert results["after"].reason == "upstream 'held' failed"
    assert results["free"].ok and (project / "free-ran").exists()


def test_condition_timeout_is_validated_and_none_means_unbounded(project):
    ex = ExperimentExecutor([LocalTask("a", commands=["true"])], progress=False)
    assert ex.config.condition_timeout == 60.0
    assert ex.configure(condition_timeout="2m").config.condition_timeout == 120.0
    assert ex.configure(condition_timeout=None).config.condition_timeout is None
    for bad in (0, -1, "soon", True):
        with pytest.raises(ConfigError, match="option 'condition_timeout' expects a positive number of seconds"):
            ex.configure(condition_timeout=bad)
    e = Experiment("unbounded", workdir=project)
    e.add_task(LocalTask("ok", commands=["true"], condition=lambda task, context: True))
    assert ExperimentExecutor(e, progress=False, condition_timeout=None).run().ok


def _exits(path):
    with open(path, "a") as f:
        f.write("x")
    sys.exit(3)


def _interrupts(path):
    with open(path, "a") as f:
        f.write("x")
    raise KeyboardInterrupt


@pytest.mark.parametrize("func, shown", [(_exits, "SystemExit(3)"), (_interrupts, "KeyboardInterrupt()")])
@pytest.mark.parametrize("isolated", [False, True])
def test_sys_exit_and_keyboard_interrupt_in_a_python_task_are_its_failure_and_retried(project, func, shown,
                                                                                        isolated):
    e = Experiment("exits", workdir=project)
    e.add_task(PythonTask("quits", func, kwargs={"path": str(project / "calls")}, retries=1, isolated=isolated))
    e.add_task(LocalTask("other", commands=["sleep 0.3", "touch other-ran"]))
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", retry_delay=0).run()
    r = results["quits"]
    assert r.status is TaskStatus.FAILED and r.failure == "exception", r.error
    assert r.error.startswith(f"{shown} raised by the task") and "internal error" not in r.error
    assert r.attempts == 2 and (project / "calls").read_text() == "xx"
    assert results["other"].ok and (project / "other-ran").exists()


# -- log files that cannot be written --------------------------------------------------------------------

needs_mount = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                 reason="mounting a tmpfs needs root")


@pytest.fixture
def mounted(project):
    """mount(dir, options): a tmpfs at ``dir`` for the test, unmounted after it."""
    done = []

    def mount(directory, options):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)
        done.append(directory)

    yield mount
    for d in reversed(done):
        subprocess.run(["umount", "-l", str(d)], check=False)


@needs_mount
def test_a_read_only_log_directory_fails_the_shell_tasks_with_the_path_and_errno(project, mounted):
    logs = project / "ck" / "logs"
    mounted(logs, "ro,size=64k")
    e = Experiment("ro-logs", workdir=project)
    e.add_task(LocalTask("shell", commands=["touch shell-ran"]))
    e.add_task(PythonTask("python", lambda: 42))   # in a worker thread: no log files
    results = ExperimentExecutor(e, progress=False, fault_tolerance="continue", checkpoint_dir="ck").run()
    r = results["shell"]
    assert r.status is TaskStatus.FAILED and r.failure == "error"
    assert r.error == f"cannot open the log file {logs}/shell.out of task 'shell': EROFS (errno 30): " \
                      "Read-only file system"
    assert not (project / "shell-ran").exists()
    assert results["python"].value == 42


@needs_mount
def test_a_full_log_directory_fails_the_task_with_the_path_and_errno(project, mounted):
    logs = project / "ck" / "logs"
    mounted(logs, "size=64k")
    fd = os.open(logs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096):      # fill it up
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    e = Experiment("full-logs", workdir=project)
    # the first attempt fails (its output cannot be written); the retry cannot write its log marker
    e.add_task(LocalTask("chatty", commands=["echo hello"], retries=1))
    results = ExperimentExecutor(e, progress=False, checkpoint_dir="ck", retry_delay=0).run()
    r = results["chatty"]
    assert r.status is TaskStatus.FAILED and r.failure == "error", r.error
    assert r.error == f"cannot write the log file {logs}/chatty.out of task 'chatty': ENOSPC (errno 28): " \
                      "No space left on device"
    assert r.attempts == 2 and r.attempt_log[0].failure == "exit"
