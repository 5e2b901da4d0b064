"""One run of one executor: everything set up before the first task starts, then iterated to the end.

``RunSession(work, params, context, config=, backend=, ...)`` validates and compiles the work, takes the
checkpoint lock and connects the backend (raising on bad input before anything runs). Iterating it starts the tasks and
yields each final ``TaskResult`` as it arrives; leaving the loop early stops the run cleanly. ``results()``
then gives the run's ``Results``.
"""

from __future__ import annotations

import logging
import os
import queue as _queue
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..state import durations
from ..state import files as _files
from ..state.checkpoint import Checkpoint
from .compile import compile_graph
from .engine import Driver
from .logs import remove_stale
from ..errors import CheckpointError, ClusterError, ConfigError, TaskDefinitionError
from ..state.filehash import HashCache
from ..state.journal import find_checkpoint_dir
from ..state.live import RunningFile
from ..gc_pause import gc_paused
from .progress import Progress
from ..state.result import Results, TaskResult
from .config import ExecutionConfig
from .spec import Interrupt, RunContext
from ..backends.base import Backend
from ..state.uptodate import Plan, PlanEntry, decide, fingerprints

log = logging.getLogger("molexp")


class RunSession:
    """A prepared run (see the module docstring), and the owner of what it acquires: the checkpoint's lock,
    the backend (its subscription, threads and futures), the log directory's lock and the progress bar.

    Its collaborators are parameters: the options (``config``), the ``backend`` (which the session closes),
    the ``condition`` and ``on_progress`` callbacks. Use it as a context manager, or iterate it to the end
    (or ``close()`` it): either releases everything, also when set-up fails half-way.
    """

    def __init__(self, work: Any, params: Mapping[str, Any] | None = None,
                 context: Mapping[str, Any] | None = None, *, config: ExecutionConfig, backend: Backend,
                 condition: Callable | None = None, on_progress: Callable | None = None,
                 targets: Iterable[str] | None = None, force: Iterable[str] | None = None):
        self.checkpoint = self.progress = self.compiled = self.live = None
        self.backend = backend
        self.config = config
        self._iterated = self._closed = False
        try:
            with gc_paused():
                self._prepare(work, params, context, condition, on_progress, targets, force)
        except BaseException:
            self.close()   # a set-up failure releases what was already acquired (the lock, the subscription)
            raise

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _prepare(self, work, params, context, condition, on_progress, targets, force) -> None:
        cfg, backend = self.config, self.backend
        self.started = time.perf_counter()
        run_id = uuid.uuid4().hex[:12]
        self.events: _queue.SimpleQueue = _queue.SimpleQueue()
        inputs = _inputs(cfg, work, params, context)
        # The checkpoint's file hashes, read before its lock is taken (each entry is checked against the file's
        # stat when used): the stat that checks a source input exists also hashes it.
        hashes = HashCache.load(find_checkpoint_dir(cfg.checkpoint_dir)) if cfg.checkpoint_dir else None
        graph, resolved, forced = select(inputs.graph, inputs.params, inputs.workdir, targets, force, hashes)
        self.graph = graph
        self.ctx = _run_context(cfg, inputs, run_id, condition, sink=backend.make_sink(self.events, run_id),
                                cancel=backend.make_cancel(run_id))
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
                                                  self.ctx.workdir, hashes, resume=cfg.auto_resume, force=forced)
            self.compiled.reuse(self.cached)
            kinds = {n: s.kind for n, s in self.compiled.specs.items()}
            on_final = lambda result: self.checkpoint.record(result, kinds.get(result.name))  # noqa: E731
        remove_stale(self.compiled.specs.values())   # what earlier runs logged for the tasks that run now
        link = getattr(backend, "dashboard_link", lambda: None)()
        if link:
            log.info("molexp: %d tasks on %s; dashboard: %s", len(graph), backend.name, link)
        if self.checkpoint is not None:   # what runs now, for `molexp status` (the journal has outcomes only)
            self.live = RunningFile(str(self.checkpoint.path), len(graph))
        self.progress = Progress(on_progress, len(graph), bar=cfg.progress, description=exp_name, watcher=self.live)
        self.driver = Driver(graph, backend, self.ctx.cancel, self.events, self.progress, on_final=on_final,
                             fail_fast=cfg.fault_tolerance == "fail_fast", kill_grace=cfg.kill_grace)

    def interrupt(self, signal: str, escalate: Callable[[], None] | None = None) -> None:
        """Stop the run as Ctrl-C would, from a signal handler (thread-safe; see ``spec.Interrupt``)."""
        self.events.put(Interrupt(signal, escalate))

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
            if self.compiled.durations_path is not None:  # for the next run's order (state.durations)
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
            if self.live is not None:
                self.live.close()
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


@dataclass(frozen=True)
class _Inputs:
    """A run's work and values, checked: the graph, the experiment's name, workdir, params and context."""

    graph: Any
    experiment: str
    workdir: str
    params: dict
    context: dict


def _inputs(cfg: ExecutionConfig, work, params, context) -> _Inputs:
    """The run's inputs, checked; raises on bad input."""
    from .config import check_kept_tasks
    from ..model.work import as_graph

    if work is None:
        raise TaskDefinitionError("nothing to run: pass an Experiment, TaskGraph, TaskPool or list of tasks")
    graph, exp_name, workdir, default_params = as_graph(work)
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"params= expects a mapping, got {type(params).__name__}")
    if context is not None and not isinstance(context, Mapping):
        raise ConfigError(f"context= expects a mapping, got {type(context).__name__}")
    check_kept_tasks(cfg, graph.tasks)
    return _Inputs(graph, exp_name, str(Path(workdir).resolve()), {**default_params, **(params or {})},
                   dict(context or {}))


def _run_context(cfg: ExecutionConfig, inputs: _Inputs, run_id: str, condition, *, sink, cancel) -> RunContext:
    return RunContext(run_id=run_id, experiment=inputs.experiment, workdir=inputs.workdir, sink=sink, cancel=cancel,
                      params=inputs.params, context=inputs.context, condition=condition,
                      retry_delay=cfg.retry_delay, retry_exponential_backoff=cfg.retry_exponential_backoff,
                      retry_max_delay=cfg.retry_max_delay, retry_jitter=cfg.retry_jitter,
                      kill_grace=cfg.kill_grace, cpu_affinity=cfg.cpu_affinity,
                      pipefail=cfg.pipefail, keep_failed_outputs=cfg.keep_failed_outputs,
                      hash_outputs=cfg.checkpoint_dir is not None, condition_timeout=cfg.condition_timeout,
                      keep_processes=cfg.keep_processes, keep_logs=cfg.keep_logs)


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


def select(graph, params: Mapping[str, Any], workdir: str, targets, force, hashes: HashCache | None = None):
    """(the graph to run, its resolved files, the forced names): files resolved into dependencies (source
    inputs hashed with ``hashes``), then narrowed to ``targets`` (task names, or output paths relative to the
    workdir) and what they need."""
    resolved = _files.resolve(graph, params, workdir, hashes=hashes.get if hashes is not None else None)
    graph = resolved.graph
    wanted, forced = _names("targets", targets), _names("force", force)

    def task_of(what: str, name: str) -> str:
        if name in graph:
            return name
        producer = resolved.producers.get(os.path.normpath(os.path.join(workdir, name)))
        if producer is None:
            from ..model.graph import _did_you_mean

            raise ConfigError(f"{what} {name!r} is neither a task nor a declared output"
                              + _did_you_mean(name, graph.tasks))
        return producer

    if wanted:
        graph = graph.needed_by([task_of("target", n) for n in wanted])
        resolved = _files.Resolved(graph, {n: f for n, f in resolved.files.items() if n in graph},
                                   {p: n for p, n in resolved.producers.items() if n in graph}, resolved.sources)
    forced_names = frozenset(task_of("forced task", n) for n in forced)
    outside = sorted(forced_names - set(graph.tasks))
    if outside:
        raise ConfigError(f"force= names {outside}, which the targets do not need")
    return graph, resolved, forced_names


def make_plan(cfg: ExecutionConfig, work, params=None, *, targets=None, force=None) -> Plan:
    """What running ``work`` with options ``cfg`` (and ``targets=``, ``force=``) would do, without running or
    changing anything: task name -> ``PlanEntry`` (see ``Executor.plan``)."""
    from ..state.journal import read_state

    resuming = cfg.checkpoint_dir is not None and cfg.auto_resume
    directory = find_checkpoint_dir(cfg.checkpoint_dir) if resuming else None
    hashes = HashCache.load(directory) if resuming else None
    with gc_paused():
        inputs = _inputs(cfg, work, params, None)
        full = inputs.graph
        graph, resolved, forced = select(full, inputs.params, inputs.workdir, targets, force, hashes)
        ctx = _run_context(cfg, inputs, "plan", None, sink=None, cancel=None)
        compiled = compile_graph(graph, ctx, cfg, resolved.files, dry=True)
    order = graph.topological_order()
    if not resuming:
        why = "no checkpoint" if cfg.checkpoint_dir is None else "resume is off"
        entries = {n: PlanEntry("run", f"{why}: every task runs") for n in order}
    else:
        try:
            records = read_state(directory)["records"]
        except FileNotFoundError:
            records = {}
        fps = fingerprints(order, compiled.specs, resolved.files)
        entries, _ = decide(order, {n: compiled.specs[n].deps for n in order}, fps, resolved.files, records,
                            hashes, ctx.workdir, force=forced, known=resolved.sources)
    skip = PlanEntry("skip", "not needed for the targets")
    return Plan({n: entries.get(n, skip) for n in full.tasks})
