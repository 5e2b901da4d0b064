"""What a run tells you: ``TaskStatus``, ``TaskResult`` for one task, ``Results`` for the run."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_bytes


class TaskStatus(str, enum.Enum):
    """Where a task stands. A ``str`` enum: ``TaskStatus.COMPLETED == "completed"``.

    ``completed``, ``failed``, ``skipped`` and ``cached`` (reused from a checkpoint) are final;
    ``pending``, ``running`` and ``retrying`` are transitions reported to progress callbacks.
    """

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """True for completed, failed, skipped and cached."""
        return self in _FINAL

    @property
    def ok(self) -> bool:
        """True when the task's outputs are there: completed or cached."""
        return self is TaskStatus.COMPLETED or self is TaskStatus.CACHED


_FINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CACHED})


class FailureKind(str, enum.Enum):
    """Why a task failed. Retries apply to all of them but ``error`` (a mistake in the task's definition)."""

    EXIT = "exit"                  # a command exited non-zero
    SIGNAL = "signal"              # a command was killed by a signal it did not get from molexp
    TIMEOUT = "timeout"            # the task ran past its timeout and was terminated
    MEMORY = "memory_limit"        # the task's process tree went over its memory limit
    EXCEPTION = "exception"        # a Python task raised
    MISSING_OUTPUT = "missing_output"  # it succeeded but did not write a declared output
    LOST_WORKER = "lost_worker"    # the Dask worker running it died, again and again
    CANCELLED = "cancelled"        # terminated by molexp (fail_fast, Ctrl-C)
    ERROR = "error"                # the task could not start: bad template, missing program, bad condition

    def __str__(self) -> str:
        return self.value


@dataclass
class Attempt:
    """One try at running a task: when, how long, and how it ended (``failure`` is None on success)."""

    number: int
    start: float
    end: float
    failure: str | None = None
    error: str | None = None

    @property
    def duration(self) -> float:
        """Seconds this attempt took."""
        return self.end - self.start


@dataclass
class TaskResult:
    """The outcome of one task.

    ``value`` is a Python task's return value; ``returncodes`` one entry per shell command that ran;
    ``stdout``/``stderr`` are the last lines of the output, the whole of it is in ``stdout_path`` and
    ``stderr_path`` (None when the stream was empty, or its file not kept: ``keep_logs="failed"``).
    ``start``/``end`` are epoch seconds. ``failure`` (a ``FailureKind`` value) and
    ``error`` (text, with the remote traceback for Python tasks) explain a failure; ``reason`` explains a skip.
    ``peak_memory`` (bytes, the largest resident set of the task's processes) and ``cpu_time`` (seconds, user +
    system of its child processes) size resource requests. In a checkpointed run, ``inputs`` and ``outputs``
    map each declared file (absolute path) to the content hash it was read or written with, and ``reason``
    also says why a task ran or was reused on resume (``input data/A.fastq changed``, ``up to date``).
    """

    name: str
    status: TaskStatus
    value: Any = None
    returncodes: list[int] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    stdout_path: str | None = None
    stderr_path: str | None = None
    start: float | None = None
    end: float | None = None
    attempts: int = 0
    attempt_log: list[Attempt] = field(default_factory=list)
    worker: str | None = None
    failure: str | None = None
    error: str | None = None
    reason: str | None = None
    command: str | None = None
    peak_memory: int | None = None
    cpu_time: float | None = None
    inputs: dict[str, str] | None = None
    outputs: dict[str, str] | None = None
    # (on the way from a worker to the driver: the stat signatures of the outputs it hashed; never recorded)
    file_stats: dict | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None if the task never started."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def ok(self) -> bool:
        """True when the task completed (or was reused from a checkpoint)."""
        return self.status.ok

    def to_record(self) -> dict:
        """A JSON-friendly dict of everything but ``value``."""
        record = {f: getattr(self, f) for f in _RECORD_FIELDS}
        record["status"] = self.status.value
        record["returncodes"] = list(self.returncodes)
        record["attempt_log"] = [a.__dict__.copy() for a in self.attempt_log]
        record["duration"] = self.duration
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], value: Any = None) -> TaskResult:
        """Rebuild a result from ``to_record()`` output."""
        data = {k: v for k, v in record.items() if k in _RESULT_FIELDS}
        data["status"] = TaskStatus(data["status"])
        if "attempt_log" in data:
            data["attempt_log"] = [Attempt(**a) for a in data["attempt_log"]]
        elif data.get("attempts") == 1:  # a compact record leaves out a single attempt that is the result's own
            data["attempt_log"] = [Attempt(1, data.get("start"), data.get("end"), data.get("failure"),
                                           data.get("error"))]
        return cls(value=value, **data)


_RESULT_FIELDS = frozenset(TaskResult.__dataclass_fields__) - {"value", "file_stats"}
_RECORD_FIELDS = tuple(f for f in TaskResult.__dataclass_fields__ if f not in ("value", "file_stats"))


class Results(Mapping):
    """Mapping of task name -> ``TaskResult`` for one run, in the graph's order, with a summary.

    ``ok`` is True when every task completed or was cached; ``failed``/``skipped`` list names;
    ``summary()`` counts by status; ``wall_time`` is the run's elapsed seconds.
    """

    def __init__(self, results: Mapping[str, TaskResult], *, wall_time: float = 0.0, interrupted: bool = False):
        self._results = dict(results)
        self.wall_time = wall_time
        self.interrupted = interrupted

    def __getitem__(self, name: str) -> TaskResult:
        return self._results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def _names(self, status: TaskStatus) -> list[str]:
        return [n for n, r in self._results.items() if r.status is status]

    @property
    def ok(self) -> bool:
        """True when every task completed or was reused from a checkpoint."""
        return all(r.status.ok for r in self._results.values())

    @property
    def failed(self) -> list[str]:
        """Names of failed tasks."""
        return self._names(TaskStatus.FAILED)

    @property
    def skipped(self) -> list[str]:
        """Names of skipped tasks."""
        return self._names(TaskStatus.SKIPPED)

    def summary(self) -> dict[str, Any]:
        """Counts by final status, the failed tasks' names and the wall time in seconds."""
        counts = {s.value: 0 for s in (TaskStatus.COMPLETED, TaskStatus.CACHED, TaskStatus.FAILED,
                                        TaskStatus.SKIPPED)}
        for r in self._results.values():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return {"total": len(self._results), **counts, "failed_tasks": self.failed,
                "wall_time": round(self.wall_time, 3)}

    def table(self, *, resources: bool = False) -> str:
        """A plain-text table: one row per task with status, attempts, duration and what went wrong; with
        ``resources=True`` also peak memory and CPU time (what to ask a batch system for)."""
        head = ["task", "status", "tries", "time"] + (["peak mem", "cpu"] if resources else [])
        rows = [head + ["detail"]]
        for r in self._results.values():
            row = [r.name, r.status.value, str(r.attempts or ""), "" if r.duration is None else f"{r.duration:.2f}s"]
            if resources:
                row += ["" if r.peak_memory is None else format_bytes(r.peak_memory),
                        "" if r.cpu_time is None else f"{r.cpu_time:.2f}s"]
            row.append(_detail(r))
            rows.append(row)
        n = len(head)
        widths = [max(len(row[i]) for row in rows) for i in range(n)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row[:n], widths)) + "  " + row[n] for row in rows]
        s = self.summary()
        lines.append(f"{s['completed']} completed, {s['cached']} cached, {s['failed']} failed, "
                     f"{s['skipped']} skipped in {self.wall_time:.2f}s")
        return "\n".join(line.rstrip() for line in lines)

    def to_records(self) -> list[dict]:
        """One plain dict per task (every ``TaskResult`` field, ``value`` included, plus ``duration``), for
        analysis: ``pandas.DataFrame(results.to_records())``, JSON, CSV."""
        records = []
        for r in self._results.values():
            record = r.to_record()
            record["value"] = r.value
            records.append(record)
        return records

    def to_dict(self) -> dict[str, Any]:
        """The run as plain JSON-ready data: ``{"summary": summary(), "tasks": {name: record}}``, each record
        as in ``to_records()``; a Python task's value is kept when it is JSON data (numbers, strings, lists,
        dicts with string keys), else given as its ``repr``. ``json.dumps(results.to_dict())`` works."""
        tasks = {}
        for r in self._results.values():
            record = r.to_record()
            record["value"] = _plain(r.value)
            tasks[r.name] = record
        return {"summary": self.summary(), "tasks": tasks}

    def to_dataframe(self):
        """The results as a ``pandas.DataFrame`` indexed by task name (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Results.to_dataframe() needs pandas: pip install pandas "
                              "(or use Results.to_records())") from None
        return pd.DataFrame(self.to_records()).set_index("name")

    def _repr_html_(self) -> str:
        from ..views.html import table

        rows = [[r.name, r.status.value, str(r.attempts or ""),
                 "" if r.duration is None else f"{r.duration:.2f}s",
                 "" if r.peak_memory is None else format_bytes(r.peak_memory),
                 _detail(r)]
                for r in self._results.values()]
        s = self.summary()
        caption = (f"{s['completed']} completed, {s['cached']} cached, {s['failed']} failed, {s['skipped']} "
                   f"skipped in {self.wall_time:.2f}s")
        return table(caption, ["task", "status", "tries", "time", "peak mem", "detail"], rows, status_column=1)

    def timeline(self):
        """A Gantt chart of this run (``molexp.views.visualize.Timeline``): shows itself in Jupyter, ``.save(path)``."""
        from ..views.visualize import timeline

        return timeline(self)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<Results {s['total']} tasks: {s['completed']} completed, {s['cached']} cached, "
                f"{s['failed']} failed, {s['skipped']} skipped>")


def _detail(r: TaskResult) -> str:
    """What the table says of a task: what went wrong when it failed, else why it ran, was reused or skipped."""
    if r.status is TaskStatus.FAILED and r.failure:
        return f"{r.failure}: {_first_line(r.error)}"
    return r.reason or ""


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data: itself when it is, lists/dicts element by element, else its ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 50 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if depth < 50 and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return repr(value)


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""
