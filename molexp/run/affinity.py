"""CPU pinning: hand each running task its own cores, across every worker process on the machine.

A core is leased by holding an ``flock`` on ``<tmp>/molexp-cores-<uid>/core-<n>.lock``; the kernel drops it
when the holder ends, even on ``kill -9``, so a crash never leaks a core. Pinning itself sets the affinity
of the spawning thread just around ``fork``: the child inherits it, nothing else does.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

_DIR = Path(os.environ.get("MOLEXP_CORE_LOCKS") or
            (Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir()))
            / f"molexp-cores-{os.getuid()}")


class NotEnoughCores(Exception):
    """A task asks for more cores than this process may use."""


@contextmanager
def lease(n: int, cancelled=lambda: False, poll: float = 0.02):
    """Hold ``n`` distinct cores (a sorted list) for the duration of the block; waits while all are taken."""
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        raise NotEnoughCores(f"asks for {n} cores, but only {len(allowed)} are available: {allowed}")
    _DIR.mkdir(parents=True, exist_ok=True)
    held: list[tuple[int, int]] = []
    try:
        while True:
            for core in allowed:
                if len(held) == n:
                    break
                fd = os.open(_DIR / f"core-{core}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                held.append((core, fd))
            if len(held) == n:
                break
            _release(held)  # take all at once or none: two tasks never deadlock on half a set each
            held = []
            if cancelled():
                raise InterruptedError("cancelled while waiting for a core")
            time.sleep(poll)
        yield [core for core, _ in held]
    finally:
        _release(held)


def _release(held) -> None:
    for _, fd in held:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def pinned(cores: list[int] | None):
    """Run the block with this thread pinned to ``cores`` (processes it spawns inherit them)."""
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
