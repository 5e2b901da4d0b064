"""The contract between the driver (``molexp.run.engine``) and a backend: the few methods a backend implements.

A backend never reads or writes the driver's state. It receives the compiled run (``start``), the ready tasks
with their inputs' results (``submit``, when it does not start dependents itself), and each final result
(``task_final``); it sends events (``molexp.run.spec``) to the queue it was given. Readiness and skip
propagation are the driver's.
"""

from __future__ import annotations

from collections.abc import Iterable
from queue import SimpleQueue
from typing import Protocol

from ..run.spec import Cancel, Sink
from ..state.result import TaskResult


class Backend(Protocol):
    """What ``LocalBackend`` and ``DistributedBackend`` implement."""

    name: str
    tick: float                  # seconds between health checks (``check``) while the driver waits
    schedules_dependents: bool   # True: Dask starts each task when its inputs are in (the whole graph is
    #                              handed over at ``start``); False: the driver ``submit``s each ready task

    def make_sink(self, events: SimpleQueue, run_id: str) -> Sink:
        """Where the run's tasks send their events (they reach ``events``)."""

    def make_cancel(self, run_id: str) -> Cancel:
        """The run's stop flag as the tasks see it."""

    def start(self, compiled, events: SimpleQueue) -> None:
        """Start the run of ``compiled`` (``molexp.run.compile.Compiled``); outcomes go to ``events``."""

    def submit(self, name: str, upstream: tuple[TaskResult, ...]) -> None:
        """Task ``name`` is ready; ``upstream`` are its dependencies' results (only if not
        ``schedules_dependents``)."""

    def task_final(self, result: TaskResult) -> None:
        """The driver has recorded ``result`` (every task's final result, once)."""

    def caught_up(self) -> None:
        """The driver has handled every waiting event (a good moment to submit together)."""

    def check(self) -> None:
        """Raise ``ClusterError`` when the backend can no longer report outcomes."""

    def cancel(self, names: Iterable[str]) -> list[str]:
        """The run stops: of ``names`` (tasks not reported running), those certain never to start."""

    def may_have_started(self, name: str) -> bool:
        """Whether ``name`` may have started without its start being reported (a lost cluster)."""

    def close(self) -> None:
        """Release everything the backend holds."""
