"""Start a command the cheap way: glibc's ``posix_spawn`` through ctypes, where it can do all that
``subprocess.Popen`` would (glibc >= 2.34); elsewhere ``spawn`` returns None and the caller uses ``Popen``.

Why: ``Popen`` runs ~100 us of Python per command (argument checks, the environment encoded one variable at
a time, an error pipe, several extra system calls), on the thread that the task's siblings and Dask's
scheduler share the GIL with. ``posix_spawn`` does the same work in C with the GIL released: a new session
(``start_new_session``), stdin/stdout/stderr from the given descriptors, the working directory, every other
descriptor closed (``close_fds``), and SIGPIPE / SIGXFSZ back to their defaults (``restore_signals``).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from functools import lru_cache

_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSID = 0x80
_OPAQUE = 1024  # bytes for posix_spawn_file_actions_t / posix_spawnattr_t / sigset_t (80 / 336 / 128 on x86-64)


def _load():
    """glibc, when it has every call needed (the flag values below are glibc's)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (AttributeError, ValueError, OSError):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        needed = ("posix_spawn", "posix_spawn_file_actions_init", "posix_spawn_file_actions_adddup2",
                  "posix_spawn_file_actions_addchdir_np", "posix_spawn_file_actions_addclosefrom_np",
                  "posix_spawn_file_actions_destroy", "posix_spawnattr_init", "posix_spawnattr_setflags",
                  "posix_spawnattr_setsigdefault", "posix_spawnattr_destroy", "sigemptyset", "sigaddset")
        if not all(hasattr(libc, f) for f in needed):
            return None
    except OSError:
        return None
    return libc


_libc = _load()
# The same functions, called without releasing the GIL: for the calls that only fill in memory (file actions).
# Each release is a chance for another thread to take the GIL, and getting it back can wait for that thread's
# switch interval (5 ms): on a busy Dask worker, seven needless hand-offs per command.
_libc_gil = ctypes.PyDLL(None, use_errno=True) if _libc is not None else None


class _Prepared(threading.local):
    """Per thread: spawn attributes made once (new session, default SIGPIPE/SIGXFSZ)."""

    def __init__(self):
        self.attr = ctypes.create_string_buffer(_OPAQUE)
        sigs = ctypes.create_string_buffer(_OPAQUE)
        _libc.sigemptyset(sigs)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            _libc.sigaddset(sigs, int(sig))
        _libc.posix_spawnattr_init(self.attr)
        _libc.posix_spawnattr_setsigdefault(self.attr, sigs)
        _libc.posix_spawnattr_setflags(self.attr, ctypes.c_short(_POSIX_SPAWN_SETSIGDEF | _POSIX_SPAWN_SETSID))
        self.actions = ctypes.create_string_buffer(_OPAQUE)


_prepared = _Prepared() if _libc is not None else None


def spawn(argv: list[str], cwd: str, env: dict, stdin: int, stdout: int, stderr: int) -> "Child | None":
    """Start ``argv`` (``argv[0]`` a path); the ``Child``, or None when this platform cannot (use Popen).
    Raises ``OSError`` as ``Popen`` would when the program cannot be executed."""
    if _libc is None:
        return None
    p = _prepared
    fa = p.actions
    libc = _libc_gil
    libc.posix_spawn_file_actions_init(fa)
    try:
        libc.posix_spawn_file_actions_adddup2(fa, stdin, 0)
        libc.posix_spawn_file_actions_adddup2(fa, stdout, 1)
        libc.posix_spawn_file_actions_adddup2(fa, stderr, 2)
        libc.posix_spawn_file_actions_addclosefrom_np(fa, 3)
        libc.posix_spawn_file_actions_addchdir_np(fa, os.fsencode(cwd))
        args = [os.fsencode(a) for a in argv]
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        pairs = [k + b"=" + v for k, v in env.items()] if _is_bytes_env(env) else \
            [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        c_env = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
        pid = ctypes.c_int()
        err = _libc.posix_spawn(ctypes.byref(pid), args[0], fa, p.attr, c_argv, c_env)
    finally:
        libc.posix_spawn_file_actions_destroy(fa)
    if err:
        raise OSError(err, os.strerror(err), argv[0])
    return Child(pid.value, argv)


def _is_bytes_env(env: dict) -> bool:
    return bool(env) and isinstance(next(iter(env)), bytes)


class Child:
    """The part of ``Popen``'s interface molexp uses: ``pid``, ``returncode``, ``wait(timeout)``."""

    __slots__ = ("pid", "args", "returncode")

    def __init__(self, pid: int, args):
        self.pid, self.args, self.returncode = pid, args, None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: what Popen reports then
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() >= deadline:  # type: ignore[operator]
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            time.sleep(0.005)
        return self.returncode


@lru_cache(maxsize=1)
def devnull() -> int:
    """One read-only /dev/null descriptor for every command's stdin (close-on-exec; the child gets it as fd 0),
    instead of an open and a close per command."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


# bash words that are not programs on PATH (or behave differently as programs): these go through bash.
_BASH_ONLY = frozenset("""cd exit export source . set unset alias eval exec read shift ulimit umask wait trap
return break continue declare local readonly typeset let hash type command builtin enable history jobs fg bg
disown suspend times shopt pushd popd dirs logout mapfile readarray caller compgen complete getopts help if
then else elif fi for while until do done case esac function time select coproc ! [[ ]] { }""".split())
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+(?:[ \t]+[A-Za-z0-9_@%+=:,./-]+)*")


def direct_argv(cmd: str, cwd: str, path: str) -> list[str] | None:
    """The argv to exec directly when ``cmd`` needs nothing from a shell (no quotes, $, globs, redirects,
    pipes, builtins); None when bash must run it. Spawning without a shell halves the cost of a command."""
    cmd = cmd.strip()
    if not _PLAIN.fullmatch(cmd):
        return None
    argv = cmd.split()
    prog = argv[0]
    if prog in _BASH_ONLY or "=" in prog:
        return None
    if "/" in prog:
        return argv
    exe = _which(prog, path)
    return None if exe is None else [exe, *argv[1:]]


def path_of(env: dict) -> str:
    """The PATH of an environment given as bytes or str keys ("" when unset)."""
    path = env.get(b"PATH") if b"PATH" in env else env.get("PATH", "")
    return os.fsdecode(path) if path else ""


@lru_cache(maxsize=1024)
def _which(prog: str, path: str) -> str | None:
    return shutil.which(prog, path=path)
