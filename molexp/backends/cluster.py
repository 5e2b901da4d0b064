"""Which Dask a run uses: the local threaded scheduler (no client) or a ``distributed`` client made from
``client=``, ``cluster=`` or ``address=``.

A backend (``backend_local.LocalBackend``, ``backend_distributed.DistributedBackend``) has one job: hand
the compiled graph to Dask and report every task's outcome into the driver's queue. Nothing here
schedules: Dask does.
"""

from __future__ import annotations

import logging
import os

from .cluster_start import (JobStarts, close_before_sigterm, import_jobqueue, parse_start_timeout,
                            wait_for_first_worker, watched_job_cls)
from ..errors import ClusterError, ConfigError

log = logging.getLogger("molexp")


def default_workers() -> int:
    """The local scheduler's default thread count: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def connect(*, client=None, cluster=None, address: str | None = None):
    """``(client or None, owned)``: the ``distributed.Client`` for the given target, or None for the local
    scheduler. ``owned`` is True when molexp made the client (and so closes it)."""
    given = [n for n, v in (("client", client), ("cluster", cluster), ("address", address)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of client=, cluster=, address=; got {', '.join(given)}")
    if client is not None:
        if not hasattr(client, "get") or not hasattr(client, "scheduler"):
            raise ConfigError(f"client= expects a distributed.Client, got {type(client).__name__}")
        return client, False
    if cluster is not None:
        from distributed import Client

        if not hasattr(cluster, "scheduler_address"):
            raise ConfigError(f"cluster= expects a Dask cluster object (LocalCluster, SLURMCluster, ...), "
                              f"got {type(cluster).__name__}")
        return Client(cluster), True
    if address is not None:
        from distributed import Client

        if not isinstance(address, str) or not address:
            raise ConfigError(f"address= expects a scheduler address such as 'tcp://host:8786', got {address!r}")
        try:
            return Client(address, timeout="10s"), True
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {e}") from None
    return None, False


JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
            "htcondor": "HTCondorCluster"}
CLUSTER_KEYS = {"type", "address", "jobs", "cores", "memory", "processes", "walltime", "queue", "interface",
                "adapt", "options", "start_timeout"}


def walltime_seconds(walltime: str | int | float) -> float:
    """Seconds in a batch-system walltime: ``"D-HH:MM:SS"``, ``"HH:MM:SS"``, ``"MM:SS"``, or minutes."""
    if isinstance(walltime, (int, float)) and not isinstance(walltime, bool):
        return float(walltime) * 60
    text = str(walltime).strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(walltime)
    if len(parts) == 1:
        return days * 86400 + parts[0] * 60
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts
    return days * 86400 + h * 3600 + m * 60 + s


def make_cluster(spec: dict):
    """A Dask cluster from a plain spec (an experiment file's ``cluster:`` section, or CLI flags).

    ``{"address": "tcp://host:8786"}`` is returned as the address string. ``{"type": "slurm"|"pbs"|"sge"|
    "lsf"|"htcondor", "jobs": N, "cores": C, "memory": "4GB", "walltime": "01:00:00", "queue": "...",
    "interface": "ib0", "adapt": {"minimum_jobs": 0, "maximum_jobs": 10}, "options": {...}}`` makes the
    dask-jobqueue cluster (``options`` go to its constructor) and scales it to ``jobs`` (or adapts). With a
    walltime, workers get ``--lifetime`` (90% of it) and ``--lifetime-stagger`` (5%), so the batch system's
    kill at the walltime retires workers gracefully instead of failing their tasks.

    It returns once a first Dask worker has joined (``start_timeout``: a duration for Dask's
    ``parse_timedelta``, default ``"5 minutes"``; ``"none"`` waits as long as the queue takes). When every job's
    submission fails, or no worker joins in time, the cluster is closed (its jobs cancelled) and
    ``ClusterError`` says why, in the batch system's words (``sbatch``'s error, ``squeue``'s state and reason).
    With ``adapt``, one job (or ``minimum_jobs``) is asked for first, then adaptivity takes over.
    """
    unknown = set(spec) - CLUSTER_KEYS
    if unknown:
        raise ConfigError(f"cluster: unknown key(s) {sorted(unknown)}; expected {sorted(CLUSTER_KEYS)}")
    if spec.get("address"):
        if spec.get("start_timeout") is not None:
            raise ConfigError("cluster: start_timeout applies to batch-system clusters ('type'), not to 'address' "
                              f"(a running scheduler); got both: {spec['address']!r}, {spec['start_timeout']!r}")
        return spec["address"]
    kind = spec.get("type")
    if kind not in JOBQUEUE:
        raise ConfigError(f"cluster: 'type' must be one of {sorted(JOBQUEUE)} (or give 'address'), got {kind!r}")
    timeout = parse_start_timeout(spec.get("start_timeout"))
    try:
        dask_jobqueue = import_jobqueue()
    except ImportError:
        raise ConfigError(f"cluster type {kind!r} needs dask-jobqueue: pip install 'molexp[hpc]'") from None
    kwargs = dict(spec.get("options") or {})
    kwargs.setdefault("cores", spec.get("cores", 1))
    kwargs.setdefault("memory", spec.get("memory", "2GB"))
    kwargs.setdefault("processes", spec.get("processes", 1))
    kwargs.setdefault("scheduler_options", {"dashboard_address": ":0"})
    for key in ("queue", "interface", "walltime"):
        if spec.get(key) is not None:
            kwargs.setdefault(key, spec[key])
    if spec.get("walltime") is not None:
        try:
            seconds = walltime_seconds(spec["walltime"])
        except ValueError:
            raise ConfigError(f"cluster: walltime expects 'HH:MM:SS' (or 'D-HH:MM:SS', minutes), got "
                              f"{spec['walltime']!r}") from None
        extra = list(kwargs.get("worker_extra_args") or [])
        if "--lifetime" not in extra:
            extra += ["--lifetime", f"{int(seconds * 0.9)}s", "--lifetime-stagger", f"{int(seconds * 0.05)}s"]
        kwargs["worker_extra_args"] = extra
    cls = getattr(dask_jobqueue, JOBQUEUE[kind])
    starts = JobStarts()
    kwargs["job_cls"] = watched_job_cls(kwargs.get("job_cls") or cls.job_cls, starts)
    with close_before_sigterm():
        return _start(cls, kwargs, spec, kind, starts, timeout)


def _start(cls, kwargs: dict, spec: dict, kind: str, starts: JobStarts, timeout: float | None):
    """The cluster of ``make_cluster``, once a first worker joined (else closed, and the error raised)."""
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, OSError) as e:
        # dask-jobqueue wraps the scheduler's start-up errors: "Cluster failed to start: <the ValueError>"
        cause = e.__cause__ if isinstance(e, RuntimeError) and e.__cause__ is not None else e
        said = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(f"cluster: {JOBQUEUE[kind]} refused its arguments (the cluster spec and its "
                              f"'options'): {said}") from None
        raise ClusterError(f"{JOBQUEUE[kind]} could not start: {said}") from None
    try:
        adapt = spec.get("adapt")
        if adapt:
            low, high = adapt.get("minimum_jobs", 0), adapt.get("maximum_jobs", 1)
            cluster.scale(jobs=max(low, 1))   # a first job to wait for; adaptivity takes over once it joined
            wait_for_first_worker(cluster, starts, timeout)
            cluster.adapt(minimum_jobs=low, maximum_jobs=high)
        else:
            cluster.scale(jobs=spec.get("jobs", 1))
            wait_for_first_worker(cluster, starts, timeout)
    except BaseException:   # no worker in time, or Ctrl-C while waiting: cancel what was submitted
        try:
            cluster.close()
        except Exception as e:  # pragma: no cover - the error above is the one to report
            log.warning("molexp: closing the %s cluster failed: %s: %s", kind, type(e).__name__, e)
        raise
    return cluster
