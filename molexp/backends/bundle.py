"""What a worker runs for a bundle: several short, ready tasks as one Dask task (see ``bundling``).

Each member runs as it would alone (``runtime.run_task``: its retries, timeout, memory limit, condition, logs
and events) and its final result is sent to the driver as an event the moment it is known, in order after
its start, so the driver records it while the bundle goes on. Only a result too big to travel as an event
(a large Python value) waits for the bundle's own return value.

A bundle runs at most once. Dask computes a task again when the worker running it dies; the members that
finished there are already recorded, so the new copy must not run them again. It therefore claims the
bundle first (a ``distributed.Event`` per bundle, set by the first runner): a copy that finds it claimed
runs nothing and returns ``Rerun``, and the driver submits again the members that have no final result
(``spec.Resubmit``).
"""

from __future__ import annotations

import cloudpickle

from ..run.runtime import load_context, run_task
from .remote import packed, unpacked

# A member's result (pickled) up to this size travels as an event through the scheduler; a larger one comes
# back with the bundle's return value (events are kept in the scheduler's log, up to 1,000 per topic).
STREAM_MAX = 32 * 1024


class Rerun:
    """The return value of a copy of a bundle that had already been claimed: nothing was run."""

    __slots__ = ()


class Unloadable:
    """The return value of a bundle this worker could not load (a function it cannot import): nothing was
    run; the driver sends the members again one by one, so each says for itself whether it can load."""

    __slots__ = ()


class BundleDone:
    """A bundle's return value: the results not sent as events (too large), with their values packed."""

    __slots__ = ("kept",)

    def __init__(self, kept: list):
        self.kept = kept


def run_bundle(claim: str, members_blob: bytes, ctx_blob: bytes) -> BundleDone | Rerun | Unloadable:
    """Run the members of one bundle one after the other (``members_blob``: cloudpickle of a list of
    ``(name, task spec, upstream results)``, pickled together so that what they share, a function, travels
    once), each result sent as an event as soon as it is final."""
    if not _claim(claim):
        return Rerun()
    try:
        ctx = load_context(ctx_blob)
        members = cloudpickle.loads(members_blob)
    except Exception:   # each member, sent again alone, says why it cannot load
        return Unloadable()
    sink = ctx.sink
    kept = []
    for name, spec, upstream in members:
        result = packed(run_task(spec, ctx, *map(unpacked, upstream)))
        blob = cloudpickle.dumps(result)
        if len(blob) <= STREAM_MAX:
            sink.finished(blob)
        else:
            kept.append(result)
    sink.flush()   # before the bundle's end reaches the scheduler: the driver hears of the members first
    return BundleDone(kept)


def _claim(name: str) -> bool:
    """True for the first runner of a bundle (see the module docstring)."""
    from distributed import Event

    event = Event(name)
    if event.is_set():
        return False
    event.set()
    return True
