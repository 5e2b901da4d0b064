"""What runs on a worker: one task, with its retries, condition, processes, timeout, memory limit and logs.

``run_task(spec, ctx, *upstream)`` is the only function Dask calls. It never raises: every outcome,
failures included, is a ``TaskResult`` value, so a failed task cannot abort Dask's graph and its
dependents can see why they are skipped.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from typing import Any, Callable

from ..state import filehash, outputs
from ..state.result import Attempt, FailureKind, TaskResult, TaskStatus
from .commands import AttemptFailed, _reraise_interrupt, run_isolated, run_shell
from .logs import finish as finish_logs
from .spec import CurrentTask, Retrying, RunContext, Started, TaskSpec, _current, upstream_reason



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


def load_context(ctx_blob: bytes) -> RunContext:
    """The run context sent as cloudpickle bytes, loaded once per worker process (the last few are kept)."""
    ctx = _contexts.get(ctx_blob)
    if ctx is None:
        import cloudpickle

        ctx = _contexts[ctx_blob] = cloudpickle.loads(ctx_blob)
        while len(_contexts) > 8:
            _contexts.pop(next(iter(_contexts)))
    return ctx


def run_packed(name: str, spec_blob: bytes, ctx_blob: bytes, *upstream: TaskResult) -> TaskResult:
    """``run_task`` for a cluster: the task and the run context travel as cloudpickle bytes and are loaded
    here, on the worker, so the scheduler never has to import user code, and a function the worker cannot
    import fails that task with a clear message instead of the whole graph."""
    import cloudpickle

    try:
        ctx = load_context(ctx_blob)
        spec = cloudpickle.loads(spec_blob)
    except Exception as e:
        return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                          error=f"cannot load task {name!r} on this worker ({type(e).__name__}: {e}); the worker "
                                "needs the same Python environment and importable modules as the client")
    return run_task(spec, ctx, *upstream)


def _run(spec: TaskSpec, ctx: RunContext, upstream: tuple[TaskResult, ...]) -> TaskResult:
    why = upstream_reason(upstream)
    if why is not None:
        return TaskResult(spec.name, TaskStatus.SKIPPED, reason=why)
    if ctx.cancel.is_set():
        return TaskResult(spec.name, TaskStatus.SKIPPED, reason="cancelled")

    conditions = [c for c in (ctx.condition, spec.condition) if c is not None]
    if conditions:
        context = {**ctx.params, **ctx.context, "params": ctx.params, "upstream": {u.name: u for u in upstream}}
        for cond in conditions:
            try:
                go = _ask(cond, spec, context, ctx.condition_timeout)
            except AttemptFailed as o:
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
        ctx.sink.emit(Started(spec.name, attempt, start, result.worker))
        try:
            if spec.outputs:
                _clear_outputs(spec)
            if spec.kind == "shell":
                run_shell(spec, ctx, attempt, result)
            else:
                result.value = _run_python(spec, ctx, attempt, values, result)
            if spec.outputs:
                _check_outputs(spec)
            failure = None
        except AttemptFailed as o:
            failure = o
            if spec.outputs and not ctx.keep_failed_outputs:
                outputs.discard(spec.outputs)   # nothing half-written may look finished
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
        ctx.sink.emit(Retrying(spec.name, attempt, failure.kind.value, failure.message, delay))
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
    if spec.stdout_path is not None:
        finish_logs(spec, ctx.keep_logs, result)   # the logs worth keeping get their names (run.logs)
    return result


def _ask(cond: Callable, spec: TaskSpec, context: dict, timeout: float | None) -> Any:
    """What a condition answers; raises ``AttemptFailed`` (kind error) when it raises or takes longer than
    ``timeout`` seconds. A bounded condition runs in a thread of its own, which keeps running past the timeout
    (Python cannot stop a thread): the task fails and the run goes on."""
    name = getattr(cond, "__name__", repr(cond))
    if timeout is None:
        try:
            return cond(spec.task, context)
        except BaseException as e:
            _reraise_interrupt(e)
            raise AttemptFailed(FailureKind.ERROR, f"condition {name!r} raised {e!r}\n"
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
        raise AttemptFailed(FailureKind.ERROR, f"condition {name!r} of task {spec.name!r} did not return within "
                                          f"condition_timeout={timeout:g}s (it goes on running in its thread; "
                                          "the task is not run)")
    ok, value = answer[0]
    if not ok:
        raise AttemptFailed(FailureKind.ERROR, f"condition {name!r} raised {value}")
    return value


def _clear_outputs(spec: TaskSpec) -> None:
    try:
        outputs.clear(spec.outputs)
    except OSError as e:
        raise AttemptFailed(FailureKind.ERROR, f"cannot prepare the declared outputs of task {spec.name!r}: {e}") from None


def _check_outputs(spec: TaskSpec) -> None:
    lost = outputs.missing(spec.outputs)
    if lost:
        shown = ", ".join(outputs._rel(p, spec.cwd) for p in lost)
        raise AttemptFailed(FailureKind.MISSING_OUTPUT, f"task {spec.name!r} succeeded but did not write its declared "
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
        return run_isolated(spec, ctx, attempt, kwargs, result)
    token = _current.set(CurrentTask(spec.name, attempt, ctx.workdir))
    try:
        return spec.func(**kwargs)  # type: ignore[misc]
    except Exception as e:
        raise AttemptFailed(FailureKind.EXCEPTION, f"{type(e).__name__}: {e}\n{traceback.format_exc()}") from None
    except BaseException as e:  # sys.exit(), KeyboardInterrupt raised by the task: its failure, like any other
        _reraise_interrupt(e)
        raise AttemptFailed(FailureKind.EXCEPTION, f"{e!r} raised by the task\n{traceback.format_exc()}") from None
    finally:
        _current.reset(token)
