"""Task durations remembered from one run to the next, and the order they give ready tasks.

Counting tasks on a chain cannot tell a 5-minute task from a 5-second one; the seconds can. Every run records
how long each of its completed tasks took in ``<workdir>/.molexp/<experiment>/durations.json``; a later run
of the same experiment then ranks each task by the seconds on its longest chain to the end of the graph (a
task it has no record of counts as the median recorded task). Without records, tasks count 1 each: the
critical path in tasks. ``run/order.py`` turns these lengths into the order of ready tasks.

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
    number = (float, int)   # JSON keys are strings; type() leaves bools out
    return {k: float(v) for k, v in data.items() if type(v) in number and v >= 0}


def save(path: str, known: Mapping[str, float], results: Iterable[TaskResult | None]) -> None:
    """Record the durations of this run's completed tasks (their last attempt) over ``known``. A record
    within 20 % (or 10 ms) of the known one is kept as it was, so that a run whose tasks took about as long
    as last time rewrites nothing (a 100,000-task file is ~3 MB)."""
    updated = dict(known)
    changed = False
    completed = TaskStatus.COMPLETED
    for r in results:
        if r is not None and r.status is completed and r.attempt_log:
            last = r.attempt_log[-1]
            seconds = last.end - last.start
            before = updated.get(r.name)
            if before is None or abs(seconds - before) > max(0.01, 0.2 * before):
                updated[r.name] = round(max(0.0, seconds), 6)
                changed = True
    if not changed:
        return
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # two runs at once each write their own
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        text = json.dumps(updated, separators=(",", ":"))   # one C call (json.dump writes piece by piece)
        with open(tmp, "w") as f:
            f.write(text)
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
    recorded = [known[n] for n in order if n in known] if known else None
    if recorded:
        typical = statistics.median(recorded)
        cost = {n: known.get(n, typical) for n in order}
    else:
        cost = dict.fromkeys(order, 1)
    length: dict[str, float | int] = {}
    get = length.__getitem__
    for n in reversed(order):
        after = dependents[n]
        length[n] = cost[n] + max(map(get, after)) if after else cost[n]
    return length

