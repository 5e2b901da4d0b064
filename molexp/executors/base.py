"""The contract every executor shares: configure, callbacks, and ``run``/``execute`` on Dask.

Back-ends inherit all of it; they differ only in how the compiled graph is handed to Dask.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..backends import cluster as _cluster
from ..backends.distributed import DistributedBackend
from ..backends.local import LocalBackend
from ..run.config import ExecutionConfig
from ..errors import ConfigError, ExecutionError
from ..model.work import as_graph
from ..state.result import Results, TaskResult
from ..run.session import RunSession
from ..model.task import Task
from ..state.uptodate import Plan

log = logging.getLogger("molexp")


class RunInterrupted(KeyboardInterrupt):
    """Raised by ``run()`` after Ctrl-C, once running tasks are terminated; ``results`` holds what finished."""

    def __init__(self, results: Results):
        super().__init__("run interrupted; results holds what finished")
        self.results = results


class Executor:
    """Shared base: holds the work, the options (``configure``), the condition and progress callbacks, and
    the Dask target (local threaded scheduler, or a ``distributed`` client/cluster/address)."""

    def __init__(self, work: Any = None, *, client=None, cluster=None, address: str | None = None,
                 **options: Any):
        self._work = work
        if work is not None:
            as_graph(work)  # fail now on the wrong kind of object
        self.config = ExecutionConfig().merge(**options)
        self._client, self._owns_client = _cluster.connect(client=client, cluster=cluster, address=address)
        self._condition: Callable | None = None
        self._progress_callback: Callable | None = None

    # -- options ------------------------------------------------------------------------------------------
    def configure(self, **options: Any) -> Executor:
        """Merge options into the (immutable, validated) config; returns the executor for chaining.

        Raises ``ConfigError`` naming an unknown option, or a value of the wrong type or range.
        See ``ExecutionConfig`` for every option and its default.
        """
        self.config = self.config.merge(**options)
        return self

    def set_condition_check(self, fn: Callable[[Task, Mapping[str, Any]], bool] | None) -> Executor:
        """``fn(task, context) -> bool``, called just before each task would run; False skips the task and
        its dependents. ``context`` holds the run's params and ``context=`` values, plus ``"params"`` and
        ``"upstream"`` (dependency name -> TaskResult)."""
        if fn is not None and not callable(fn):
            raise ConfigError(f"set_condition_check expects a callable fn(task, context), got {type(fn).__name__}")
        self._condition = fn
        return self

    def set_progress_callback(self, fn: Callable[[Task, Any], None] | None) -> Executor:
        """``fn(task, status)`` on every transition (running, retrying, completed, failed, skipped, cached),
        from the thread that called ``run()``, in order for each task. An exception in it is logged."""
        if fn is not None and not callable(fn):
            raise ConfigError(f"set_progress_callback expects a callable fn(task, status), got {type(fn).__name__}")
        self._progress_callback = fn
        return self

    @property
    def client(self):
        """The ``distributed.Client`` tasks run on, or None for Dask's local threaded scheduler."""
        return self._client

    def resume_from_checkpoint(self, path: str | os.PathLike, params: Mapping[str, Any] | None = None, *,
                               context: Mapping[str, Any] | None = None, work: Any = None) -> Results:
        """Run again from the checkpoint at ``path`` (the checkpoint directory, or any file in it, e.g.
        ``"checkpoints/workflow_state.pkl"``): tasks that are up to date end ``cached``; changed tasks and
        everything downstream of them run again. ``work`` defaults to the executor's own. The same on every
        executor; the executor's options are as before afterwards. ``CheckpointError`` when ``path`` holds
        no checkpoint (nothing runs), unless it is the executor's own ``checkpoint_dir`` (then this is a
        first run that records there, as ``run()`` with ``auto_resume=True`` would be)."""
        from ..errors import CheckpointError
        from ..state.journal import JOURNAL_NAME, SNAPSHOT_NAME, find_checkpoint_dir

        directory = find_checkpoint_dir(path)
        own = self.config.checkpoint_dir is not None and \
            find_checkpoint_dir(self.config.checkpoint_dir).resolve() == directory.resolve()
        if not (own or (directory / JOURNAL_NAME).is_file() or (directory / SNAPSHOT_NAME).is_file()):
            raise CheckpointError(f"no checkpoint to resume at {path} (no {JOURNAL_NAME} in {directory}); to "
                                  "start a new one, configure checkpoint_dir instead", str(directory))
        saved = self.config
        self.config = saved.merge(checkpoint_dir=str(directory), auto_resume=True)
        try:
            return self.execute(work, params, context=context)
        finally:
            self.config = saved

    def close(self) -> None:
        """Close the Dask client molexp made (from ``cluster=`` or ``address=``); a given client stays open."""
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running ------------------------------------------------------------------------------------------
    def _backend(self):
        """A fresh backend for one run (executors that hand work to Dask differently override this)."""
        if self._client is not None:
            return DistributedBackend(self._client, bundle_seconds=self.config.bundle_seconds)
        return LocalBackend(self.config.max_workers)

    def plan(self, params: Mapping[str, Any] | None = None, *, targets: Iterable[str] | None = None,
             force: Iterable[str] | None = None) -> Plan:
        """What running the executor's work would do, without running or changing anything: a ``Plan``
        (task name -> ``PlanEntry`` with ``action`` ``"run"``, ``"cached"`` or ``"skip"`` and a ``reason``).
        Resume decisions follow the options (``checkpoint_dir``, ``auto_resume``) as a run would; ``targets``
        and ``force`` as for ``run``. Bad input raises as it would for a run."""
        from ..run.session import make_plan

        return make_plan(self.config, self._work, params, targets=targets, force=force)

    def execute(self, work: Any = None, params: Mapping[str, Any] | None = None, *,
                context: Mapping[str, Any] | None = None) -> Results:
        """Run ``work`` (an Experiment, TaskGraph, TaskPool or list of tasks; default: the work the executor was
        made with) with ``params`` (values for the commands' templates and the functions' arguments) and
        ``context`` (values the condition check sees); returns ``Results``. The same on every executor."""
        return self._execute(work, params, context)

    def _execute(self, work: Any, params: Mapping[str, Any] | None, context: Mapping[str, Any] | None,
                 targets: Iterable[str] | None = None, force: Iterable[str] | None = None) -> Results:
        with self._session(work, params, context, targets=targets, force=force) as session:
            return self._finish(session.results())

    def _session(self, work: Any, params: Mapping[str, Any] | None, context: Mapping[str, Any] | None, *,
                 targets: Iterable[str] | None = None, force: Iterable[str] | None = None) -> RunSession:
        """A prepared run of ``work`` (default: the executor's own) with this executor's options, backend and
        callbacks; raises on bad input before anything runs."""
        return RunSession(self._work if work is None else work, params, context, config=self.config,
                          backend=self._backend(), condition=self._condition, on_progress=self._progress_callback,
                          targets=targets, force=force)

    def _finish(self, results: Results) -> Results:
        cfg = self.config
        if not results.ok and not cfg.partial_results:
            results = Results({n: _without_value(r) for n, r in results.items()}, wall_time=results.wall_time,
                              interrupted=results.interrupted)
        if results.interrupted:
            raise RunInterrupted(results)
        if cfg.error_propagation and results.failed:
            raise ExecutionError(f"{len(results.failed)} task(s) failed: {', '.join(results.failed[:10])}"
                                 + (" ..." if len(results.failed) > 10 else ""), results)
        return results


def _without_value(r: TaskResult) -> TaskResult:
    if r.value is None:
        return r
    import dataclasses

    return dataclasses.replace(r, value=None)
