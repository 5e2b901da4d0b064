"""The adaptive executor's policy: memory readings in, a recommendation out. Pure, so it is tested with
fake readings; the machinery that applies it (distributed's ``Adaptive``, the submission throttle) is in
``executors/adaptive.py``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """One recommendation: when, the memory reading (a fraction: of the machine's memory, or of the fullest
    worker's memory limit), the worker count seen, what Dask's own adaptive logic wanted (with each task of a
    bundle, and each task held for a probe, counted as its own task: see ``members_target``), the target chosen,
    the action it means, and where the reading came from (``"machine"`` or ``"worker <name>"``)."""

    time: float
    memory: float
    workers: int
    wanted: int
    target: int
    action: str   # "scale-up", "scale-down", "hold" (workers), or "throttle"/"release" (submissions)
    source: str = "machine"

    def __str__(self) -> str:
        return (f"{time.strftime('%H:%M:%S', time.localtime(self.time))}  memory {self.memory:6.1%} "
                f"({self.source})  workers {self.workers:3d}  wanted {self.wanted:3d}  target {self.target:3d}  "
                f"{self.action}")


class MemoryPolicy:
    """Temper a worker target by memory pressure.

    While memory is at or above ``threshold`` the target never grows and drops by one worker per decision
    (never below ``minimum``); below it, the target is Dask's own wish, clamped to ``[minimum, maximum]``.
    The submission throttle allows one task in flight while above the threshold; below it, one more at
    each reading.
    """

    def __init__(self, threshold: float, minimum: int, maximum: int):
        self.threshold, self.minimum, self.maximum = threshold, minimum, maximum

    def target(self, memory: float, workers: int, wanted: int, now: float | None = None) -> Decision:
        """The worker target for this reading."""
        now = time.time() if now is None else now
        if memory >= self.threshold:
            target = max(self.minimum, min(workers, wanted, self.maximum) - 1 if workers else self.minimum)
        else:
            target = max(self.minimum, min(self.maximum, wanted))
        action = "scale-up" if target > workers else "scale-down" if target < workers else "hold"
        return Decision(now, memory, workers, wanted, target, action)

    def in_flight(self, memory: float, running: int, allowed: int, now: float | None = None
                  ) -> tuple[int, Decision]:
        """How many tasks may be in flight now, given the previous bound ``allowed``: one while memory is at
        or above the threshold; below it, one more than before (a slow start, so a burst of submissions
        cannot overshoot the threshold before the first readings show it)."""
        now = time.time() if now is None else now
        if memory >= self.threshold:
            return 1, Decision(now, memory, running, allowed, 1, "throttle")
        return allowed + 1, Decision(now, memory, running, allowed, allowed + 1, "release")


def members_target(durations, target_duration: float, threads_per_worker: float) -> int:
    """Workers for molexp's tasks in flight, counted one by one as Dask's ``Scheduler.adaptive_target`` counts
    its tasks (CPU part): their expected seconds (``durations``, one per task) over ``target_duration``, at
    most one thread per task, in workers of ``threads_per_worker`` threads. Dask itself counts a bundle as
    one task and does not see the tasks held back while their family is probed; this counts each of them."""
    durations = list(durations)
    if not durations:
        return 0
    cpu = min(len(durations), math.ceil(sum(durations) / target_duration))
    return max(1, math.ceil(cpu / max(threads_per_worker, 1)))
