"""Task durations remembered from one run to the next, for ``priority_scheduling=True``.

Counting tasks on a chain cannot tell a 5-minute task from a 5-second one; the seconds can. A run with
priority scheduling records how long each of its completed tasks took in
``<workdir>/.molexp/<experiment>/durations.json``; a later run of the same experiment then ranks each task
by the seconds on its longest chain to the end of the graph (a task it has no record of counts as the median
recorded task). Without records, tasks count 1 each: the critical path in tasks.

The file is a hint, never an input that can break a run: a missing, unreadable or malformed file means
"no records", and a failed write is logged and ignored.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
from collections.abc import Iterable, Mapping

from .result import TaskResult, TaskStatus

log = logging.getLogger("molexp")

FILENAME = "durations.json"


def load(path: str) -> dict[str, float]:
    """The recorded durations (task name -> seconds); empty when there are none or the file is unusable."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0}


def save(path: str, known: Mapping[str, float], results: Iterable[TaskResult | None]) -> None:
    """Record the durations of this run's completed tasks (their last attempt) over ``known``."""
    updated = dict(known)
    for r in results:
        if r is not None and r.status is TaskStatus.COMPLETED and r.attempt_log:
            last = r.attempt_log[-1]
            updated[r.name] = round(max(0.0, last.end - last.start), 6)
    if updated == known:
        return
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # two runs at once each write their own
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(updated, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("molexp: could not record task durations in %s: %s", path, e)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def critical_path(order: list[str], dependents: Mapping[str, Iterable[str]],
                  known: Mapping[str, float]) -> dict[str, float | int]:
    """name -> the length of the longest chain from it to the end of the graph (itself included): in
    recorded seconds when any task of ``order`` has a record (others count as the median record), else in
    tasks."""
    recorded = [known[n] for n in order if n in known]
    if recorded:
        typical = statistics.median(recorded)
        cost = {n: known.get(n, typical) for n in order}
    else:
        cost = dict.fromkeys(order, 1)
    length: dict[str, float | int] = {}
    for n in reversed(order):
        length[n] = cost[n] + max((length[m] for m in dependents[n]), default=0)
    return length
