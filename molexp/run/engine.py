"""The driver loop of one run: start the graph on a backend, turn worker events into ordered task
transitions, stop on failure or Ctrl-C, and collect every task's final ``TaskResult``.

Everything that touches user callbacks, the progress bar and the journal happens here, in the one thread
that called ``run()``; workers only send events.
"""

from __future__ import annotations

import queue as _queue
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping

from ..errors import ClusterError
from ..model.graph import TaskGraph
from .progress import Progress
from ..state.result import Attempt, FailureKind, TaskResult, TaskStatus
from .spec import (ClusterLost, EngineDone, EngineError, Finished, Interrupt, Resubmit, Retrying, Started,
                   upstream_reason)


class RunState:
    """Per-task bookkeeping of what the user has been told, so every transition is reported once, in order."""

    __slots__ = ("final", "running", "retrying")

    def __init__(self):
        self.final: TaskResult | None = None
        self.running = 0     # attempts reported as running
        self.retrying = 0    # failed attempts reported as retrying


class RunStates(dict):
    """name -> ``RunState``, made on first use (a run of 100,000 tasks starts without building them all);
    a name that is not a task of the graph is a ``KeyError``."""

    def __init__(self, tasks: Mapping):
        super().__init__()
        self._tasks = tasks

    def __missing__(self, name: str) -> RunState:
        if name not in self._tasks:
            raise KeyError(name)
        st = self[name] = RunState()
        return st


class Driver:
    """Runs one compiled graph on a backend and returns the results by task name.

    ``on_final(result)`` is called for every final outcome (the journal hooks in there).
    """

    def __init__(self, graph: TaskGraph, backend, cancel, events: _queue.SimpleQueue, progress: Progress, *,
                 fail_fast: bool, kill_grace: float, on_final: Callable[[TaskResult], None] | None = None):
        self.graph = graph
        self.backend = backend
        self.cancel = cancel
        self.events = events
        self.progress = progress
        self.fail_fast = fail_fast
        self.kill_grace = kill_grace
        self.on_final = on_final
        self.state = RunStates(graph.tasks)
        self.left = len(graph)
        self.stop_reason: str | None = None
        self._doomed: dict[str, str] = {}
        # When the backend does not start dependents itself (a cluster): tasks -> dependencies not final yet,
        # and tasks whose dependencies all became final, to be submitted or skipped (see _dispatch).
        self._waiting: dict[str, int] | None = None
        self._became_ready: deque[str] = deque()
        self._ready: deque[TaskResult] = deque()
        self.interrupted = False
        self._escalated = False   # a second interrupt: the caller SIGKILLs the task processes
        self._killed: set[str] = set()   # tasks whose command that SIGKILL ended
        self.fatal: Exception | None = None   # the checkpoint could not be written: the run stopped for it

    # -- the loop -----------------------------------------------------------------------------------------
    def finals(self) -> dict[str, TaskResult | None]:
        """Every task's final result by name, in the graph's order (None where there is none yet)."""
        state = self.state
        return {name: state[name].final for name in self.graph.tasks}

    def iterate(self, compiled, cached: Mapping[str, TaskResult]) -> Iterator[TaskResult]:
        """Yield each task's final result as it arrives. Closing the generator early stops the run:
        nothing more starts, running tasks are terminated, and it returns once they have ended."""
        for result in cached.values():
            self._final(result)
        yield from self._drain_ready()
        if not self.left:
            return
        self.backend.start(compiled, self.events)
        if not self.backend.schedules_dependents:
            self._track_readiness(compiled)
        engine_done = False
        drain_deadline: float | None = None
        try:
            while self.left and not engine_done:
                try:
                    event = self.events.get(timeout=self.backend.tick)
                except _queue.Empty:
                    if drain_deadline is not None and time.monotonic() > drain_deadline:
                        break
                    try:
                        self.backend.check()
                    except ClusterError as e:
                        self._abandon(str(e))   # the same words as a ClusterLost event (below)
                        raise
                    continue
                except KeyboardInterrupt:
                    if self.interrupted:  # a second Ctrl-C: stop waiting
                        break
                    self.interrupted = True
                    self.stop("interrupted (Ctrl-C)")
                    drain_deadline = time.monotonic() + self.kill_grace + 5.0
                    continue
                kind = type(event)
                if kind is Interrupt:
                    # The first stops the run as Ctrl-C does. ``escalate`` (set on a later one) is called once
                    # the stop flag is set, so nothing starts after it (the command SIGKILLs the task
                    # processes); their outcomes are then awaited a short while only.
                    if not self.interrupted:
                        self.interrupted = True
                        self.stop(f"interrupted ({event.signal})")
                        drain_deadline = time.monotonic() + self.kill_grace + 5.0
                    if event.escalate is not None and not self._escalated:
                        self._escalated = True
                        drain_deadline = min(drain_deadline or float("inf"), time.monotonic() + 3.0)
                        event.escalate()
                    continue
                if kind is EngineDone:
                    engine_done = True
                elif kind is EngineError:
                    self._abandon(f"molexp engine error: {event.error!r}")
                    engine_done = True
                elif kind is ClusterLost:
                    self._abandon(event.message)
                    raise ClusterError(event.message)
                elif kind is Resubmit:
                    self._resubmit(event.names)
                else:
                    if self._escalated and kind is Finished:
                        _killed_by_us(event.result, self._killed)
                    self._handle(event)
                    if self.events.empty():
                        self._dispatch()
                        self.backend.caught_up()  # submit what those events readied / let outcomes pile up
                if self.stop_reason is not None and drain_deadline is None:
                    drain_deadline = time.monotonic() + self.kill_grace + 5.0
                yield from self._drain_ready()
        except GeneratorExit:
            self.stop("the consumer stopped reading results")
            self._wait_out(time.monotonic() + self.kill_grace + 5.0)
            raise
        if self.left:
            self._abandon(self.stop_reason or "the engine stopped before the task reported")
        yield from self._drain_ready()

    # -- readiness (when the backend does not start dependents itself) -----------------------------------------
    def _track_readiness(self, compiled) -> None:
        """Count what each task still waits for; hand the ready ones to the backend."""
        state = self.state
        waiting = self._waiting = {}
        for name, spec in compiled.specs.items():
            left = sum(1 for d in spec.deps if state[d].final is None)
            if left:
                waiting[name] = left
            elif state[name].final is None:
                self._became_ready.append(name)
        self._dispatch()
        self.backend.caught_up()

    def _dispatch(self) -> None:
        """Each task whose dependencies are all final: skipped here when one of them did not succeed (as the
        worker would say it, without a round trip), else submitted with their results. Nothing new is
        submitted once the run is stopping (the backend has said those tasks will not start)."""
        ready = self._became_ready
        state, graph = self.state, self.graph
        while ready:
            name = ready.popleft()
            if state[name].final is not None or self.stop_reason is not None:
                continue
            upstream = tuple(state[d].final for d in graph[name].deps)
            why = upstream_reason(upstream)
            if why is not None:
                self._final(TaskResult(name, TaskStatus.SKIPPED, reason=why))
            else:
                self.backend.submit(name, upstream)

    def _resubmit(self, names) -> None:
        """Tasks a lost worker took with it before they finished: submitted again, or, once the run is
        stopping, given their outcome now."""
        state = self.state
        for name in names:
            if name not in self.graph or state[name].final is not None:
                continue
            if self.stop_reason is not None:
                started = state[name].running > 0
                self._final(TaskResult(name, TaskStatus.SKIPPED,
                                       reason=self._upstream_reason(name) or self._stopped_reason(started)))
            else:
                self._became_ready.append(name)
        if self.events.empty():
            self._dispatch()
            self.backend.caught_up()

    def _drain_ready(self) -> Iterator[TaskResult]:
        while self._ready:
            yield self._ready.popleft()

    def _wait_out(self, deadline: float) -> None:
        """After a stop with nobody reading: process events until running tasks have ended (or deadline)."""
        while self.left and time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except _queue.Empty:
                continue
            if type(event) in (EngineDone, EngineError):
                break
            if type(event) is Resubmit:
                self._resubmit(event.names)
            elif hasattr(event, "name"):
                self._handle(event)
        if self.left:
            self._abandon(self.stop_reason or "stopped")
        self._ready.clear()

    def _handle(self, event) -> None:
        name = event.name
        if name not in self.graph:
            return
        st = self.state[name]
        if st.final is not None:
            return  # a late event for a finished task (distributed delivers events and results separately)
        kind = type(event)
        if kind is Started:
            self._report_running(name, st, event.attempt)
        elif kind is Retrying:
            self._report_running(name, st, event.attempt)
            if st.retrying < event.attempt:
                st.retrying = event.attempt
                self.progress(self.graph[name], TaskStatus.RETRYING)
        elif kind is Finished:
            result = event.result
            if not isinstance(result, TaskResult):
                result = TaskResult(name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                                    error=f"task returned {type(result).__name__}, not a TaskResult")
            if result.reason == "cancelled":
                result.reason = self._upstream_reason(name) or self._stopped_reason(result.attempts > 0)
            # Reports that never arrived (or arrive after the result) are told now, in order.
            for a in result.attempt_log:
                self._report_running(name, st, a.number)
                if a.failure is not None and a.number < len(result.attempt_log) and st.retrying < a.number:
                    st.retrying = a.number
                    self.progress(self.graph[name], TaskStatus.RETRYING)
            self._final(result)

    def _upstream_reason(self, name: str) -> str | None:
        """Why ``name`` cannot run because of a dependency, as the wrapper would have said it."""
        state = self.state
        return upstream_reason(state[d].final for d in self.graph[name].deps) or self._doomed.get(name)

    def _stopped_reason(self, started: bool) -> str:
        """Why a task the run stopped did not finish, saying whether it had started."""
        if self.interrupted:
            return "interrupted while running" if started else "not started: interrupted"
        why = self.stop_reason or "cancelled by Dask"
        return f"terminated while running: {why}" if started else f"not started: {why}"

    def _report_running(self, name: str, st: RunState, attempt: int) -> None:
        while st.running < attempt:
            st.running += 1
            self.progress(self.graph[name], TaskStatus.RUNNING)

    def _final(self, result: TaskResult) -> None:
        st = self.state[result.name]
        st.final = result
        self.left -= 1
        if result.status is TaskStatus.FAILED and self.fail_fast and self.stop_reason is None:
            # before anyone hears of the failure (a progress callback): from now on nothing starts
            self.cancel.set()
        if self.on_final is not None:
            try:
                self.on_final(result)
            except Exception as e:   # the journal cannot be written (disk full, ...): stop the run for it
                self.on_final = None
                self.fatal = e
                self.stop(f"the checkpoint cannot be written: {e}")
        self.progress(self.graph[result.name], result.status)
        self._ready.append(result)
        self.backend.task_final(result)
        if result.status is TaskStatus.FAILED and self.fail_fast and self.stop_reason is None:
            self.stop(f"fail_fast: task {result.name!r} failed")
        waiting = self._waiting
        if waiting is not None:
            for dependent in self.graph.dependents().get(result.name, ()):
                left = waiting.get(dependent)
                if left is not None:
                    if left == 1:
                        del waiting[dependent]
                        self._became_ready.append(dependent)
                    else:
                        waiting[dependent] = left - 1

    # -- stopping -----------------------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Launch nothing more; running tasks are terminated (their processes get SIGTERM, then SIGKILL)."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.cancel.set()
        # Tasks downstream of a failure will be skipped for it, even if their dependency has not said so yet.
        for n in self.graph.topological_order():
            if self.state[n].final is None:
                why = self._upstream_reason(n) or next(
                    (f"upstream {d!r} was skipped" for d in self.graph[n].deps if d in self._doomed), None)
                if why:
                    self._doomed[n] = why
        not_running = [n for n in self.graph.topological_order()
                       if self.state[n].final is None and self.state[n].running == 0]
        for name in self.backend.cancel(not_running):  # these will never run: say why, in graph order
            if self.state[name].final is None:
                self._final(TaskResult(name, TaskStatus.SKIPPED,
                                       reason=self._upstream_reason(name) or self._stopped_reason(False)))

    def _abandon(self, why: str) -> None:
        """Give every task that has not reported a final outcome one now."""
        now = time.time()
        for name in self.graph.topological_order():
            st = self.state[name]
            if st.final is None:
                if st.running:
                    reason = "interrupted while running" if self.interrupted else f"stopped while running: {why}"
                    result = TaskResult(name, TaskStatus.SKIPPED, end=now, attempts=st.running, reason=reason,
                                        attempt_log=[Attempt(st.running, now, now, FailureKind.CANCELLED.value)])
                else:
                    unknown = f"no outcome: {why} (it was on the cluster, and may have been running)"
                    result = TaskResult(name, TaskStatus.SKIPPED, reason=self._upstream_reason(name) or (
                        unknown if self.backend.may_have_started(name) else f"not started: {why}"))
                self._final(result)


def _killed_by_us(result, killed: set[str]) -> None:
    """A command killed by a signal after a second interrupt (the caller SIGKILLs the run's task processes)
    was interrupted while running, as a task the runtime terminates is: say so (and a dependent that
    heard it "failed" first heard of a skipped task)."""
    if not isinstance(result, TaskResult):
        return
    if result.status is TaskStatus.FAILED and result.failure == FailureKind.SIGNAL.value:
        killed.add(result.name)
        result.status, result.reason = TaskStatus.SKIPPED, "cancelled"
        result.failure = FailureKind.CANCELLED.value
        result.error = f"killed by molexp after a second interrupt: {result.command}"
        if result.attempt_log:
            last = result.attempt_log[-1]
            last.failure, last.error = result.failure, result.error
    elif result.status is TaskStatus.SKIPPED and result.reason and result.reason.startswith("upstream '"):
        dep = result.reason[len("upstream '"):].rsplit("' failed", 1)[0]
        if result.reason == f"upstream {dep!r} failed" and dep in killed:
            result.reason = f"upstream {dep!r} was skipped"
