"""What runs on a worker: one task, with its retries, condition, processes, timeout, memory limit and logs.

``run_task(spec, ctx, *upstream)`` is the only function Dask calls. It never raises: every outcome,
failures included, is a ``TaskResult`` value, so a failed task cannot abort Dask's graph and its
dependents can see why they are skipped.
"""

from __future__ import annotations

import contextvars
import os
import random
import select
import signal
import subprocess
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from . import affinity, procs
from ..state import filehash, files
from ..state.result import Attempt, FailureKind, TaskResult, TaskStatus
from .spawn import devnull, direct_argv, path_of, spawn

_POLL = 0.1          # seconds between checks of a running process (cancel, timeout)
_TAIL_BYTES = 4096   # how much of each log the result keeps
_TAIL_LINES = 20


@dataclass(slots=True)
class TaskSpec:
    """A task compiled for one run: everything a worker needs, nothing it does not."""

    name: str
    kind: str                                   # "shell" | "python"
    task: Any                                   # the Task object (handed to conditions)
    deps: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()              # rendered shell commands
    func: Callable | None = None
    call_kwargs: dict | None = None             # a Python task's keyword arguments
    dep_kwargs: tuple[tuple[str, str], ...] = ()  # (dependency, argument) pairs the function receives
    cwd: str = "."
    env: dict | None = None
    timeout: float | None = None
    retries: int = 0
    memory_limit: int | None = None
    condition: Callable | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    cores: int = 1                              # cores leased when the run pins CPUs
    isolated: bool = False                      # Python task in a child process
    outputs: tuple[str, ...] = ()               # declared output files (absolute paths)


@dataclass
class RunContext:
    """What every task of one run shares (a single Dask data node, shipped once per worker)."""

    run_id: str
    experiment: str
    workdir: str
    sink: Any                                   # .emit(event) to the driver; .done(result) where it applies
    cancel: Any                                 # .is_set(), .wait(seconds)
    params: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    condition: Callable | None = None
    retry_delay: float = 1.0
    retry_exponential_backoff: bool = False
    retry_max_delay: float = 60.0
    retry_jitter: float = 0.1
    kill_grace: float = 5.0
    monitor_interval: float = 0.2
    cpu_affinity: bool = False
    pipefail: bool = True                       # bash -o pipefail: a failing command in a pipe fails the task
    keep_failed_outputs: bool = False           # leave a failed attempt's declared outputs for debugging
    hash_outputs: bool = False                  # report the content hash of declared outputs (checkpoints)
    condition_timeout: float | None = 60.0      # seconds a condition may take (None: no bound)
    keep_processes: Any = False                 # True, or task names whose background processes may outlive them


class _Current:
    """The task being run in this context: ``name`` and ``attempt`` (see ``molexp.current_task()``)."""

    __slots__ = ("name", "attempt", "workdir")

    def __init__(self, name: str, attempt: int, workdir: str):
        self.name, self.attempt, self.workdir = name, attempt, workdir

    def __repr__(self) -> str:
        return f"<current task {self.name!r} attempt {self.attempt}>"


_current: contextvars.ContextVar[_Current | None] = contextvars.ContextVar("molexp_current", default=None)


def current_task() -> _Current | None:
    """Inside a Python task: its ``name``, ``attempt`` number (1, 2, ...) and ``workdir``; else None."""
    return _current.get()


class _Outcome(Exception):
    """Internal: one attempt's failure (kind, message, return codes so far)."""

    def __init__(self, kind: FailureKind, message: str, command: str | None = None, peak: int | None = None):
        super().__init__(message)
        self.kind, self.message, self.command, self.peak = kind, message, command, peak


# -- the entry point ---------------------------------------------------------------------------------

def run_task(spec: TaskSpec, ctx: RunContext, *upstream: TaskResult) -> TaskResult:
    """Run one task to its final outcome (never raises). ``upstream`` are the dependencies' results."""
    try:
        result = _run(spec, ctx, upstream)
    except BaseException as e:  # a bug of ours must still come back as a value, never hang the run
        result = TaskResult(spec.name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                            error=f"molexp internal error: {e!r}\n{traceback.format_exc()}")
    ctx.sink.done(result)
    return result


_contexts: dict[bytes, RunContext] = {}


def run_packed(name: str, spec_blob: bytes, ctx_blob: bytes, *upstream: TaskResult) -> TaskResult:
    """``run_task`` for a cluster: the task and the run context travel as cloudpickle bytes and are loaded
    here, on the worker, so the scheduler never has to import user code, and a function the worker cannot
    import fails that task with a clear message instead of the whole graph."""
    import cloudpickle

    try:
        ctx = _contexts.get(ctx_blob)
        if ctx is None:
            ctx = _contexts[ctx_blob] = cloudpickle.loads(ctx_blob)
            while len(_contexts) > 8:
                _contexts.pop(next(iter(_contexts)))
        spec = cloudpickle.loads(spec_blob)
    except Exception as e:
        return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                          error=f"cannot load task {name!r} on this worker ({type(e).__name__}: {e}); the worker "
                                "needs the same Python environment and importable modules as the client")
    return run_task(spec, ctx, *upstream)


def _run(spec: TaskSpec, ctx: RunContext, upstream: tuple[TaskResult, ...]) -> TaskResult:
    for up in upstream:
        if not up.status.ok:
            why = "failed" if up.status is TaskStatus.FAILED else "was skipped"
            return TaskResult(spec.name, TaskStatus.SKIPPED, reason=f"upstream {up.name!r} {why}")
    if ctx.cancel.is_set():
        return TaskResult(spec.name, TaskStatus.SKIPPED, reason="cancelled")

    conditions = [c for c in (ctx.condition, spec.condition) if c is not None]
    if conditions:
        context = {**ctx.params, **ctx.context, "params": ctx.params, "upstream": {u.name: u for u in upstream}}
        for cond in conditions:
            try:
                go = _ask(cond, spec, context, ctx.condition_timeout)
            except _Outcome as o:
                return TaskResult(spec.name, TaskStatus.FAILED, failure=o.kind.value, error=o.message)
            if not go:
                return TaskResult(spec.name, TaskStatus.SKIPPED, reason="condition is false")
        if ctx.cancel.is_set():   # the run stopped while the conditions were asked
            return TaskResult(spec.name, TaskStatus.SKIPPED, reason="cancelled")

    result = TaskResult(spec.name, TaskStatus.RUNNING, stdout_path=spec.stdout_path,
                        stderr_path=spec.stderr_path, worker=ctx.sink.worker())
    values = {u.name: u.value for u in upstream}
    max_attempts = 1 + spec.retries
    attempt = 0
    while True:
        attempt += 1
        start = time.time()
        if attempt == 1:
            result.start = start
        # always told (a queue put locally, batched messages on a cluster): a stopped task says truly whether it ran
        ctx.sink.emit(("running", spec.name, attempt, start, result.worker))
        try:
            if spec.outputs:
                _clear_outputs(spec)
            if spec.kind == "shell":
                _run_shell(spec, ctx, attempt, result)
            else:
                result.value = _run_python(spec, ctx, attempt, values, result)
            if spec.outputs:
                _check_outputs(spec)
            failure = None
        except _Outcome as o:
            failure = o
            if spec.outputs and not ctx.keep_failed_outputs:
                files.discard(spec.outputs)   # nothing half-written may look finished
        end = time.time()
        result.attempts = attempt
        result.end = end
        if failure is None:
            result.attempt_log.append(Attempt(attempt, start, end))
            result.status = TaskStatus.COMPLETED
            break
        result.attempt_log.append(Attempt(attempt, start, end, failure.kind.value, failure.message))
        if failure.peak:
            result.peak_memory = max(result.peak_memory or 0, failure.peak)
        result.failure, result.error, result.command = failure.kind.value, failure.message, failure.command
        if (attempt >= max_attempts or failure.kind in (FailureKind.ERROR, FailureKind.CANCELLED)
                or ctx.cancel.is_set()):
            result.status = TaskStatus.FAILED
            if failure.kind is FailureKind.CANCELLED:
                result.status, result.reason = TaskStatus.SKIPPED, "cancelled"
            break
        delay = retry_delay(ctx, attempt)
        ctx.sink.emit(("retrying", spec.name, attempt, failure.kind.value, failure.message, delay))
        if ctx.cancel.wait(delay):
            result.status, result.reason = TaskStatus.SKIPPED, "cancelled"
            break
    if result.status is TaskStatus.COMPLETED:
        result.failure = result.error = result.command = None
        if spec.outputs and ctx.hash_outputs:
            try:
                result.outputs, result.file_stats = filehash.hash_outputs(spec.outputs)
            except OSError:
                pass  # not recorded: a resume runs the task again rather than trust an unreadable output
    return result


def _ask(cond: Callable, spec: TaskSpec, context: dict, timeout: float | None) -> Any:
    """What a condition answers; raises ``_Outcome`` (kind error) when it raises or takes longer than
    ``timeout`` seconds. A bounded condition runs in a thread of its own, which keeps running past the timeout
    (Python cannot stop a thread): the task fails and the run goes on."""
    name = getattr(cond, "__name__", repr(cond))
    if timeout is None:
        try:
            return cond(spec.task, context)
        except BaseException as e:
            _reraise_interrupt(e)
            raise _Outcome(FailureKind.ERROR, f"condition {name!r} raised {e!r}\n"
                                              + traceback.format_exc()) from None
    answer: list = []
    done = threading.Event()

    def ask() -> None:
        try:
            answer.append((True, cond(spec.task, context)))
        except BaseException as e:  # noqa: B036  (reported as the task's failure)
            answer.append((False, f"{e!r}\n{traceback.format_exc()}"))
        finally:
            done.set()

    threading.Thread(target=ask, name=f"molexp-condition-{spec.name}", daemon=True).start()
    if not done.wait(timeout):
        raise _Outcome(FailureKind.ERROR, f"condition {name!r} of task {spec.name!r} did not return within "
                                          f"condition_timeout={timeout:g}s (it goes on running in its thread; "
                                          "the task is not run)")
    ok, value = answer[0]
    if not ok:
        raise _Outcome(FailureKind.ERROR, f"condition {name!r} raised {value}")
    return value


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


def _clear_outputs(spec: TaskSpec) -> None:
    try:
        files.clear(spec.outputs)
    except OSError as e:
        raise _Outcome(FailureKind.ERROR, f"cannot prepare the declared outputs of task {spec.name!r}: {e}") from None


def _check_outputs(spec: TaskSpec) -> None:
    lost = files.missing(spec.outputs)
    if lost:
        shown = ", ".join(files._rel(p, spec.cwd) for p in lost)
        raise _Outcome(FailureKind.MISSING_OUTPUT, f"task {spec.name!r} succeeded but did not write its declared "
                                                   f"output(s): {shown}")


def retry_delay(ctx: RunContext, failed_attempt: int) -> float:
    """Seconds to wait after attempt ``failed_attempt`` failed: base (doubled each time with backoff),
    capped, plus a random extra of up to ``retry_jitter`` of it (never less than the base)."""
    delay = ctx.retry_delay * (2 ** (failed_attempt - 1) if ctx.retry_exponential_backoff else 1)
    delay = min(delay, ctx.retry_max_delay)
    return delay * (1 + ctx.retry_jitter * random.random())


# -- Python tasks -----------------------------------------------------------------------------------

def _run_python(spec: TaskSpec, ctx: RunContext, attempt: int, values: dict, result: TaskResult) -> Any:
    kwargs = dict(spec.call_kwargs or ())
    for dep, arg in spec.dep_kwargs:
        kwargs[arg] = values[dep]
    if spec.isolated:
        return _run_isolated(spec, ctx, attempt, kwargs, result)
    token = _current.set(_Current(spec.name, attempt, ctx.workdir))
    try:
        return spec.func(**kwargs)  # type: ignore[misc]
    except Exception as e:
        raise _Outcome(FailureKind.EXCEPTION, f"{type(e).__name__}: {e}\n{traceback.format_exc()}") from None
    except BaseException as e:  # sys.exit(), KeyboardInterrupt raised by the task: its failure, like any other
        _reraise_interrupt(e)
        raise _Outcome(FailureKind.EXCEPTION, f"{e!r} raised by the task\n{traceback.format_exc()}") from None
    finally:
        _current.reset(token)


def _run_isolated(spec: TaskSpec, ctx: RunContext, attempt: int, kwargs: dict, result: TaskResult) -> Any:
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
        raise _Outcome(FailureKind.ERROR, f"cannot write {call_file} for task {spec.name!r}: {_os_error(e)}") \
            from None
    argv = [sys.executable, "-m", "molexp.run.isolated", call_file, value_file]
    cmd = f"python: {getattr(spec.func, '__qualname__', spec.func)}(...) in a child process"
    # The child imports what the function's pickle refers to from the same places this process does.
    env = dict(os.environ, MOLEXP_TASK=spec.name, MOLEXP_ATTEMPT=str(attempt),
               PYTHONPATH=os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")]))
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    try:
        with _cores(spec, ctx) as cores, _logs(spec, attempt, result) as (out, err), \
                procs.Scope(_keeps(ctx, spec)) as scope:
            rc, peak, cpu = _run_command(argv, cmd, spec, ctx, scope.tag(env), out, err, deadline, cores, scope)
        result.peak_memory, result.cpu_time = peak or None, cpu
        if rc != 0 and not os.path.exists(value_file):
            kind = FailureKind.SIGNAL if rc < 0 else FailureKind.EXIT
            raise _Outcome(kind, f"the child process running the function ended with code {rc}: "
                                 f"{_tail(spec.stderr_path)}", cmd)
        try:
            with open(value_file, "rb") as f:
                ok, payload = cloudpickle.load(f)
        except OSError as e:
            raise _Outcome(FailureKind.ERROR, f"cannot read {value_file}, the value of task {spec.name!r}: "
                                              f"{_os_error(e)}") from None
    finally:
        _unlink(call_file)
        _unlink(value_file)
    if not ok:
        raise _Outcome(FailureKind.EXCEPTION, payload)
    return payload


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _os_error(e: OSError) -> str:
    """``ENOSPC (errno 28): No space left on device``: the error without its path (the caller names the path)."""
    import errno

    code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "?"
    return f"{code} (errno {e.errno}): {e.strerror or e}"


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


def _run_shell(spec: TaskSpec, ctx: RunContext, attempt: int, result: TaskResult) -> None:
    env = _task_env(spec, ctx, attempt)
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout
    result.returncodes = []
    with _cores(spec, ctx) as cores, _logs(spec, attempt, result) as (out, err), \
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
                    raise _Outcome(FailureKind.SIGNAL, f"command killed by {name}: {cmd}", cmd)
                raise _Outcome(FailureKind.EXIT, f"command exited with code {rc}: {cmd}", cmd)


@contextmanager
def _logs(spec: TaskSpec, attempt: int, result: TaskResult):
    """The task's stdout/stderr log files (raw descriptors): truncated on the first attempt, appended to
    (after a marker) on retries. On the way out the result gets their last lines, read from the open
    descriptors, and only when something was written."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if attempt == 1 else os.O_APPEND)
    out = _open_log(spec, spec.stdout_path, flags)  # type: ignore[arg-type]
    try:
        err = _open_log(spec, spec.stderr_path, flags)  # type: ignore[arg-type]
    except BaseException:
        os.close(out)
        raise
    try:
        if attempt > 1:
            marker = f"--- molexp: attempt {attempt} ---\n".encode()
            for fd, path in ((out, spec.stdout_path), (err, spec.stderr_path)):
                try:
                    os.write(fd, marker)
                except OSError as e:
                    raise _Outcome(FailureKind.ERROR, f"cannot write the log file {path} of task {spec.name!r}: "
                                                      f"{_os_error(e)}") from None
        yield out, err
    finally:
        result.stdout, result.stderr = _tail_fd(out), _tail_fd(err)
        os.close(out)
        os.close(err)


def _open_log(spec: TaskSpec, path: str, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as e:
        raise _Outcome(FailureKind.ERROR, f"cannot open the log file {path} of task {spec.name!r}: "
                                          f"{_os_error(e)}") from None


def _tail_fd(fd: int) -> str:
    """The last lines of an open log file ("" when it cannot be read)."""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return ""
        data = os.pread(fd, _TAIL_BYTES, max(0, size - _TAIL_BYTES))
    except OSError:
        return ""
    return _tail_text(data, cut=size > _TAIL_BYTES)


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
        raise _Outcome(FailureKind.ERROR, f"task {spec.name!r} {e}") from None
    except InterruptedError:
        raise _Outcome(FailureKind.CANCELLED, "cancelled while waiting for a core") from None


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
                raise _Outcome(FailureKind.ERROR, f"cannot start command {cmd!r} in {spec.cwd!r}: {e}",
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
    watch = procs.MemoryWatch(pid, spec.memory_limit, ctx.monitor_interval) if spec.memory_limit else None
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
            elif procs.waited(proc, wait_s):
                break
            if deadline is not None and time.monotonic() >= deadline:
                procs.terminate(proc, ctx.kill_grace)
                raise _Outcome(FailureKind.TIMEOUT, f"timed out after {spec.timeout:g}s: {cmd}", cmd)
            if watch is None:
                watch = procs.MemoryWatch(pid, None, ctx.monitor_interval)
            if watch.over():
                procs.kill_group(pid, signal.SIGKILL)
                procs.reap(proc)
                raise _Outcome(FailureKind.MEMORY, f"memory limit {watch.limit} bytes exceeded (peak "
                                                   f"{watch.peak} bytes): {cmd}", cmd, peak=watch.peak)
            if ctx.cancel.is_set():
                procs.terminate(proc, ctx.kill_grace)
                raise _Outcome(FailureKind.CANCELLED, f"terminated by molexp: {cmd}", cmd)
    except BaseException:
        if proc.returncode is None:
            procs.terminate(proc, ctx.kill_grace)
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)
    rc, ru = procs.reap(proc)
    # ru_maxrss also counts what the child inherited from this (possibly large) process at fork, so it only
    # says something about the command when it is larger than this process.
    peak = watch.peak if watch is not None else 0
    if ru is not None and ru.ru_maxrss * 1024 > procs.own_rss():
        peak = max(peak, ru.ru_maxrss * 1024)
    cpu = (ru.ru_utime + ru.ru_stime) if ru is not None else 0.0
    if rc != 0:
        procs.kill_group(pid, signal.SIGKILL)  # leave nothing behind a failed command
    return rc, peak, cpu


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _tail(path: str | None) -> str:
    """The last lines of a log file, by path."""
    if not path:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return _tail_fd(fd)
    finally:
        os.close(fd)


def _tail_text(data: bytes, *, cut: bool) -> str:
    lines = data.decode("utf-8", "replace").splitlines()
    if cut and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-_TAIL_LINES:])


# -- event sinks and cancel tokens ----------------------------------------------------------------------

class LocalSink:
    """Events straight into the driver's queue (same process, threads)."""

    def __init__(self, queue):
        self._queue = queue

    def emit(self, event: tuple) -> None:
        self._queue.put(event)

    def done(self, result: TaskResult) -> None:
        self._queue.put(("done", result.name, result))

    def worker(self) -> str:
        return threading.current_thread().name


class LocalCancel:
    """A run's stop flag on the local scheduler: a ``threading.Event``."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)
