"""Memory readings for the adaptive executor, where the tasks run.

On a cluster whose workers are on other machines (a dask-jobqueue cluster, a scheduler address), the driver's
own machine says nothing about them: ``WorkerMemory`` reads what the scheduler already has from each worker's
heartbeat (the worker process's memory and its memory limit) and reports the fullest worker, since that is
the one Dask will pause, spill from or restart. On this machine (a ``LocalCluster``) ``system_memory`` reads
the machine's memory with psutil, as the workers share it with everything else.
"""

from __future__ import annotations

import time


def system_memory() -> float:
    """Used fraction of this machine's memory (psutil)."""
    import psutil

    return psutil.virtual_memory().percent / 100.0


system_memory.source = "machine"   # type: ignore[attr-defined]


class WorkerMemory:
    """``probe()`` -> the highest ``memory / memory_limit`` over the cluster's workers (0.0 with none, or
    none with a limit); ``source`` names the worker it came from. Readings are kept ``max_age`` seconds:
    the scheduler's figures change once per worker heartbeat, and a reading is a round trip."""

    def __init__(self, client, max_age: float = 0.2):
        self.client = client
        self.max_age = max_age
        self.source = "workers"
        self._value = 0.0
        self._at = float("-inf")

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self._at < self.max_age:
            return self._value
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:   # the scheduler is going: the run reports that; keep the last reading
            return self._value
        best, source = 0.0, "workers"
        for address, w in workers.items():
            limit = w.get("memory_limit") or 0
            used = (w.get("metrics") or {}).get("memory")
            if limit and used is not None and used / limit >= best:
                best, source = used / limit, f"worker {w.get('name', address)}"
        self._value, self._at, self.source = best, now, source
        return best
