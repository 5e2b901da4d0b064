"""The outcome side of ``DistributedBackend``: a collector thread turns finished Dask futures (single tasks and
bundles) into driver events, and bundle members' results sent as events are taken in."""

from __future__ import annotations

import threading
import time

import cloudpickle

from ..run.spec import ClusterLost, EngineError, Finished, Resubmit
from ..state.result import FailureKind, TaskResult, TaskStatus
from .bundle import BundleDone, Unloadable
from .remote import unpacked

# While more tasks are in flight than the cluster has threads, the collector waits this long after a future
# finishes before fetching results, so one ``gather`` fetches what finished meanwhile: short tasks otherwise
# cost one request to the worker per 1-2 results (measured: 640 gathers for 1,000 `true` tasks), which
# competes with the tasks for the worker's CPU. The workers are busy with the other tasks in flight meanwhile,
# so what the results make ready starts no later than a thread is free; with fewer in flight, at once.
_GATHER_WAIT = 0.05

# How long the collector waits for the scheduler to forget the keys of results that are in (see ``_forget``);
# it takes one message on the client's batched stream, typically a few milliseconds.
_FORGET_WAIT = 2.0


class Collector:
    """Part of ``DistributedBackend`` (its outcomes); uses the backend's client, futures and bookkeeping."""

    def _member_finished(self, blob: bytes, events) -> None:
        result = cloudpickle.loads(blob)
        name = result.name
        self._started_names.discard(name)
        if self._needed_by.get(name):
            self._sent[name] = result
        events.put(Finished(unpacked(result)))

    def _collect(self, ac, queue) -> None:
        """A thread that turns finished futures into driver events. Futures are taken in batches and their
        results fetched with one ``gather`` per batch (not one request per future)."""
        key_to_name = self._key_to_name

        def collect():
            try:
                while not self._stop.is_set():
                    if ac.is_empty():
                        self._more.wait(0.05)
                        self._more.clear()
                        continue
                    try:
                        batch = ac.next_batch(block=True)
                    except StopIteration:
                        continue
                    if ac.count() > self._threads:
                        # More will finish: let them, and fetch them with this batch (see _GATHER_WAIT).
                        self._stop.wait(_GATHER_WAIT)
                        batch += ac.next_batch(block=False)
                    if self._report(batch, queue, key_to_name, ac):
                        break
            except BaseException as e:
                if self._connection_lost():  # e.g. a gather cut short by the scheduler's death
                    queue.put(ClusterLost(self._lost_message()))
                else:
                    queue.put(EngineError(e))

        self._collector = threading.Thread(target=collect, name="molexp-collector", daemon=True)
        self._collector.start()

    def _report(self, batch, queue, key_to_name, ac) -> bool:
        """Queue the outcome of each future of ``batch``; True when the scheduler is gone. A future whose
        result was lost with its worker after it finished is being computed again: ``ac`` watches it anew."""
        finished = [f for f in batch if f.status == "finished"]
        others = [f for f in batch if f.status != "finished"]   # (a released future says "cancelled")
        values = self.client.gather(finished, errors="skip") if finished else []
        if len(values) != len(finished):  # a result vanished between completion and gather (lost worker)
            values = [self.client.gather(f, errors="raise") if f.status == "finished" else None for f in finished]
            others += [f for f, v in zip(finished, values) if v is None]   # being computed again: watched
            finished, values = [f for f, v in zip(finished, values) if v is not None], [v for v in values if v]
        if finished:
            self._forget(finished)
        for future, value in zip(finished, values):
            if future.key in self._bundles:
                self._bundle_over(future.key, value, queue)
                continue
            name = key_to_name[future.key]
            if self._needed_by.get(name):
                self._sent[name] = value   # dependents get it as it came (the value still pickled)
            queue.put(Finished(unpacked(value)))
        for future in others:
            if future.status in ("lost", "pending"):
                ac.add(future)
                continue
            names = self._names(future.key)
            if (future.status == "cancelled" and not any(n in self._cancelled for n in names)
                    and self._connection_lost()):
                # distributed cancels every future when the scheduler connection drops
                queue.put(ClusterLost(self._lost_message()))
                return True
            try:
                error = future.exception(timeout=10) if future.status == "error" else None
            except Exception as e:  # cancelled meanwhile, or the cluster is going
                error = e
            for name in names:   # (the members of a bundle already final are ignored by the driver)
                queue.put(Finished(_crash_result(name, future.status, error, key_to_name, len(names))))
            self._bundles.pop(future.key, None)
        return False

    def _names(self, key: str):
        """The tasks a Dask key runs: one, or a bundle's members."""
        members = self._bundles.get(key)
        return members if members is not None else (self._key_to_name[key],)

    def _bundle_over(self, key: str, value, queue) -> None:
        """A bundle's outcome: its members' results that were too big to come as events; or, for a copy that
        Dask ran again after its worker was lost (``Rerun``), its members to submit again (those already
        final are ignored by the driver). Members that had started there go alone from now on: one of them
        may be what killed the worker. A bundle the worker could not load (``Unloadable``) ran nothing: its
        members go again alone, each to say for itself whether it loads."""
        members = self._bundles.pop(key)
        if isinstance(value, BundleDone):
            for result in value.kept:
                if self._needed_by.get(result.name):
                    self._sent[result.name] = result
                queue.put(Finished(unpacked(result)))
            return
        for name in members:
            if isinstance(value, Unloadable) or name in self._started_names:
                self._bundler.go_alone(name)
        queue.put(Resubmit(tuple(members)))

    def _forget(self, futures) -> None:
        """Release the futures of results that are in, and wait (briefly) until the scheduler has forgotten
        their keys, before the driver hears of them (and journals them): a worker that dies afterwards takes
        nothing with it that Dask would compute again. The release travels on the client's batched stream;
        ``who_has`` asks on another connection, hence the wait."""
        for f in futures:
            for name in self._names(f.key):
                self._futures.pop(name, None)
        keys = [f.key for f in futures]

        async def release():
            for f in futures:
                f.release()

        self.client.sync(release)
        deadline = time.monotonic() + _FORGET_WAIT
        while True:
            try:
                held = self.client.who_has(keys)
            except Exception:   # the scheduler is going: nothing will be computed again
                return
            if not any(held.get(k) for k in keys) or time.monotonic() > deadline:
                return
            time.sleep(0.002)

    def _connection_lost(self, wait: float = 3.0) -> bool:
        """True when the client has lost its scheduler (it may take a moment to notice)."""
        deadline = time.monotonic() + wait
        while self.client.status == "running":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _lost_message(self) -> str:
        address = getattr(getattr(self.client, "scheduler", None), "address", "?")
        return (f"lost the connection to the Dask scheduler at {address} (client status: {self.client.status}); "
                "tasks recorded in the checkpoint are kept: resume on a new cluster to finish the run")


def _crash_result(name: str, status: str, value, key_to_name, bundled: int = 1) -> TaskResult:
    """A TaskResult for a future that did not finish: cancelled, or erred in Dask (a lost worker)."""
    from concurrent.futures import CancelledError

    if status == "cancelled" or isinstance(value, CancelledError):
        return TaskResult(name, TaskStatus.SKIPPED, reason="cancelled")
    exc = value[1] if isinstance(value, tuple) and len(value) == 3 else value
    culprit = getattr(exc, "task", None)
    if type(exc).__name__ == "KilledWorker":
        culprit_name = key_to_name.get(culprit, culprit)
        if bundled > 1:
            return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.LOST_WORKER.value,
                              error=f"task {name!r} was in a bundle of {bundled} tasks (one Dask task) whose workers "
                                    f"died, {exc}")
        if culprit_name != name:
            return TaskResult(name, TaskStatus.SKIPPED, reason=f"upstream {culprit_name!r} failed (lost worker)")
        return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.LOST_WORKER.value,
                          error=f"task {name!r} was running on workers that died, {exc}; it may be killing them "
                                "(memory?), or the workers were lost")
    return TaskResult(name, TaskStatus.FAILED, failure=FailureKind.ERROR.value,
                      error=f"Dask could not run task {name!r}: {type(exc).__name__}: {exc}")
