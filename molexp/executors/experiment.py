"""``ExperimentExecutor``: run an experiment (or graph) on Dask, locally by default."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ValidationError
from ..model.experiment import Experiment
from ..model.graph import TaskGraph
from ..state.result import Results
from .base import Executor

_NO_EXPERIMENT = object()


class ExperimentExecutor(Executor):
    """Runs an ``Experiment`` (or ``TaskGraph``, ``TaskPool``, list of tasks) on Dask.

    With no ``client=``, ``cluster=`` or ``address=``, tasks run on Dask's local threaded scheduler
    (nothing to start; ``max_workers`` threads, default the CPU count). With one, they run on that
    ``distributed`` cluster; nothing else changes. Options may be given here or with ``configure()``.

    ``name`` names the run (its logs and default checkpoint go under ``.molexp/<name>/``); the default is
    the experiment's name. ``ExperimentExecutor()`` without an experiment runs what ``execute(work)`` is
    given; ``ExperimentExecutor(None)`` is an error (a variable that was meant to hold an experiment).
    """

    def __init__(self, experiment: Any = _NO_EXPERIMENT, name: str | None = None, *, client=None, cluster=None,
                 address: str | None = None, **options: Any):
        if experiment is None:
            raise ValidationError("ExperimentExecutor(None): expected an Experiment (or a TaskGraph, TaskPool or "
                                  "list of tasks), got None; to give the work later, to execute(work), write "
                                  "ExperimentExecutor() without it")
        if name is not None and (not isinstance(name, str) or not name.strip() or "\0" in name):
            raise ValidationError(f"ExperimentExecutor: name must be a non-empty string, got {name!r}")
        work = None if experiment is _NO_EXPERIMENT else experiment
        super().__init__(work, client=client, cluster=cluster, address=address, **options)
        self.name = name if name is not None else getattr(work, "name", None)
        if name is not None and work is not None:
            self._work = _renamed(work, name)

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



def _renamed(work: Any, name: str) -> Any:
    """``work`` under the run name ``name``: a shallow copy sharing its tasks (nothing is copied per task)."""
    if isinstance(work, (Experiment, TaskGraph)):
        work = copy.copy(work)
    else:   # a list of tasks: the graph it makes
        from .base import as_graph

        work = as_graph(work)[0]
    work.name = name
    return work
