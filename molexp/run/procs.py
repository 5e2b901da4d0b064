"""Process containment: no process a task starts outlives the task.

Every attempt of a shell (or isolated Python) task gets a ``Scope``: a token, carried by each of its processes
in the environment variable ``MOLEXP_SCOPE`` (``<owner>.<n>``, inherited by everything they start). While any
scope is open, the process that runs tasks is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a
process orphaned below it (``cmd &`` whose shell exited, ``nohup``, ``setsid``, a double fork) is re-parented
to it instead of to init, and shows up in ``/proc/<pid>/task/<pid>/children`` (orphans go to the first live
thread, the main one, whatever thread started the command). When the attempt ends, ``Scope.__exit__`` reads
that list once: empty (the usual case) costs one small read. Otherwise, under one lock, every child that is
in the session of one of the attempt's commands or carries its token is stopped together with all its
descendants (SIGSTOP, so none can fork or reap while the tree is listed), killed (SIGKILL) and reaped; the
loop repeats until no such child is left. Only processes identified that way are waited for (never
``waitpid(-1)``, which would take other tasks' or the user's children).

A dead owner (a Dask worker or a driver killed with SIGKILL) cannot clean up: a small watchdog process per
owner, started at the first scope, holds the read end of a pipe whose write end only the owner has. At EOF
(the owner ended, however) it kills every process whose environment carries the owner's token, with their
descendants, and exits. This file runs as that watchdog (``python -I -S procs.py --watchdog OWNER``), so it
imports nothing from molexp and nothing heavy at module level.

Where Linux's subreaper or ``/proc`` is missing, a scope falls back to killing each command's process group
at the end of the attempt. What escapes either way is in docs/resources.md ("Processes").
"""

import os
import signal
import sys
import threading
import time

SCOPE_VAR = "MOLEXP_SCOPE"          # the environment variable that tags a task's processes
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_REAP_WAIT = 2.0                    # seconds to wait for killed processes to become reapable
_ROUNDS = 64                        # sweeps of one attempt, each after killing what the previous one found
_STOP_WAIT = 1.0                    # seconds to wait for a tree to stop before killing it anyway
_UNSURE = 5                         # looks again at a process whose environment cannot be read (mid-exec)


def _read(path: str) -> bytes:
    """A small /proc file's content (b"" when it cannot be read, e.g. the process is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _environ(pid: int) -> bytes:
    """The environment a process was started with (``/proc/<pid>/environ``), whole; b"" if unreadable."""
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        parts = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (None when it is gone): with its pid, its identity."""
    st = _stat(pid)
    return None if st is None else st[2]


def _stat(pid: int):
    """(state, session id, start time in clock ticks since boot) of a process, or None when it is gone."""
    data = _read(f"/proc/{pid}/stat")
    end = data.rfind(b")")
    if end < 0:
        return None
    fields = data[end + 2:].split()
    try:
        return fields[0], int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """The children of every thread of process ``pid`` (``/proc/<pid>/task/*/children``)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        out.extend(int(c) for c in _read(f"/proc/{pid}/task/{tid}/children").split())
    return out


def kill_trees(roots, skip=()) -> list[int]:
    """Stop (SIGSTOP) each root and all its descendants, listing each one's children once it has stopped (a
    stopped process is not half-way through a fork and can neither fork nor reap), then SIGKILL every one of
    them. Returns the pids signalled."""
    seen = set(skip)
    stopped: list[int] = []
    todo = list(roots)
    deadline = time.monotonic() + _STOP_WAIT
    try:
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:   # gone, or not ours to signal
                continue
            stopped.append(pid)
            _until_stopped(pid, deadline)
            todo.extend(children(pid))
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return stopped


def _until_stopped(pid: int, deadline: float) -> None:
    """Wait until a process sent SIGSTOP is stopped (or dead), at most until ``deadline`` (a process in an
    uninterruptible sleep stops only when it wakes)."""
    delay = 0.0001
    while True:
        st = _stat(pid)
        if st is None or st[0] in b"TtZX" or time.monotonic() > deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


# -- the watchdog (a separate process) -----------------------------------------------------------------

def _watchdog(owner: str) -> None:
    """Wait for EOF on stdin (the owner's pipe), then kill every process tagged with ``owner``'s token."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    mark = b"\0" + f"{SCOPE_VAR}={owner}.".encode()
    me = os.getpid()
    for _ in range(_ROUNDS):
        tagged = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me and mark in b"\0" + _environ(int(name)):
                tagged.append(int(name))
        if not tagged:
            return
        kill_trees(tagged, skip=(me,))
        time.sleep(0.02)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--watchdog":
        _watchdog(sys.argv[2])
    sys.exit(0)


# -- the owner's side ---------------------------------------------------------------------------------

class _Owner:
    """Per process (made again in a forked child): the token, the subreaper state, the watchdog."""

    def __init__(self):
        self.pid = os.getpid()
        self.token = f"{self.pid:x}{os.urandom(4).hex()}"
        self.count = 0                      # scopes opened (the n of each tag)
        self.open = 0                       # scopes open now (the process is a subreaper while > 0)
        self.lock = threading.Lock()        # count / open / subreaper / watchdog start
        self.sweep = threading.Lock()       # one sweep at a time (they look at the same list of children)
        self.leaders: set[int] = set()      # commands running now (never swept, never reaped here)
        self.watchdog = None                # its Popen
        self.pipe = -1                      # our end of its pipe
        self.children = f"/proc/{self.pid}/task/{self.pid}/children"
        self.children_fd = -1               # that file, kept open: a pread costs a tenth of open+read+close
        self.quiet: dict[int, int] = {}     # children the last sweep found to be no attempt's: pid -> start
        self.mark = f"\0{SCOPE_VAR}={self.token}.".encode()   # in the environment of every tagged process
        self.sid = os.getsid(0)


def _probe():
    """libc's prctl when this is Linux with the subreaper and /proc's children lists, else None."""
    if not sys.platform.startswith("linux"):
        return None
    pid = os.getpid()
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        was = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0) != 0:
            return None
        global _already
        _already = bool(was.value)
        # Called without releasing the GIL (PyDLL): prctl returns at once, and giving the GIL away on a busy
        # worker can cost a switch interval (5 ms) to get it back.
        return ctypes.PyDLL(None).prctl
    except (OSError, AttributeError):
        return None


_already = False    # the process was a subreaper before molexp (then molexp never clears it)
_prctl = _probe()
_owner = _Owner()
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def supported() -> bool:
    """Whether this process can contain its tasks' processes (Linux subreaper + /proc)."""
    return _prctl is not None


def _forked() -> None:
    global _owner
    for fd in (_owner.pipe, _owner.children_fd):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    _owner = _Owner()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _start_watchdog(o: _Owner) -> None:
    """Start the owner's watchdog (once; under ``o.lock``). Without one, containment still works while
    this process lives."""
    import subprocess

    script = os.path.abspath(__file__)
    if not sys.executable or not os.path.isfile(script):
        return
    r, w = os.pipe2(os.O_CLOEXEC) if hasattr(os, "pipe2") else os.pipe()
    try:
        o.watchdog = subprocess.Popen([sys.executable, "-I", "-S", script, "--watchdog", o.token], stdin=r,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                                      start_new_session=True, cwd="/")
    except OSError:
        os.close(w)
        return
    finally:
        os.close(r)
    o.pipe = w
    import atexit

    atexit.register(_stop_watchdog, o)


def _stop_watchdog(o: _Owner) -> None:
    """At a normal exit: close the pipe and wait (briefly) for the watchdog to finish, so that it does not
    outlive its owner even by the moment its last look at /proc takes."""
    if o is not _owner or o.pipe < 0 or not o.watchdog:
        return
    os.close(o.pipe)
    o.pipe = -1
    try:
        o.watchdog.wait(2)
    except Exception:  # noqa: BLE001  (a timeout: it is left to finish on its own)
        pass


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog, or None before the first contained command."""
    w = _owner.watchdog
    return None if w is None else w.pid


class Scope:
    """The processes of one task attempt. Use as a context manager around the attempt's commands:
    ``tag(env)`` marks a command's environment, ``started(pid)`` / ``ended(pid)`` bracket each command
    (its leader), and leaving the block terminates whatever the attempt left behind. ``keep=True``: a scope
    that tags nothing and kills nothing (a task that must leave a daemon running)."""

    __slots__ = ("tag_value", "leaders", "keep", "owner", "t0")

    def __init__(self, keep: bool = False):
        self.keep = keep
        self.leaders: list[int] = []
        self.tag_value: bytes | None = None
        self.owner: _Owner | None = None
        self.t0 = 0.0

    def __enter__(self) -> "Scope":
        if self.keep or _prctl is None:
            return self
        o = self.owner = _owner
        with o.lock:
            if o.open == 0:
                if _prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                    self.owner = None
                    return self
            o.open += 1
            o.count += 1
            n = o.count
            if o.watchdog is None:
                o.watchdog = False   # tried once
                _start_watchdog(o)
                try:
                    o.children_fd = os.open(o.children, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    pass
        self.tag_value = f"{o.token}.{n}".encode()
        self.t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
        return self

    def tag(self, env: dict) -> dict:
        """Add the scope's token to a command's environment (bytes or str keys, as given)."""
        if self.tag_value is not None:
            if env and isinstance(next(iter(env)), bytes):
                env[SCOPE_VAR.encode()] = self.tag_value
            else:
                env[SCOPE_VAR] = self.tag_value.decode()
        return env

    def started(self, pid: int) -> None:
        """A command of this attempt started (``pid`` leads its own session and process group)."""
        self.leaders.append(pid)
        if self.owner is not None:
            self.owner.leaders.add(pid)

    def ended(self, pid: int) -> None:
        """That command's process was reaped."""
        if self.owner is not None:
            self.owner.leaders.discard(pid)

    def __exit__(self, *exc) -> None:
        o = self.owner
        if o is None:
            if not self.keep:   # no subreaper here: what today's POSIX offers, each command's process group
                for pid in self.leaders:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            return
        try:
            try:
                kids = os.pread(o.children_fd, 65536, 0)
            except OSError:
                kids = _read(o.children)
            if kids:   # orphans, or children of the main thread: are any of them not running commands?
                wd = o.watchdog.pid if o.watchdog else -1
                extra = [pid for pid in map(int, kids.split()) if pid not in o.leaders and pid != wd]
                quiet = o.quiet
                if extra and not (quiet and all(quiet.get(pid, -1) == _start(pid) for pid in extra)):
                    with o.sweep:
                        self._sweep(o)
        finally:
            with o.lock:
                o.open -= 1
                if o.open == 0 and o is _owner and not _already:
                    _prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

    def _sweep(self, o: _Owner) -> None:
        """Kill and reap this attempt's processes among our children (and their descendants)."""
        sessions = set(self.leaders)
        mark = b"\0" + SCOPE_VAR.encode() + b"=" + self.tag_value + b"\0"   # type: ignore[operator]
        skip = set(o.leaders)
        if o.watchdog:
            skip.add(o.watchdog.pid)
        done: set[int] = set()
        strays: list[int] = []
        unsure_rounds = 0
        began = int(self.t0 * _TICK)   # /proc's start times are in ticks: a process of the same tick is not "after"
        for _ in range(_ROUNDS):
            roots = []
            unsure = False
            quiet: dict[int, int] | None = {}   # children that are no attempt's (None: some may be another's)
            for k in _read(o.children).split():
                pid = int(k)
                if pid in skip or pid in done or pid in o.leaders:
                    continue
                st = _stat(pid)
                if st is None:
                    continue
                state, sid, start = st
                if state == b"Z":
                    if sid in sessions or (sid != o.sid and start > began):
                        # Dead (killed with its command's process group, or on its own) after this process
                        # adopted it, its environment gone: nobody else can wait for it. (A child of the user's
                        # own, started in a new session during this attempt and not yet waited for, would look
                        # the same: docs/resources.md says so.)
                        strays.append(pid)
                        done.add(pid)
                    else:
                        quiet = None    # perhaps another attempt's, to be reaped by it: do not hide it
                    continue
                env = b"\0" + _environ(pid) + b"\0"
                if mark in env:
                    roots.append(pid)
                elif env == b"\0\0":
                    # No environment: between two execs, or cleared. In a session of this attempt's commands, it
                    # is ours. (A session alone is not proof: the pid of a command that ended may have been
                    # reused by a new session leader since.)
                    if sid in sessions:
                        roots.append(pid)
                    elif start >= began:
                        unsure = True   # started during this attempt: look again
                    quiet = None
                elif o.mark in env:
                    quiet = None        # another attempt's
                elif quiet is not None:
                    quiet[pid] = start
            if roots:
                killed = kill_trees(roots, skip=skip)
                _reap_killed(killed)   # once reaped, what they had started is our child: the next round sees it
                done.update(killed)
            elif unsure and unsure_rounds < _UNSURE:
                unsure_rounds += 1
                time.sleep(0.002)
            else:
                o.quiet = quiet or {}
                break
        for pid in strays:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _reap_killed(pids) -> None:
    """Wait for killed processes: each becomes our child (a zombie) once its parent, killed too, is gone."""
    left = set(pids)
    deadline = time.monotonic() + _REAP_WAIT
    while left:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}"):
                    left.discard(pid)   # reaped by its own parent before that one was stopped
                continue
            if done:
                left.discard(pid)
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.001)
