"""``BatchExecutor``: at most ``batch_size`` tasks in flight, so a pool of 100,000 tasks never floods Dask."""

from __future__ import annotations

from typing import Any

from ..backends.distributed import DistributedBackend
from ..backends.local import LocalBackend
from ..errors import ConfigError
from .base import Executor


class BatchExecutor(Executor):
    """Runs work with at most ``batch_size`` of its tasks handed to Dask at once, in dependency order.

    On a ``distributed`` cluster a task is submitted as a future only when its dependencies have finished
    and fewer than ``batch_size`` are in flight (refilled as tasks finish), so the scheduler and the driver
    hold a bounded number of futures whatever the pool's size. On the local scheduler, Dask's scheduler
    hands at most ``batch_size`` ready tasks to the worker threads at a time.
    """

    def __init__(self, batch_size: int = 10, *, work: Any = None, client=None, cluster=None,
                 address: str | None = None, **options: Any):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size expects an integer >= 1, got {batch_size!r}")
        super().__init__(work, client=client, cluster=cluster, address=address, **options)
        self.batch_size = batch_size

    def _backend(self):
        if self.client is not None:
            return DistributedBackend(self.client, window=self.batch_size,
                                      bundle_seconds=self.config.bundle_seconds)
        return LocalBackend(self.config.max_workers, window=self.batch_size)
