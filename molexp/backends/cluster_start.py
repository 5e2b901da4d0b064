"""Starting a dask-jobqueue cluster truthfully: importing dask-jobqueue without losing Ctrl-C, and waiting
(bounded) for the first Dask worker, with the batch system's own words when none comes.

``import_jobqueue()`` imports dask-jobqueue and puts back the SIGINT handler it replaces
(``dask_jobqueue.runner`` installs ``lambda *_: sys.exit()`` at import, which turns Ctrl-C into a silent
exit 0). ``watched_job_cls(cls)`` is the cluster's job class with one change: a job whose submission fails
(``sbatch`` exits non-zero, is missing, ...) records the batch system's message on the cluster's
``JobStarts``, is marked failed (so it is not submitted again, and closing the cluster does not trip on
it), and its exception is reported once, in one line, instead of Dask's two tracebacks.
``wait_for_first_worker(cluster, starts, timeout)`` blocks until a worker has joined the scheduler, and
raises ``ClusterError`` at once when every job's submission failed, or at the timeout naming the jobs'
state (``squeue``'s state and reason on SLURM). ``close_before_sigterm()`` lets the caller cancel the jobs
when SIGTERM arrives during that wait.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

from ..errors import ClusterError, ConfigError

log = logging.getLogger("molexp")

# How long make_cluster waits for the first worker by default (docs/slurm.md says why): long enough for a job
# to start on an idle or debug partition, or for a powered-down node to boot; short enough to report a
# mistake before the user walks away.
DEFAULT_START_TIMEOUT = "5 minutes"


def parse_start_timeout(value) -> float | None:
    """Seconds to wait for the first worker, from a duration (Dask's ``parse_timedelta``: ``"90s"``, ``"10m"``,
    ``"1h"``, a number of seconds), or None for ``"none"`` (wait as long as the queue takes)."""
    if value is None:
        value = DEFAULT_START_TIMEOUT
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    from dask.utils import parse_timedelta

    expected = "a duration such as '90s', '10m' or '2h' (or 'none')"
    if isinstance(value, bool):
        raise ConfigError(f"cluster: start_timeout (--start-timeout) expects {expected}, got {value!r}")
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"cluster: start_timeout (--start-timeout) expects {expected}, got {value!r}") from None
    if seconds is None or not seconds > 0:
        raise ConfigError(f"cluster: start_timeout (--start-timeout) expects a duration above zero, got {value!r}")
    return float(seconds)


def import_jobqueue():
    """``import dask_jobqueue``, keeping the SIGINT handler that was in place (Python's own, by default).

    Importing it (0.9.0) runs ``signal.signal(SIGINT, lambda *_: sys.exit())`` in ``dask_jobqueue.runner``:
    Ctrl-C would then end ``molexp run`` with exit 0, no table, and nothing terminated. When it was imported
    earlier (by a workflow file) its handler is replaced by Python's default one. Off the main thread
    handlers cannot be changed, and the import is left as it is."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    import dask_jobqueue

    if main:
        now = signal.getsignal(signal.SIGINT)
        if _is_jobqueue_handler(now):
            keep = before if before is not None and not _is_jobqueue_handler(before) else signal.default_int_handler
            signal.signal(signal.SIGINT, keep)
    return dask_jobqueue


def _is_jobqueue_handler(handler) -> bool:
    return getattr(handler, "__module__", None) == "dask_jobqueue.runner"


class _Terminated(BaseException):
    """SIGTERM arrived while a cluster was starting (see ``close_before_sigterm``)."""


@contextmanager
def close_before_sigterm():
    """While a cluster starts (up to ``start_timeout``), SIGTERM (``kill``, ``timeout``, a batch system ending
    the job) raises inside the block, so the caller closes the cluster and cancels its jobs, and then ends the
    process with SIGTERM's default action as it would have. Only when SIGTERM has its default action and on
    the main thread: a handler someone installed is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminated(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None   # pragma: no cover - the kill ends the process first
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class JobStarts:
    """What happened to the job submissions of one cluster (filled from the cluster's event loop)."""

    def __init__(self):
        self.submitted: list[str] = []          # job ids
        self.failures: list[str] = []           # one line each: the batch system's message
        self.waiting = True                     # wait_for_first_worker reports failures while True

    def failed(self, job, error: BaseException) -> None:
        line = submission_error(error)
        self.failures.append(line)
        if not self.waiting:   # later submissions (adaptive scaling): one line each, the run goes on
            log.warning("molexp: a worker job could not be submitted: %s", line)


def submission_error(error: BaseException) -> str:
    """One line from a failed job submission: the command's stderr (stdout if it wrote none) as dask-jobqueue
    reports it (``Command exited with non-zero exit code ... stderr: ...``), else the exception itself."""
    text = str(error)
    if "Command exited with non-zero exit code" in text:
        head, _, err = text.partition("\nstderr:\n")
        out = head.partition("\nstdout:\n")[2]
        code = head.partition("Exit code: ")[2].split("\n", 1)[0].strip()
        words = [ln.strip() for ln in (err.strip() or out.strip()).splitlines() if ln.strip()]
        command = head.partition("Command:\n")[2].split("\n", 1)[0].split(" ", 1)[0] or "the submit command"
        said = "; ".join(words) if words else "no output"
        return f"{said} ({command} exited with {code or 'an error'})"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def watched_job_cls(job_cls: type, starts: JobStarts) -> type:
    """``job_cls`` whose ``start`` records its outcome on ``starts`` (see the module docstring)."""
    from distributed.core import Status

    async def start(self):
        try:
            await job_cls.start(self)
        except Exception as e:
            self.status = Status.failed  # nothing to cancel; never submitted again by a later ``await``
            e._molexp_reported = True    # Dask's loggers would print it twice as a traceback: see _Quiet
            starts.failed(self, e)
            raise
        if getattr(self, "job_id", None):
            starts.submitted.append(str(self.job_id))

    _install_quiet()
    return type(job_cls.__name__, (job_cls,), {"start": start, "__module__": __name__,
                                               "__qualname__": job_cls.__qualname__})


class _Quiet(logging.Filter):
    """Drops the records of a job submission failure molexp reports itself (tornado's "Exception in
    callback" and asyncio's "Task exception was never retrieved", each a full traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_molexp_reported", False)


_QUIET = _Quiet()


def _install_quiet() -> None:
    for name in ("tornado.application", "asyncio"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


def workers_joined(cluster) -> int:
    try:
        return len(cluster.scheduler_info.get("workers") or {})
    except Exception:
        return 0


def wait_for_first_worker(cluster, starts: JobStarts, timeout: float | None, *, poll: float = 0.2) -> None:
    """Return once a Dask worker has joined ``cluster``'s scheduler. Raise ``ClusterError`` when every job
    the cluster asked for failed to be submitted (at once: nothing is left to wait for) or when ``timeout``
    seconds pass with no worker (naming each job's state). The caller closes the cluster on error."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not workers_joined(cluster):
            wanted = len(getattr(cluster, "worker_spec", {}) or {})
            if starts.failures and not starts.submitted and len(starts.failures) >= max(wanted, 1):
                raise ClusterError(f"no worker job could be submitted: {starts.failures[-1]}")
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(_no_worker_message(cluster, starts, timeout))
            time.sleep(poll)
        if starts.failures:
            log.warning("molexp: %d worker job(s) could not be submitted: %s", len(starts.failures),
                        starts.failures[-1])
    finally:
        starts.waiting = False


def _no_worker_message(cluster, starts: JobStarts, timeout: float) -> str:
    text = f"no Dask worker joined within {_seconds(timeout)} (start_timeout, --start-timeout)"
    jobs = [str(j.job_id) for j in list(getattr(cluster, "workers", {}).values()) if getattr(j, "job_id", None)]
    if jobs:
        states = _slurm_states(jobs) if _is_slurm(cluster) else {}
        said = ", ".join(f"job {j} is {states[j]}" if j in states else f"job {j}" for j in jobs[:5])
        more = f" and {len(jobs) - 5} more" if len(jobs) > 5 else ""
        text += f": {said}{more}"
        if any(s.startswith("RUNNING") for s in states.values()):
            text += " (the job runs but its worker did not reach the scheduler: see the job's output, and " \
                    "the interface option)"
        elif any(s.startswith("PENDING") for s in states.values()):
            text += " (raise --start-timeout if the queue is just busy)"
    elif not starts.failures:
        text += ": no job was submitted yet"
    if starts.failures:
        text += f"; {len(starts.failures)} submission(s) failed: {starts.failures[-1]}"
    return text


def _seconds(timeout: float) -> str:
    return f"{timeout:g}s"


def _is_slurm(cluster) -> bool:
    return "slurm" in type(cluster).__name__.lower()


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: "PENDING (Resources)"}`` from one ``squeue`` call (empty when it cannot answer)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            job, state, reason = parts
            states[job] = f"{state} ({reason})" if reason and reason != "None" else state
    return states
