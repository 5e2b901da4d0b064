"""Which Dask a run uses: the local threaded scheduler (no client) or a ``distributed`` client made from
``client=``, ``cluster=`` or ``address=``.

A backend (``backend_local.LocalBackend``, ``backend_distributed.DistributedBackend``) has one job: hand
the compiled graph to Dask and report every task's outcome into the driver's queue. Nothing here
schedules: Dask does.
"""

from __future__ import annotations

import os

from .errors import ClusterError, ConfigError


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
