"""``ExperimentExecutor``: run an experiment (or graph) on Dask, locally by default."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..state.result import Results
from .base import Executor


class ExperimentExecutor(Executor):
    """Runs an ``Experiment`` (or ``TaskGraph``, ``TaskPool``, list of tasks) on Dask.

    With no ``client=``, ``cluster=`` or ``address=``, tasks run on Dask's local threaded scheduler
    (nothing to start; ``max_workers`` threads, default the CPU count). With one, they run on that
    ``distributed`` cluster; nothing else changes. Options may be given here or with ``configure()``.
    """

    def __init__(self, experiment: Any, *, client=None, cluster=None, address: str | None = None,
                 **options: Any):
        super().__init__(experiment, client=client, cluster=cluster, address=address, **options)

    def run(self, params: Mapping[str, Any] | None = None, *, context: Mapping[str, Any] | None = None,
            targets: Iterable[str] | None = None, force: Iterable[str] | None = None) -> Results:
        """Run every task; returns ``Results`` (task name -> ``TaskResult``, with ``summary()``).

        ``params`` override the experiment's parameters (template values of shell tasks, matching
        arguments of Python tasks); ``context`` is handed to condition checks. ``targets`` (task names or
        declared output paths) runs only those tasks and what they need; ``force`` runs those tasks again
        on resume, and what depends on them, even when they are up to date. Bad input raises before
        anything runs. With ``error_propagation=True`` a failed task makes this raise ``ExecutionError``.
        """
        return self._execute(self._work, params, context, targets, force)

    def execute(self, work: Any = None, params: Mapping[str, Any] | None = None, *,
                context: Mapping[str, Any] | None = None, targets: Iterable[str] | None = None,
                force: Iterable[str] | None = None) -> Results:
        """Run ``work`` (default: the executor's experiment); the contract every executor shares."""
        return self._execute(self._work if work is None else work, params, context, targets, force)
