"""The processes of one attempt: a shell task's commands, or an isolated Python task's child process, with
their logs, CPU leases, timeout, memory limit and cancellation (``runtime`` runs the attempts).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any

from . import affinity, logs, process, procs
from ..state.result import FailureKind, TaskResult
from .spawn import devnull, direct_argv, path_of, spawn
from .spec import RunContext, TaskSpec

_POLL = 0.1          # seconds between checks of a running process (cancel, timeout)


class AttemptFailed(Exception):
    """One attempt's failure (kind, message, the command, peak memory): ``runtime`` records it."""

    def __init__(self, kind: FailureKind, message: str, command: str | None = None, peak: int | None = None):
        super().__init__(message)
        self.kind, self.message, self.command, self.peak = kind, message, command, peak



def _reraise_interrupt(e: BaseException) -> None:
    """A KeyboardInterrupt on the main thread is Ctrl-C, meant for the run, not one task: let it through.
    Anywhere else (a task's own thread) it is what the task raised."""
    if isinstance(e, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        raise e


def _keeps(ctx: RunContext, spec: TaskSpec) -> bool:
    """Whether the task may leave processes running (option ``keep_processes``)."""
    keep = ctx.keep_processes
    if keep is True or not keep:
        return bool(keep)
    return spec.name in keep or ("[" in spec.name and spec.name.split("[", 1)[0] in keep)


def run_isolated(spec: TaskSpec, ctx: RunContext, attempt: int, kwargs: dict, result: TaskResult) -> Any:
    """Call the function in a child Python process (shipped with cloudpickle), so that the memory limit,
    timeout, CPU pinning, cancellation and log capture of shell tasks apply to it too."""
    import sys

    import cloudpickle

    base = spec.stdout_path[: -len(".out")]  # type: ignore[index]
    call_file, value_file = base + ".call.pkl", base + ".value.pkl"
    try:
        with open(call_file, "wb") as f:
            cloudpickle.dump((spec.func, kwargs, spec.name, attempt, ctx.workdir), f)
    except OSError as e:
        _unlink(call_file)
        raise AttemptFailed(FailureKind.ERROR, f"cannot write {call_file} for task {spec.name!r}: "
                                               f"{logs.os_error(e)}") from None
    argv = [sys.executable, "-m", "molexp.run.isolated", call_file, value_file]
    cmd = f"python: {getattr(spec.func, '__qualname__', spec.func)}(...) in a child process"
    # The child imports what the function's pickle refers to from the same places this process does.
    env = dict(os.environ, MOLEXP_TASK=spec.name, MOLEXP_ATTEMPT=str(attempt),
               PYTHONPATH=os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")]))
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    try:
        with _cores(spec, ctx) as cores, _logs(spec, ctx, attempt, result) as (out, err), \
                procs.Scope(_keeps(ctx, spec)) as scope:
            rc, peak, cpu = _run_command(argv, cmd, spec, ctx, scope.tag(env), out, err, deadline, cores, scope)
        result.peak_memory, result.cpu_time = peak or None, cpu
        if rc != 0 and not os.path.exists(value_file):
            kind = FailureKind.SIGNAL if rc < 0 else FailureKind.EXIT
            raise AttemptFailed(kind, f"the child process running the function ended with code {rc}: "
                                 f"{result.stderr}", cmd)
        try:
            with open(value_file, "rb") as f:
                ok, payload = cloudpickle.load(f)
        except OSError as e:
            raise AttemptFailed(FailureKind.ERROR, f"cannot read {value_file}, the value of task {spec.name!r}: "
                                              f"{logs.os_error(e)}") from None
    finally:
        _unlink(call_file)
        _unlink(value_file)
    if not ok:
        raise AttemptFailed(FailureKind.EXCEPTION, payload)
    return payload


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- shell tasks ------------------------------------------------------------------------------------

def _task_env(spec: TaskSpec, ctx: RunContext, attempt: int) -> dict:
    """The worker's current environment + the task's ``env`` + molexp's variables (as bytes on POSIX: copying
    ``os.environ``'s own byte mapping is ~20x cheaper than decoding it, and Popen takes it as it is)."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict) or (data and not isinstance(next(iter(data)), bytes)):
        env: dict = dict(os.environ)
        env.update(spec.env or {})
        env.update(MOLEXP_TASK=spec.name, MOLEXP_ATTEMPT=str(attempt), MOLEXP_EXPERIMENT=ctx.experiment,
                   MOLEXP_WORKDIR=ctx.workdir)
        return env
    env = dict(data)
    for k, v in (spec.env or {}).items():
        env[os.fsencode(k)] = os.fsencode(v)
    env[b"MOLEXP_TASK"] = os.fsencode(spec.name)
    env[b"MOLEXP_ATTEMPT"] = str(attempt).encode()
    env[b"MOLEXP_EXPERIMENT"] = os.fsencode(ctx.experiment)
    env[b"MOLEXP_WORKDIR"] = os.fsencode(ctx.workdir)
    return env


def run_shell(spec: TaskSpec, ctx: RunContext, attempt: int, result: TaskResult) -> None:
    env = _task_env(spec, ctx, attempt)
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    result.returncodes = []
    with _cores(spec, ctx) as cores, _logs(spec, ctx, attempt, result) as (out, err), \
            procs.Scope(_keeps(ctx, spec)) as scope:
        scope.tag(env)
        for cmd in spec.commands:
            rc, peak, cpu = _run_command(direct_argv(cmd, spec.cwd, path_of(env)), cmd, spec, ctx, env,
                                         out, err, deadline, cores, scope)
            result.returncodes.append(rc)
            if peak:
                result.peak_memory = max(result.peak_memory or 0, peak)
            result.cpu_time = (result.cpu_time or 0.0) + cpu
            if rc != 0:
                if rc < 0:
                    name = _signal_name(-rc)
                    raise AttemptFailed(FailureKind.SIGNAL, f"command killed by {name}: {cmd}", cmd)
                raise AttemptFailed(FailureKind.EXIT, f"command exited with code {rc}: {cmd}", cmd)


@contextmanager
def _logs(spec: TaskSpec, ctx: RunContext, attempt: int, result: TaskResult):
    """The task's stdout/stderr logs for this attempt (raw descriptors, see ``logs``): opened on the first
    attempt, continued (after a marker) on retries. On the way out the result gets their last lines, read
    from the open descriptors."""
    try:
        held = logs.attempt_logs(spec, attempt, result)
    except logs.LogError as e:
        raise AttemptFailed(FailureKind.ERROR, str(e)) from None
    held.lasting = _keeps(ctx, spec)
    try:
        yield held.fds
    finally:
        held.tails(result)


@contextmanager
def _cores(spec: TaskSpec, ctx: RunContext):
    """The cores this task is pinned to (None when the run does not pin CPUs)."""
    if not ctx.cpu_affinity:
        yield None
        return
    try:
        with affinity.lease(spec.cores, ctx.cancel.is_set) as cores:
            yield cores
    except affinity.NotEnoughCores as e:
        raise AttemptFailed(FailureKind.ERROR, f"task {spec.name!r} {e}") from None
    except InterruptedError:
        raise AttemptFailed(FailureKind.CANCELLED, "cancelled while waiting for a core") from None


def _run_command(argv: list[str] | None, cmd: str, spec: TaskSpec, ctx: RunContext, env: dict, out, err, deadline,
                 cores: list[int] | None, scope: procs.Scope) -> tuple[int, int, float]:
    """Spawn one command in its own session (and process group) and wait for it; returns (rc, peak bytes,
    cpu s). ``argv`` runs directly when given; otherwise (or if it cannot be executed) bash runs ``cmd``.
    The attempt's ``scope`` learns of the command, and at its end terminates what the command left."""
    proc = None
    with affinity.pinned(cores):
        if argv is not None:
            try:
                proc = spawn(argv, spec.cwd, env, devnull(), out, err) or subprocess.Popen(
                    argv, cwd=spec.cwd, env=env, stdin=devnull(), stdout=out, stderr=err, start_new_session=True)
            except OSError:
                proc = None  # not executable, no shebang, ...: let bash run it and report as bash does
        if proc is None:
            try:
                proc = subprocess.Popen(["/bin/bash", "-o", "pipefail", "-c", cmd] if ctx.pipefail else
                                        ["/bin/bash", "-c", cmd], cwd=spec.cwd, env=env, stdin=devnull(),
                                        stdout=out, stderr=err, start_new_session=True)
            except OSError as e:
                raise AttemptFailed(FailureKind.ERROR, f"cannot start command {cmd!r} in {spec.cwd!r}: {e}",
                               cmd) from None
    scope.started(proc.pid)
    try:
        return _wait(proc, cmd, spec, ctx, deadline)
    finally:
        scope.ended(proc.pid)


def _wait(proc: subprocess.Popen, cmd: str, spec: TaskSpec, ctx: RunContext, deadline) -> tuple[int, int, float]:
    pid = proc.pid
    # The tree is sampled for its peak memory once it has run for a poll interval (from the start when it has
    # a limit to enforce); shorter commands cost nothing extra.
    watch = process.MemoryWatch(pid, spec.memory_limit, ctx.monitor_interval) if spec.memory_limit else None
    poll_s = min(_POLL, ctx.monitor_interval)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    poller = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            wait_s = poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
            if poller is not None:
                if poller.poll(wait_s * 1000):
                    break
            elif process.waited(proc, wait_s):
                break
            if deadline is not None and time.monotonic() >= deadline:
                process.terminate(proc, ctx.kill_grace)
                raise AttemptFailed(FailureKind.TIMEOUT, f"timed out after {spec.timeout:g}s: {cmd}", cmd)
            if watch is None:
                watch = process.MemoryWatch(pid, None, ctx.monitor_interval)
            if watch.over():
                process.kill_group(pid, signal.SIGKILL)
                process.reap(proc)
                raise AttemptFailed(FailureKind.MEMORY, f"memory limit {watch.limit} bytes exceeded (peak "
                                                   f"{watch.peak} bytes): {cmd}", cmd, peak=watch.peak)
            if ctx.cancel.is_set():
                process.terminate(proc, ctx.kill_grace)
                raise AttemptFailed(FailureKind.CANCELLED, f"terminated by molexp: {cmd}", cmd)
    except BaseException:
        if proc.returncode is None:
            process.terminate(proc, ctx.kill_grace)
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)
    rc, ru = process.reap(proc)
    # ru_maxrss also counts what the child inherited from this (possibly large) process at fork, so it only
    # says something about the command when it is larger than this process.
    peak = watch.peak if watch is not None else 0
    if ru is not None and ru.ru_maxrss * 1024 > process.own_rss():
        peak = max(peak, ru.ru_maxrss * 1024)
    cpu = (ru.ru_utime + ru.ru_stime) if ru is not None else 0.0
    if rc != 0:
        process.kill_group(pid, signal.SIGKILL)  # leave nothing behind a failed command
    return rc, peak, cpu


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
