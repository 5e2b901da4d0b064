"""Which ready tasks go to a cluster together, as one Dask task (a bundle: see ``bundle``).

Every Dask task costs the scheduler a few milliseconds; a task of a millisecond then waits for the scheduler,
not for its work. Ready tasks expected to be short therefore travel in bundles of about ``bundle_seconds`` of
work, each one Dask task that runs its members one after the other on a worker. What a task is expected to
take: its own duration recorded by an earlier run of the experiment, else what this run has measured of its
family (tasks running the same command template or the same function), else nothing yet. A family with
nothing measured is probed: as many of its tasks as the cluster has threads run alone, and the others wait
(off the scheduler) until one of those finishes, or until one has run for ``bundle_seconds`` (the family is
then not short: everything goes alone). Tasks with declared Dask resources, tasks expected to be long, and tasks
whose user priority differs from the bundle's go alone or in another bundle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

ALONE, SHORT, HOLD = 0, 1, 2

# At most this many members in one bundle (a bigger one is a bigger message to the scheduler and worker)
MAX_MEMBERS = 1000

# Of the ready short tasks, each bundle takes at most 1/(PER_THREAD x threads), so that the cluster's threads
# share them out evenly even when the time budget would allow one big bundle.
PER_THREAD = 2


def family(spec) -> tuple:
    """What tasks count as the same kind of work: the same command templates (before ``$var`` is filled), or
    the same function run the same way."""
    if spec.kind == "shell":
        return ("shell", tuple(spec.task.commands))
    func = spec.func
    return ("python", getattr(func, "__module__", None), getattr(func, "__qualname__", None) or repr(func),
            spec.isolated)


class Bundler:
    """Decides, for each ready task, whether it goes alone, into a bundle, or waits for a probe of its family.

    ``seconds``: the time budget of a bundle (0: no bundles). ``known``: task name -> seconds recorded by an
    earlier run. ``alone``: names that must go alone (Dask resources).
    """

    def __init__(self, specs: Mapping, known: Mapping[str, float] | None, seconds: float, alone=()):
        self.seconds = seconds
        self.short = seconds / 4   # a task expected to take at most this is bundled
        self._specs = specs
        self._known = dict(known or {})
        self._alone = set(alone)
        self._families: dict[str, tuple] = {}
        self._measured: dict[tuple, list] = {}   # family -> [count, total seconds] measured in this run
        self._recorded: dict[tuple, float] | None = None   # family -> mean of the earlier run's records
        self._probes: dict[tuple, list] = {}     # family -> [probes in flight, when one was first seen running]
        self._held: dict[tuple, list] = {}       # family -> ready entries waiting for a probe
        self._long: set[tuple] = set()           # families found not short by a slow probe

    def enabled(self) -> bool:
        return self.seconds > 0

    def go_alone(self, name: str) -> None:
        """``name`` goes alone from now on (it was running in a bundle whose worker was lost)."""
        self._alone.add(name)

    def _family(self, name: str) -> tuple:
        f = self._families.get(name)
        if f is None:
            f = self._families[name] = family(self._specs[name])
        return f

    def expected(self, name: str) -> float | None:
        """Seconds ``name`` is expected to take, or None when nothing is known yet."""
        known = self._known.get(name)
        if known is not None:
            return known
        f = self._family(name)
        if f in self._long:
            return math.inf
        measured = self._measured.get(f)
        if measured:
            return measured[1] / measured[0]
        if self._recorded is None:
            self._recorded = self._family_records()
        return self._recorded.get(f)

    def _family_records(self) -> dict[tuple, float]:
        sums: dict[tuple, list] = {}
        for name, seconds in self._known.items():
            if name in self._specs:
                s = sums.setdefault(self._family(name), [0, 0.0])
                s[0] += 1
                s[1] += seconds
        return {f: total / n for f, (n, total) in sums.items()}

    def route(self, name: str, threads: int) -> int:
        """``ALONE``, ``SHORT`` (bundle it) or ``HOLD`` (wait for the probe of its family)."""
        if name in self._alone:
            return ALONE
        expected = self.expected(name)
        if expected is not None:
            return SHORT if expected <= self.short else ALONE
        f = self._family(name)
        probes = self._probes.get(f)
        if probes is None:
            probes = self._probes[f] = [set(), None]
        if len(probes[0]) < threads:
            probes[0].add(name)
            return ALONE
        return HOLD

    def hold(self, f_entry) -> None:
        """Keep a ready entry (rank, name, upstream) until its family is known."""
        self._held.setdefault(self._family(f_entry[1]), []).append(f_entry)

    def observe(self, result) -> list:
        """A task's final result: learn its family's duration from its last attempt; returns the held entries
        this releases (routed again: a probe that ended without running, e.g. a function the worker could
        not load, taught nothing, and others of its family become the probes)."""
        if result.name not in self._specs:
            return []
        f = self._family(result.name)
        probes = self._probes.get(f)
        if probes is not None:
            probes[0].discard(result.name)
        log = result.attempt_log
        if log:
            seconds = max(0.0, log[-1].end - log[-1].start)
            measured = self._measured.get(f)
            if measured is None:
                self._measured[f] = [1, seconds]
            else:
                measured[0] += 1
                measured[1] += seconds
        elif probes is None or probes[0]:
            return []   # other probes are still out
        return self._held.pop(f, [])

    def expire(self, running) -> list:
        """Families whose probe has run longer than a bundle's budget without a result are not short: their
        held entries are released (they go alone). ``running``: names reported running (a probe waiting for a
        worker, e.g. on a cluster that is starting, is not slow)."""
        if not self._held:
            return []
        now = time.monotonic()
        released = []
        for f in list(self._held):
            probes = self._probes.get(f)
            if probes is None or f in self._measured:
                continue
            if probes[1] is None:
                if any(n in running for n in probes[0]):
                    probes[1] = now
            elif now - probes[1] > self.seconds:
                self._long.add(f)
                released += self._held.pop(f)
        return released

    def held_names(self) -> list[str]:
        """The names held for a probe (safe to call from another thread: it reads copies)."""
        return [e[1] for entries in list(self._held.values()) for e in list(entries)]

    def clear(self) -> None:
        """The run stops: forget what was held."""
        self._held.clear()

    def bundle_size(self, expected: float, ready: int, threads: int) -> int:
        """How many members a bundle of tasks expected to take ``expected`` seconds each should have, with
        ``ready`` tasks ready and ``threads`` threads on the cluster (at least 1)."""
        by_time = self.seconds / expected if expected > 0 else MAX_MEMBERS
        share = math.ceil(ready / (PER_THREAD * max(1, threads)))
        return max(1, int(min(by_time, share, MAX_MEMBERS)))

    def priority(self, name: str):
        """The user's priority of ``name`` (members of one bundle share it)."""
        return self._specs[name].task.priority
