"""``ExecutionConfig``: every executor option, validated once, immutable.

``executor.configure(**options)`` returns a new config merged with the old one; an unknown option or a
bad value raises ``ConfigError`` naming the option, what it expects and what it got.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from typing import Any

from dask.utils import parse_bytes, parse_timedelta

from ..errors import ConfigError


@dataclass(frozen=True)
class ExecutionConfig:
    """Options shared by every executor (defaults shown).

    Parallelism: ``max_workers`` (None: the CPU count; threads of the local scheduler).
    Retries: ``retry_attempts=0`` retries after a failure, waiting ``retry_delay=1.0`` s, doubled each time with
    ``retry_exponential_backoff=False``, at most ``retry_max_delay=60`` s, plus up to ``retry_jitter=0.1`` of
    the delay at random.
    Failures: ``fault_tolerance="fail_fast"`` stops launching tasks and terminates running ones at the first
    failure; ``"continue"`` runs everything whose dependencies succeeded. ``error_propagation=False``: ``run()``
    returns the results; True: it raises ``ExecutionError`` carrying them. ``partial_results=True`` keeps
    completed tasks' values when the run failed; False drops them.
    Limits: ``task_timeout=None`` seconds per task; ``kill_grace=5`` s between SIGTERM and SIGKILL;
    ``max_memory_per_task=None`` (e.g. ``"4GB"``); ``cpu_affinity=False``; ``priority_scheduling=False``.
    Progress: ``progress=True`` shows a tqdm bar.
    Checkpoints: ``checkpoint_dir=None``, ``checkpoint_interval=100`` task outcomes (at least) between snapshots,
    ``auto_resume=False``.
    Conditions: ``condition_timeout=60`` s a task's condition may take (None: no bound); past it the task fails
    (kind ``error``) and the run goes on, while the condition keeps running in its own thread.
    Logs: ``keep_logs="all"`` keeps every task's non-empty stdout/stderr log file (an empty log leaves no file);
    ``"failed"`` keeps them only for tasks that did not complete (each result still has the last lines). See
    docs/tasks.md ("Output and log files").
    Processes: ``keep_processes=False``: when a task ends, every process it started (``cmd &``, ``nohup``,
    ``setsid``, a daemon) is killed; True, or a list of task names, lets those tasks' background processes
    outlive them (a task that starts a server for later tasks). See docs/resources.md ("Processes").
    Clusters: ``bundle_seconds=1.0``: on a ``distributed`` cluster, ready tasks expected to be short go to Dask
    in bundles of about this much work, each one Dask task (0: every task alone). See docs/clusters.md.
    Shell and files: ``pipefail=True`` runs commands with ``bash -o pipefail`` (a failing command in a pipe fails
    the task); ``keep_failed_outputs=False`` removes a failed attempt's declared outputs (True keeps them, for
    debugging: a resume still runs the task again).
    """

    max_workers: int | None = None
    retry_attempts: int = 0
    retry_delay: float = 1.0
    retry_exponential_backoff: bool = False
    retry_max_delay: float = 60.0
    retry_jitter: float = 0.1
    fault_tolerance: str = "fail_fast"
    error_propagation: bool = False
    partial_results: bool = True
    task_timeout: float | None = None
    kill_grace: float = 5.0
    max_memory_per_task: int | None = None
    cpu_affinity: bool = False
    priority_scheduling: bool = False
    progress: bool = True
    checkpoint_dir: str | None = None
    checkpoint_interval: int = 100
    auto_resume: bool = False
    pipefail: bool = True
    keep_failed_outputs: bool = False
    condition_timeout: float | None = 60.0
    keep_processes: bool | frozenset[str] = False
    bundle_seconds: float = 1.0
    keep_logs: str = "all"

    def merge(self, **options: Any) -> ExecutionConfig:
        """A new config with ``options`` validated and applied."""
        fields = {f.name for f in dataclasses.fields(self)}
        clean = {}
        for key, value in options.items():
            if key not in fields:
                close = difflib.get_close_matches(key, sorted(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown option {key!r}{hint}; valid options: {', '.join(sorted(fields))}")
            clean[key] = _CHECKS[key](key, value)
        return dataclasses.replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict."""
        return dataclasses.asdict(self)


def _bad(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"option {key!r} expects {expected}, got {value!r} ({type(value).__name__})")


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(key, "True or False", value)
    return value


def _int(minimum: int, optional: bool = False):
    def check(key: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _bad(key, f"an integer >= {minimum}" + (" or None" if optional else ""), value)
        return value
    return check


def _seconds(optional: bool = False, positive: bool = False):
    def check(key: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        expected = ("a positive" if positive else "a non-negative") + " number of seconds or a time such as '5m'"
        if isinstance(value, bool):
            raise _bad(key, expected, value)
        try:
            seconds = parse_timedelta(value)
        except (ValueError, TypeError, KeyError):
            raise _bad(key, expected, value) from None
        if seconds is None or seconds < 0 or (positive and seconds == 0):
            raise _bad(key, expected, value)
        return float(seconds)
    return check


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _bad(key, "a number from 0 to 1", value)
    return float(value)


def _choice(*choices: str):
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise _bad(key, " or ".join(repr(c) for c in choices), value)
        return value
    return check


def _bytes(key: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        n = parse_bytes(value) if not isinstance(value, bool) else -1
    except (ValueError, TypeError):
        n = -1
    if n <= 0:
        raise _bad(key, "a size such as '4GB' or a number of bytes > 0", value)
    return n


def _task_names_or_bool(key: str, value: Any) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    expected = "True, False or a list of task names"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _bad(key, expected, value)
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"option {key!r} expects {expected}, got {value!r}: {name!r} is not a task name")
    return frozenset(names)


def check_kept_tasks(config: ExecutionConfig, names) -> None:
    """Raise ``ConfigError`` when ``keep_processes`` names a task that is not among ``names`` (the run's
    tasks; a sweep's copy ``t[x=1]`` counts as ``t``): a misspelt name would silently kill the daemon."""
    keep = config.keep_processes
    if isinstance(keep, bool):
        return
    known = set(names)
    known.update(n.split("[", 1)[0] for n in list(known) if "[" in n)
    unknown = sorted(keep - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"option 'keep_processes' names {', '.join(map(repr, unknown))}, not a task of this "
                          f"run{hint}")


def _path(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise _bad(key, "a directory path", value)
    return os.fspath(value)


_CHECKS = {
    "max_workers": _int(1, optional=True),
    "retry_attempts": _int(0),
    "retry_delay": _seconds(),
    "retry_exponential_backoff": _bool,
    "retry_max_delay": _seconds(),
    "retry_jitter": _fraction,
    "fault_tolerance": _choice("fail_fast", "continue"),
    "error_propagation": _bool,
    "partial_results": _bool,
    "task_timeout": _seconds(optional=True, positive=True),
    "kill_grace": _seconds(),
    "max_memory_per_task": _bytes,
    "cpu_affinity": _bool,
    "priority_scheduling": _bool,
    "progress": _bool,
    "checkpoint_dir": _path,
    "checkpoint_interval": _int(1),
    "auto_resume": _bool,
    "pipefail": _bool,
    "keep_failed_outputs": _bool,
    "condition_timeout": _seconds(optional=True, positive=True),
    "keep_processes": _task_names_or_bool,
    "bundle_seconds": _seconds(),
    "keep_logs": _choice("all", "failed"),
}
