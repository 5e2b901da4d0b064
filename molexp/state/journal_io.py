"""The journal's durable writes and its lock: whole files written atomically, appends that survive a crash
of the process, the ``flock`` held while a ``Journal`` is open, and the file name of a stored value.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pathlib
import socket
import time

from ..errors import CheckpointLocked
from .journal_format import LOCK_NAME, _SANITIZE_RE, _now_iso

def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _atomic_write(path: pathlib.Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        _fsync_dir(path.parent)


def _value_filename(name: str) -> str:
    prefix = _SANITIZE_RE.sub("_", name)[:40].strip("._-") or "task"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix}-{digest}-{os.urandom(4).hex()}.pkl"


# --------------------------------------------------------------------------------------------- lock

def _read_holder(lock_path: pathlib.Path) -> dict | None:
    try:
        obj = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(directory: pathlib.Path) -> int:
    lock_path = directory / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        holder = None
        for _ in range(20):   # the holder writes its pid right after locking: give it a moment
            holder = _read_holder(lock_path)
            if holder and "pid" in holder:
                break
            time.sleep(0.01)
        if holder and "pid" in holder:
            who = f"pid {holder['pid']} on host {holder.get('host', '?')}"
            if holder.get("since"):
                who += f" since {holder['since']}"
        else:
            who = "a process whose pid is unknown"
        err = CheckpointLocked(f"checkpoint directory {directory} is locked by another live run ({who}; lock file "
                               f"{lock_path}); wait for it to finish or use another checkpoint_dir", str(directory))
        err.holder = holder
        raise err from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release_lock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)      # clear the holder info while still holding the lock
    except OSError:
        pass
    try:
        # Unlock explicitly: a copy of the descriptor in a forked child would otherwise keep the lock.
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    finally:
        os.close(fd)
