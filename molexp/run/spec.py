"""The typed boundary of a run: what the driver, the backends and the worker-side runtime say to each other.

* ``TaskSpec`` -- one task compiled for one run (frozen, built by keyword in ``compile``).
* ``RunContext`` -- what every task of the run shares (frozen; shipped once per worker).
* Events, from a worker or a backend to the driver's queue: ``Started``, ``Retrying``, ``Finished``,
  ``EngineDone``, ``EngineError``, ``ClusterLost``; and ``Interrupt``, a signal the caller turned into an event.
* ``upstream_reason`` -- the one place that says why a task cannot run because of its dependencies.
* ``CurrentTask`` / ``current_task()`` -- inside a Python task, which task and attempt this is.

Nothing here imports Dask: the backends (``molexp.backends``) speak Dask, the driver (``engine``) speaks events.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..state.result import TaskResult, TaskStatus


@dataclass(frozen=True, slots=True, kw_only=True)
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


class Sink(Protocol):
    """Where a task's events go (a backend makes one per run: ``Backend.make_sink``)."""

    def emit(self, event: Started | Retrying) -> None: ...
    def done(self, result: TaskResult) -> None: ...
    def worker(self) -> str: ...


class Cancel(Protocol):
    """A run's stop flag as the tasks see it (a backend makes one per run: ``Backend.make_cancel``)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, seconds: float) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What every task of one run shares (a single Dask data node, shipped once per worker)."""

    run_id: str
    experiment: str
    workdir: str
    sink: Sink
    cancel: Cancel
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
    keep_logs: str = "all"                      # "failed": only tasks that did not complete keep their log files


# -- events -----------------------------------------------------------------------------------------------
# Small and slotted: a run of 100,000 tasks sends at least two per task.

@dataclass(frozen=True, slots=True)
class Started:
    """A task's attempt ``attempt`` started at ``time`` on ``worker``."""

    name: str
    attempt: int
    time: float
    worker: str | None


@dataclass(frozen=True, slots=True)
class Retrying:
    """Attempt ``attempt`` of a task failed (``failure``, ``message``); the next starts after ``delay`` s."""

    name: str
    attempt: int
    failure: str
    message: str
    delay: float


@dataclass(frozen=True, slots=True)
class Finished:
    """A task's final outcome, as its worker or the backend reports it."""

    result: TaskResult

    @property
    def name(self) -> str:
        return self.result.name


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Tasks the backend handed to a worker that was lost before they finished (members of a bundle whose
    worker died): each one not final yet is submitted again (``Backend.submit``)."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EngineDone:
    """The backend's engine has returned: no more events will come."""


@dataclass(frozen=True, slots=True)
class EngineError:
    """The backend's engine failed (a bug of ours): the driver gives every open task an outcome."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class ClusterLost:
    """The connection to the Dask scheduler is gone (``message`` says where and what is kept)."""

    message: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A signal the caller turned into an event (the ``molexp`` command), so no ``KeyboardInterrupt`` lands in
    the middle of the driver loop. The first stops the run as Ctrl-C does; ``escalate`` (given on a later one)
    is called once the stop flag is set (the command then SIGKILLs the task processes)."""

    signal: str
    escalate: Callable[[], None] | None = None


Event = Started | Retrying | Finished | Resubmit | EngineDone | EngineError | ClusterLost | Interrupt


def upstream_reason(upstream: Iterable[TaskResult | None]) -> str | None:
    """Why a task cannot run because of its dependencies' outcomes (None when nothing stops it): the one
    wording, said by the worker (local scheduler), the driver (cluster) and for a stopped run alike."""
    for up in upstream:
        if up is not None and not up.status.ok:
            return f"upstream {up.name!r} {'failed' if up.status is TaskStatus.FAILED else 'was skipped'}"
    return None


# -- the task being run ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CurrentTask:
    """The task being run in this context (see ``current_task()``)."""

    name: str
    attempt: int       # 1, 2, ... (retries count up)
    workdir: str


_current: contextvars.ContextVar[CurrentTask | None] = contextvars.ContextVar("molexp_current", default=None)


def current_task() -> CurrentTask | None:
    """Inside a Python task: a ``CurrentTask`` with its ``name``, ``attempt`` number (1, 2, ...) and
    ``workdir``; None elsewhere."""
    return _current.get()
