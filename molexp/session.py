"""One run of one executor: everything set up before the first task starts, then iterated to the end.

``RunSession(executor, work, params, context)`` validates and compiles the work, takes the checkpoint
lock and makes the backend (raising on bad input before anything runs). Iterating it starts the tasks and
yields each final ``TaskResult`` as it arrives; leaving the loop early stops the run cleanly. ``results()``
then gives the run's ``Results``.
"""

from __future__ import annotations

import logging
import queue as _queue
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import durations
from .checkpoint import Checkpoint
from .compile import compile_graph
from .engine import Driver
from .graph import gc_paused
from .errors import ConfigError, TaskDefinitionError
from .progress import Progress
from .result import Results, TaskResult
from .runtime import RunContext

log = logging.getLogger("molexp")


class RunSession:
    """A prepared run (see the module docstring)."""

    def __init__(self, executor, work: Any, params: Mapping[str, Any] | None, context: Mapping[str, Any] | None):
        with gc_paused():
            self._prepare(executor, work, params, context)

    def _prepare(self, executor, work, params, context) -> None:
        from .executors.base import as_graph

        if work is None:
            raise TaskDefinitionError("nothing to run: pass an Experiment, TaskGraph, TaskPool or list of tasks")
        graph, exp_name, workdir, default_params = as_graph(work)
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(f"params= expects a mapping, got {type(params).__name__}")
        if context is not None and not isinstance(context, Mapping):
            raise ConfigError(f"context= expects a mapping, got {type(context).__name__}")
        cfg = executor.config
        self.graph, self.config = graph, cfg
        self.started = time.perf_counter()
        run_id = uuid.uuid4().hex[:12]
        self.events: _queue.SimpleQueue = _queue.SimpleQueue()
        self.ctx = RunContext(run_id=run_id, experiment=exp_name, workdir=str(Path(workdir).resolve()),
                              sink=None, cancel=None, params={**default_params, **(params or {})},
                              context=dict(context or {}), condition=executor._condition,
                              retry_delay=cfg.retry_delay, retry_exponential_backoff=cfg.retry_exponential_backoff,
                              retry_max_delay=cfg.retry_max_delay, retry_jitter=cfg.retry_jitter,
                              kill_grace=cfg.kill_grace, cpu_affinity=cfg.cpu_affinity,
                              # running/retrying events cost a message each on a cluster: only when read
                              report_starts=executor._progress_callback is not None)
        self.compiled = compile_graph(graph, self.ctx, cfg)  # raises on bad input before anything runs
        # Takes the directory's lock, or raises before anything runs.
        self.checkpoint = Checkpoint(cfg.checkpoint_dir, exp_name, cfg.checkpoint_interval) \
            if cfg.checkpoint_dir else None
        self.cached: dict[str, TaskResult] = {}
        on_final = None
        if self.checkpoint is not None:
            self.cached = self.checkpoint.prepare(graph.topological_order(), self.compiled.specs,
                                                  resume=cfg.auto_resume)
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
        self._iterated = False

    def __iter__(self) -> Iterator[TaskResult]:
        if self._iterated:
            raise RuntimeError("a run can be iterated once")
        self._iterated = True
        try:
            yield from self.driver.iterate(self.compiled, self.cached)
        finally:
            self.progress.close()
            self.backend.close()
            if self.compiled.durations_path is not None:  # priority scheduling: remember durations
                durations.save(self.compiled.durations_path, self.compiled.known_durations or {},
                               self.driver.finals().values())
            if self.checkpoint is not None:
                self.checkpoint.close()

    def results(self) -> Results:
        """The run's results (iterating it first if nobody did)."""
        if not self._iterated:
            for _ in self:
                pass
        return Results(self.driver.finals(), wall_time=time.perf_counter() - self.started,  # type: ignore[arg-type]
                       interrupted=self.driver.interrupted)
