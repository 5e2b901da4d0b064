"""One run of one executor: everything set up before the first task starts, then iterated to the end.

``RunSession(executor, work, params, context)`` validates and compiles the work, takes the checkpoint
lock and makes the backend (raising on bad input before anything runs). Iterating it starts the tasks and
yields each final ``TaskResult`` as it arrives; leaving the loop early stops the run cleanly. ``results()``
then gives the run's ``Results``.
"""

from __future__ import annotations

import logging
import os
import queue as _queue
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..state import durations
from ..state import files as _files
from ..state.checkpoint import Checkpoint
from .compile import compile_graph
from .engine import Driver
from ..errors import CheckpointError, ClusterError, ConfigError, TaskDefinitionError
from ..state.filehash import HashCache
from ..model.graph import gc_paused
from .progress import Progress
from ..state.result import Results, TaskResult
from .runtime import RunContext
from ..state.uptodate import Plan, PlanEntry, decide, fingerprints

log = logging.getLogger("molexp")


class RunSession:
    """A prepared run (see the module docstring)."""

    def __init__(self, executor, work: Any, params: Mapping[str, Any] | None, context: Mapping[str, Any] | None,
                 *, targets: Iterable[str] | None = None, force: Iterable[str] | None = None):
        self.checkpoint = self.backend = self.progress = self.compiled = None
        self._iterated = self._closed = False
        try:
            with gc_paused():
                self._prepare(executor, work, params, context, targets, force)
        except BaseException:
            self.close()   # a set-up failure releases what was already acquired (the lock, the subscription)
            raise

    def _prepare(self, executor, work, params, context, targets, force) -> None:
        cfg = executor.config
        self.config = cfg
        self.started = time.perf_counter()
        run_id = uuid.uuid4().hex[:12]
        self.events: _queue.SimpleQueue = _queue.SimpleQueue()
        self.ctx, prepared = _context(executor, work, params, context, run_id)
        graph, resolved, forced = select(prepared, self.ctx, targets, force)
        self.graph = graph
        # raises on bad input before anything runs
        self.compiled = compile_graph(graph, self.ctx, cfg, resolved.files)
        exp_name = self.ctx.experiment
        # Takes the directory's lock, or raises before anything runs.
        self.checkpoint = Checkpoint(cfg.checkpoint_dir, exp_name, cfg.checkpoint_interval) \
            if cfg.checkpoint_dir else None
        self.cached: dict[str, TaskResult] = {}
        on_final = None
        if self.checkpoint is not None:
            self.cached = self.checkpoint.prepare(graph.topological_order(), self.compiled.specs, resolved,
                                                  self.ctx.workdir, resume=cfg.auto_resume, force=forced)
            self.compiled.reuse(self.cached)
            kinds = {n: s.kind for n, s in self.compiled.specs.items()}
            on_final = lambda result: self.checkpoint.record(result, kinds.get(result.name))  # noqa: E731
        self.backend = executor._backend()
        self.ctx.sink = self.backend.make_sink(self.events, run_id)
        self.ctx.cancel = self.backend.make_cancel(run_id)
        link = getattr(self.backend, "dashboard_link", lambda: None)()
        if link:
            log.info("molexp: %d tasks on %s; dashboard: %s", len(graph), executor.client, link)
        self.progress = Progress(executor._progress_callback, len(graph), bar=cfg.progress, description=exp_name)
        self.driver = Driver(graph, self.backend, self.ctx.cancel, self.events, self.progress, on_final=on_final,
                             fail_fast=cfg.fault_tolerance == "fail_fast", kill_grace=cfg.kill_grace)

    def __iter__(self) -> Iterator[TaskResult]:
        if self._iterated or self._closed:
            raise RuntimeError("a run can be iterated once")
        self._iterated = True
        try:
            yield from self.driver.iterate(self.compiled, self.cached)
            if self.driver.fatal is not None:
                raise self._fatal()
        except ClusterError as e:   # the cluster was lost: every task has its outcome, said truly
            e.results = self._results()
            raise
        finally:
            if self.compiled.durations_path is not None:  # priority scheduling: remember durations
                durations.save(self.compiled.durations_path, self.compiled.known_durations or {},
                               self.driver.finals().values())
            self.close()

    def close(self) -> None:
        """Release what the run holds (progress bar, backend and its subscription, checkpoint lock), once;
        also for a run that was never iterated."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.progress is not None:
                self.progress.close()
            if self.backend is not None:
                self.backend.close()
        finally:
            if self.compiled is not None:
                self.compiled.release()
            if self.checkpoint is not None:
                self.checkpoint.close()

    def _fatal(self) -> CheckpointError:
        """The error that stopped the run (its journal could not be written), carrying the run's results."""
        e = self.driver.fatal
        error = e if isinstance(e, CheckpointError) else CheckpointError(
            f"the checkpoint cannot be written: {type(e).__name__}: {e}",
            str(self.checkpoint.path) if self.checkpoint is not None else None)
        error.results = self._results()
        return error

    def _results(self) -> Results:
        return Results(self.driver.finals(), wall_time=time.perf_counter() - self.started,  # type: ignore[arg-type]
                       interrupted=self.driver.interrupted)

    def results(self) -> Results:
        """The run's results (iterating it first if nobody did)."""
        if not self._iterated:
            for _ in self:
                pass
        return self._results()


def _context(executor, work, params, context, run_id: str):
    """(the run's context, the work's graph) for ``executor``; raises on bad input."""
    from .config import check_kept_tasks
    from ..executors.base import as_graph

    if work is None:
        raise TaskDefinitionError("nothing to run: pass an Experiment, TaskGraph, TaskPool or list of tasks")
    graph, exp_name, workdir, default_params = as_graph(work)
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"params= expects a mapping, got {type(params).__name__}")
    if context is not None and not isinstance(context, Mapping):
        raise ConfigError(f"context= expects a mapping, got {type(context).__name__}")
    cfg = executor.config
    check_kept_tasks(cfg, graph.tasks)
    ctx = RunContext(run_id=run_id, experiment=exp_name, workdir=str(Path(workdir).resolve()),
                     sink=None, cancel=None, params={**default_params, **(params or {})},
                     context=dict(context or {}), condition=executor._condition,
                     retry_delay=cfg.retry_delay, retry_exponential_backoff=cfg.retry_exponential_backoff,
                     retry_max_delay=cfg.retry_max_delay, retry_jitter=cfg.retry_jitter,
                     kill_grace=cfg.kill_grace, cpu_affinity=cfg.cpu_affinity,
                     pipefail=cfg.pipefail, keep_failed_outputs=cfg.keep_failed_outputs,
                     hash_outputs=cfg.checkpoint_dir is not None, condition_timeout=cfg.condition_timeout,
                     keep_processes=cfg.keep_processes)
    return ctx, graph


def _names(what: str, given) -> list[str]:
    if given is None:
        return []
    if isinstance(given, str):
        given = [given]
    try:
        items = list(given)
    except TypeError:
        raise ConfigError(f"{what}= expects a list of task names, got {type(given).__name__}") from None
    for n in items:
        if not isinstance(n, str) or not n:
            raise ConfigError(f"{what}= expects task names (or declared output paths), got {n!r}")
    return items


def select(graph, ctx: RunContext, targets, force):
    """(the graph to run, its resolved files, the forced names): files resolved into dependencies, then
    narrowed to ``targets`` (task names, or output paths relative to the workdir) and what they need."""
    resolved = _files.resolve(graph, ctx.params, ctx.workdir)
    graph = resolved.graph
    wanted, forced = _names("targets", targets), _names("force", force)

    def task_of(what: str, name: str) -> str:
        if name in graph:
            return name
        producer = resolved.producers.get(os.path.normpath(os.path.join(ctx.workdir, name)))
        if producer is None:
            from ..model.graph import _did_you_mean

            raise ConfigError(f"{what} {name!r} is neither a task nor a declared output"
                              + _did_you_mean(name, graph.tasks))
        return producer

    if wanted:
        graph = graph.needed_by([task_of("target", n) for n in wanted])
        resolved = _files.Resolved(graph, {n: f for n, f in resolved.files.items() if n in graph},
                                   {p: n for p, n in resolved.producers.items() if n in graph}, resolved.stats)
    forced_names = frozenset(task_of("forced task", n) for n in forced)
    outside = sorted(forced_names - set(graph.tasks))
    if outside:
        raise ConfigError(f"force= names {outside}, which the targets do not need")
    return graph, resolved, forced_names


def make_plan(executor, work, params=None, *, targets=None, force=None) -> Plan:
    """What ``executor.execute(work, params, targets=, force=)`` would do, without running or changing
    anything: task name -> ``PlanEntry`` (see ``Executor.plan``)."""
    from ..state.journal import find_checkpoint_dir, read_state

    cfg = executor.config
    with gc_paused():
        ctx, full = _context(executor, work, params, None, "plan")
        graph, resolved, forced = select(full, ctx, targets, force)
        compiled = compile_graph(graph, ctx, cfg, resolved.files, dry=True)
    order = graph.topological_order()
    if cfg.checkpoint_dir is None or not cfg.auto_resume:
        why = "no checkpoint" if cfg.checkpoint_dir is None else "resume is off"
        entries = {n: PlanEntry("run", f"{why}: every task runs") for n in order}
    else:
        directory = find_checkpoint_dir(cfg.checkpoint_dir)
        try:
            records = read_state(directory)["records"]
        except FileNotFoundError:
            records = {}
        fps = fingerprints(order, compiled.specs, resolved.files)
        entries, _ = decide(order, {n: compiled.specs[n].deps for n in order}, fps, resolved.files, records,
                            HashCache.load(directory), ctx.workdir, force=forced)
    skip = PlanEntry("skip", "not needed for the targets")
    return Plan({n: entries.get(n, skip) for n in full.tasks})
