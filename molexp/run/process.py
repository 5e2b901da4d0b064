"""One command's process group, from the runtime's side: signal it, terminate it (SIGTERM, then SIGKILL
after a grace period), wait for and reap its leader, and watch its memory (``MemoryWatch``)."""

import os
import signal
import time


def kill_group(pgid: int, sig: int) -> None:
    """Signal a process group; nothing if it is gone or not ours."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(proc, grace: float) -> None:
    """SIGTERM to the process group of ``proc`` (a command leader), SIGKILL after ``grace`` seconds; reaps
    the leader."""
    import subprocess

    kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.returncode is None and time.monotonic() < deadline:
        try:
            proc.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        reap(proc)


def waited(proc, seconds: float) -> bool:
    """Whether ``proc`` ended within ``seconds``."""
    import subprocess

    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def reap(proc):
    """Wait for the process; (return code, rusage or None)."""
    if proc.returncode is not None:
        return proc.returncode, None
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru


_rss_cache = [0.0, 0]


def own_rss() -> int:
    """This process's resident memory in bytes (read at most once a second)."""
    now = time.monotonic()
    if now - _rss_cache[0] > 1.0:
        try:
            with open("/proc/self/statm", "rb") as f:
                _rss_cache[1] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            _rss_cache[1] = 0
        _rss_cache[0] = now
    return _rss_cache[1]


class MemoryWatch:
    """Samples the resident memory of a process and all its descendants (psutil); ``over()`` is True past
    ``limit`` (never, when the limit is None)."""

    def __init__(self, pid: int, limit: int | None, interval: float):
        import psutil

        self._psutil = psutil
        self.limit, self.interval, self.peak = limit, interval, 0
        self._next = 0.0
        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def over(self) -> bool:
        """Sample (at most once per interval); True when the tree is over the limit."""
        now = time.monotonic()
        if self._root is None or now < self._next:
            return False
        self._next = now + self.interval
        psutil = self._psutil
        total = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return False
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        return self.limit is not None and total > self.limit
