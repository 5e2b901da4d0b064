"""What a test may not leave behind: a process of a task (anything with molexp's task variables in its
environment, wherever it was re-parented), a process started under the test run that is still alive and
not one of the session's own fixtures, a new ``/dev/shm`` entry, or a new entry in the temporary directory.

``Snapshot.take()`` before a test and ``snapshot.left()`` after it: what appeared and is still there, after
giving dying processes a few seconds to go. The conftest fails the test with that list (and kills the
processes, so one leak does not fail every later test).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field

import psutil

# Processes that belong to the test session, not to a test: registered by session-scoped fixtures
# (a LocalCluster's workers) and Python's own helpers.
session_pids: set[int] = set()
session_files: set[str] = set()   # /dev/shm and temporary-directory entries of the session's fixtures
# (molexp's watchdog lives as long as the process that runs tasks: the test session itself, for local runs)
_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "--watchdog")


@contextlib.contextmanager
def session_owned():
    """What starts inside belongs to the session (a session-scoped fixture's processes and files)."""
    tmp = tempfile.gettempdir()
    shm, files = _entries("/dev/shm"), _entries(tmp)
    yield
    session_pids.update(_descendants())
    session_files.update(_entries("/dev/shm") - shm, _entries(tmp) - files)


# Set for this test session's processes (inherited by everything it starts: molexp runs, dask workers, their
# tasks), so that only its own task processes are looked at.
SESSION = f"MOLEXP_TEST_SESSION={os.getpid()}-{time.time_ns()}".encode()
os.environ["MOLEXP_TEST_SESSION"] = SESSION.split(b"=", 1)[1].decode()


def _task_processes() -> set[int]:
    """Processes of this session whose environment says they are (or descend from) a molexp task."""
    found = set()
    me = os.getpid()
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if (b"\0MOLEXP_TASK=" in env or env.startswith(b"MOLEXP_TASK=")) and SESSION in env:
            found.add(p.pid)
    return found


def _descendants() -> set[int]:
    out = set()
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return out
    for c in children:
        try:
            if any(h in " ".join(c.cmdline()) for h in _HELPERS):
                continue
        except psutil.Error:
            continue
        out.add(c.pid)
    return out


def _entries(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


@dataclass
class Snapshot:
    tasks: set[int] = field(default_factory=set)
    children: set[int] = field(default_factory=set)
    shm: set[str] = field(default_factory=set)
    tmp: set[str] = field(default_factory=set)

    @classmethod
    def take(cls) -> "Snapshot":
        return cls(_task_processes(), _descendants(), _entries("/dev/shm"), _entries(tempfile.gettempdir()))

    def left(self, wait: float = 5.0) -> list[str]:
        """What appeared since the snapshot and is still there (processes get ``wait`` seconds to end)."""
        deadline = time.monotonic() + wait
        while True:
            procs = (_task_processes() - self.tasks) | (_descendants() - self.children - session_pids)
            if not procs or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        found = []
        for pid in sorted(procs):
            try:
                p = psutil.Process(pid)
                found.append(f"process {pid} ({' '.join(p.cmdline())[:120]!r}, parent {p.ppid()})")
                p.kill()
            except psutil.Error:
                pass
        found += [f"/dev/shm/{e}" for e in sorted(_entries("/dev/shm") - self.shm - session_files)]
        tmp = tempfile.gettempdir()
        found += [os.path.join(tmp, e) for e in sorted(_entries(tmp) - self.tmp - session_files)
                  if not e.startswith("pytest-of-")]
        return found


def stop_groups(procs, grace: float = 15.0, shm_before: set[str] | None = None) -> None:
    """Stop processes started in their own sessions (``dask scheduler``/``dask worker``): SIGTERM to each
    group, so that they clean up after themselves (a nanny's semaphores in /dev/shm), SIGKILL to what is
    left after ``grace`` seconds. When something had to be killed, the multiprocessing semaphores that
    appeared since ``shm_before`` are removed: their owners died without unlinking them."""
    import signal

    killed = False

    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except Exception:
            pass
        if p.poll() is None:
            killed = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)
    if killed and shm_before is not None:
        for e in _entries("/dev/shm") - shm_before:
            if e.startswith("sem.mp-"):
                try:
                    os.unlink(os.path.join("/dev/shm", e))
                except OSError:
                    pass
