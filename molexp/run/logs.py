"""A task's two log files (stdout, stderr), made only when there is something to keep.

A file per log and per task is the metadata load parallel filesystems (Lustre, GPFS) handle worst: 100,000
tasks made 200,000 files per run, most of them empty. So each log starts as an anonymous file in the log
directory (``O_TMPFILE``: an inode with no name, no directory entry), the task's processes write to it, and
when the task has its outcome (``finish``) a non-empty log that the run keeps gets its name with one
``linkat`` (``/proc/self/fd/N``). An empty log, or one the run does not keep (option ``keep_logs="failed"``
and the task completed), never gets a name: it is emptied and handed to the next task of the same worker
thread (``_Spares``), so a run of quiet tasks allocates a few inodes in all, not two per task. The result's
``stdout_path``/``stderr_path`` are then None; its tails (``stdout``/``stderr``) are read from the open
descriptor either way.

Where ``O_TMPFILE`` is not supported (NFS, some FUSE and parallel filesystems, kernels before 3.11) the log
is a named file from the start, and ``finish`` unlinks it when it is empty or not kept: no file is left
either, at the cost of a create and an unlink. Which of the two a log directory supports is learned once per
directory (and process).

The logs of one task stay open across its attempts (a retry writes ``--- molexp: attempt N ---`` and goes on
in the same file), held per worker thread: a task's attempts run in one thread, and the next task of the
thread closes whatever an internal error left behind.

``remove_stale`` removes, at the start of a run, the files an earlier run left for the tasks that run now
(one ``scandir`` of the log directory per run): a log this run leaves empty must not be shadowed by an
older one.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterable

from ..state.result import TaskResult, TaskStatus
from .spec import TaskSpec

log = logging.getLogger("molexp")

_TAIL_BYTES = 4096   # how much of each log the result keeps
_TAIL_LINES = 20

# O_TMPFILE, when this system has it and the /proc path linkat needs (0: named files only)
_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir("/proc/self/fd") else 0
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
_anonymous: dict[str, bool] = {}   # log directory -> whether O_TMPFILE works there (learned once)
_held = threading.local()          # .logs: the TaskLogs of the task this thread runs; .spares: its _Spares


class LogError(Exception):
    """A log file that cannot be opened or written (the message names the file, the task and the errno)."""


class TaskLogs:
    """One task's stdout and stderr logs, open across its attempts: ``fds`` (stdout, stderr) for the
    task's processes, ``paths`` the names they get when kept, ``anonymous`` whether they are O_TMPFILE files,
    ``lasting`` whether processes of the task may outlive it (option ``keep_processes``): their logs get a
    name even while empty, since such a process may write to them later."""

    __slots__ = ("owner", "paths", "fds", "anonymous", "lasting")

    def __init__(self, spec: TaskSpec, owner: TaskResult):
        self.owner = owner
        self.lasting = False
        self.paths = (spec.stdout_path, spec.stderr_path)
        directory = os.path.dirname(spec.stdout_path)   # type: ignore[arg-type]
        fds: list[int] = []
        try:
            for path in self.paths:
                fd, self.anonymous = _open(directory, path, spec.name)   # type: ignore[arg-type]
                fds.append(fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            if fds and not self.anonymous:
                _unlink(self.paths[0])   # type: ignore[arg-type]
            raise
        self.fds = tuple(fds)

    def mark(self, attempt: int, name: str) -> None:
        """A retry: write the attempt's marker at the end of both logs."""
        marker = f"--- molexp: attempt {attempt} ---\n".encode()
        for fd, path in zip(self.fds, self.paths):
            try:
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, marker)
            except OSError as e:
                raise LogError(f"cannot write the log file {path} of task {name!r}: {os_error(e)}") from None

    def tails(self, result: TaskResult) -> None:
        """The last lines of both logs into the result (``stdout``/``stderr``)."""
        result.stdout, result.stderr = tail_fd(self.fds[0]), tail_fd(self.fds[1])

    def settle(self, keep: bool) -> tuple[str | None, str | None]:
        """Name the logs worth keeping, close both; returns their paths (None: no file)."""
        return self._settle(0, keep), self._settle(1, keep)

    def _settle(self, i: int, keep: bool) -> str | None:
        fd, path = self.fds[i], self.paths[i]
        try:
            kept = keep and (self.lasting or os.fstat(fd).st_size > 0)
            if self.anonymous:
                if kept:
                    return _link(fd, path)   # type: ignore[arg-type]
                if not self.lasting:   # nothing else writes to it: empty it for the next task of this thread
                    if os.fstat(fd).st_size:
                        os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    _spares().give(os.path.dirname(path), fd)   # type: ignore[arg-type]
                    fd = -1
                return None
            if not kept:
                _unlink(path)   # type: ignore[arg-type]
            return path if kept else None
        except OSError:
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        """Close both logs without keeping them (a task that ended without ``finish``)."""
        self._settle(0, False)
        self._settle(1, False)


def attempt_logs(spec: TaskSpec, attempt: int, result: TaskResult) -> TaskLogs:
    """The open logs of ``spec``'s attempt ``attempt`` (``result`` is the task's result, the same object for
    every attempt): opened on the first attempt, the same files with the attempt's marker on a retry. Raises
    ``LogError``."""
    held: TaskLogs | None = getattr(_held, "logs", None)
    if held is not None and held.owner is result:
        if attempt > 1:
            held.mark(attempt, spec.name)
        return held
    if held is not None:   # what an internal error of an earlier task left behind
        _held.logs = None
        held.close()
    logs = TaskLogs(spec, result)
    _held.logs = logs
    if attempt > 1:
        logs.mark(attempt, spec.name)
    return logs


def finish(spec: TaskSpec, keep_logs: str, result: TaskResult) -> None:
    """The task has its outcome: keep its non-empty logs (all of them with ``keep_logs="all"``, only a task's
    that did not complete with ``"failed"``) under their names, drop the rest, and say truly in the result
    where they are (``stdout_path``/``stderr_path``; None: no file)."""
    held: TaskLogs | None = getattr(_held, "logs", None)
    if held is None or held.owner is not result:   # never opened (the attempt failed before)
        result.stdout_path = result.stderr_path = None
        return
    _held.logs = None
    keep = keep_logs == "all" or result.status is not TaskStatus.COMPLETED
    result.stdout_path, result.stderr_path = held.settle(keep)


def remove_stale(specs: Iterable[TaskSpec]) -> int:
    """Remove the log files an earlier run left for the tasks in ``specs`` (the tasks that run now; all share
    one log directory): one ``scandir`` of the directory, one ``unlink`` per file found. Logs of other tasks
    (reused from a checkpoint, or not in this run) stay. Returns the number of files removed."""
    specs = list(specs)
    directory = next((os.path.dirname(s.stdout_path) for s in specs if s.stdout_path), None)
    if directory is None:
        return 0
    try:
        with os.scandir(directory) as it:
            found = [e.path for e in it if e.name.endswith((".out", ".err"))]
    except OSError:
        return 0
    if not found:
        return 0
    ours = {p for s in specs for p in (s.stdout_path, s.stderr_path) if p}
    removed = 0
    for path in found:
        if path in ours:
            removed += _unlink(path)
    return removed


# -- files ------------------------------------------------------------------------------------------------

class _Spares:
    """This thread's anonymous files left empty by its last task, kept open for its next task's logs in the
    same directory: a task whose logs stay empty then costs no inode at all. (On ext4 the life of an
    O_TMPFILE file, orphan list included, cost as much as creating a named file: W1 on this machine's disk
    1.72x raw with a new anonymous file per log, against 1.06x reopening existing named files.)"""

    __slots__ = ("directory", "fds")

    def __init__(self) -> None:
        self.directory: str | None = None
        self.fds: list[int] = []

    def take(self, directory: str) -> int | None:
        """An empty anonymous file in ``directory``, or None."""
        return self.fds.pop() if self.fds and self.directory == directory else None

    def give(self, directory: str, fd: int) -> None:
        """Keep ``fd`` (empty, at offset 0) for a next task (at most two: one task's logs)."""
        if self.directory != directory or len(self.fds) >= 2:
            self.drop()
            self.directory = directory
        self.fds.append(fd)

    def drop(self) -> None:
        """Close them all."""
        fds, self.fds = self.fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:   # the thread ended
        self.drop()


def _spares() -> _Spares:
    spares = getattr(_held, "spares", None)
    if spares is None:
        spares = _held.spares = _Spares()
    return spares


def _open(directory: str, path: str, name: str) -> tuple[int, bool]:
    """(descriptor, anonymous): an O_TMPFILE file in ``directory`` where that works, else ``path`` created
    (truncated when it exists). Raises ``LogError``."""
    try:
        if _TMPFILE and _anonymous.get(directory, True):
            fd = _spares().take(directory)
            if fd is not None:
                return fd, True
            try:
                fd = os.open(directory, _TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o644)
            except OSError as e:
                if e.errno not in _NO_TMPFILE:
                    raise
                _anonymous[directory] = False
            else:
                _anonymous[directory] = True
                return fd, True
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644), False
    except OSError as e:
        raise LogError(f"cannot open the log file {path} of task {name!r}: {os_error(e)}") from None


def _link(fd: int, path: str) -> str | None:
    """Give the anonymous file ``fd`` the name ``path`` (replacing a file of that name atomically); copies
    it there when linking is refused. Returns ``path``, or None (with a warning) when neither works."""
    source = f"/proc/self/fd/{fd}"
    # linkat(..., AT_SYMLINK_FOLLOW), which os.link calls only when given a directory descriptor (ignored for
    # an absolute path); plain link(2) would link the /proc symlink itself and fail with EXDEV.
    try:
        try:
            os.link(source, path, src_dir_fd=fd)
        except FileExistsError:
            temporary = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
            os.link(source, temporary, src_dir_fd=fd)
            os.replace(temporary, path)
        return path
    except OSError as e:
        first = e
    _anonymous[os.path.dirname(path)] = False   # named files from now on in this directory
    log.debug("molexp: cannot link the log file %s (%s): copied, and named files from now on", path,
              os_error(first))
    try:
        _copy(fd, path)
        return path
    except OSError as e:
        log.warning("molexp: cannot keep the log file %s (%s; copying it: %s)", path, os_error(first), os_error(e))
        return None


def _copy(fd: int, path: str) -> None:
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        offset = 0
        while True:
            data = os.pread(fd, 1 << 20, offset)
            if not data:
                return
            offset += len(data)
            while data:
                data = data[os.write(out, data):]
    finally:
        os.close(out)


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0


def os_error(e: OSError) -> str:
    """``ENOSPC (errno 28): No space left on device``: the error without its path (the caller names the path)."""
    code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "?"
    return f"{code} (errno {e.errno}): {e.strerror or e}"


# -- tails ------------------------------------------------------------------------------------------------

def tail_fd(fd: int) -> str:
    """The last lines of an open log file ("" when it is empty or cannot be read)."""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return ""
        data = os.pread(fd, _TAIL_BYTES, max(0, size - _TAIL_BYTES))
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if size > _TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-_TAIL_LINES:])
