"""``AdaptiveExecutor``: parallelism that follows the queue and backs off under memory pressure."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dask

from ..backends.adaptive_policy import Decision, MemoryPolicy
from ..backends.distributed import DistributedBackend
from ..backends.worker_memory import WorkerMemory, system_memory
from ..run.config import _bool, _fraction, _int, _seconds
from ..errors import ConfigError
from ..state.result import Results
from .base import Executor

log = logging.getLogger("molexp")


@dataclass(frozen=True)
class AdaptiveConfig:
    """The adaptive executor's own options (defaults shown); every other option is ``ExecutionConfig``'s.

    ``monitor_system_resources=True`` reads system memory (psutil) every ``interval`` seconds;
    ``adjust_parallelism=True`` lets the number of Dask workers follow the queue (``cluster.adapt``) between
    ``min_cluster_workers`` and ``max_cluster_workers``; ``memory_threshold=0.8`` is the fraction of memory
    above which workers are not added (and one is retired per interval) and only one task is kept in flight.
    ``min_workers`` and ``max_workers`` are accepted as the older names of the two bounds (on this executor
    only: elsewhere ``max_workers`` is the local scheduler's thread count).
    """

    monitor_system_resources: bool = True
    adjust_parallelism: bool = True
    memory_threshold: float = 0.8
    min_cluster_workers: int = 1
    max_cluster_workers: int = 4
    interval: float = 1.0

    @property
    def min_workers(self) -> int:
        """The older name of ``min_cluster_workers``."""
        return self.min_cluster_workers

    @property
    def max_workers(self) -> int:
        """The older name of ``max_cluster_workers``."""
        return self.max_cluster_workers


_ADAPTIVE_CHECKS = {"monitor_system_resources": _bool, "adjust_parallelism": _bool,
                    "memory_threshold": _fraction, "min_cluster_workers": _int(0), "max_cluster_workers": _int(1),
                    "interval": _seconds(positive=True)}
_ALIASES = {"min_workers": "min_cluster_workers", "max_workers": "max_cluster_workers"}


def _adaptive_options(options: dict) -> dict:
    """Pop the adaptive options out of ``options`` (older names translated)."""
    out = {}
    for k in list(options):
        name = _ALIASES.get(k, k)
        if name in _ADAPTIVE_CHECKS:
            if name in out:
                raise ConfigError(f"option {name!r} given twice (as {name!r} and as its older name "
                                  f"{next(a for a, n in _ALIASES.items() if n == name)!r})")
            out[name] = options.pop(k)
    return out


class AdaptiveExecutor(Executor):
    """Runs work on a ``distributed`` cluster whose size follows the queue (``cluster.adapt`` with a policy
    tempered by memory readings), holding submissions back while system memory is above the threshold.

    With no ``cluster=``/``client=``/``address=`` it starts a ``LocalCluster`` (``min_cluster_workers`` single-threaded
    worker processes) and closes it afterwards; a cluster you give (a dask-jobqueue cluster included) is
    adapted the same way, and stays adaptive after the run so it shrinks back to ``min_cluster_workers`` when idle. Every decision is
    recorded in ``decisions`` (see ``Decision``); ``report()``
    prints them.
    """

    def __init__(self, work: Any = None, *, client=None, cluster=None, address: str | None = None,
                 memory_probe: Callable[[], float] | None = None, **options: Any):
        adaptive = _adaptive_options(options)
        super().__init__(work, client=client, cluster=cluster, address=address, **options)
        self.adaptive = AdaptiveConfig()
        self._given_cluster = cluster
        self._given_probe = memory_probe
        self._memory: Callable[[], float] = memory_probe or system_memory
        import distributed  # noqa: F401  (its configuration: the log length below)

        # bounded, as distributed's own AdaptiveCore.log: a cluster you pass in stays adaptive after the run
        self.decisions: deque[Decision] = deque(maxlen=dask.config.get("distributed.admin.low-level-log-length"))
        self._lock = threading.Lock()
        self._allowed = 0
        self._main_hidden: dict | None = None
        self.backend: DistributedBackend | None = None   # the current run's (counts bundle members for Adaptive)
        self.configure(**adaptive)

    def configure(self, **options: Any) -> AdaptiveExecutor:
        """Merge options: the adaptive ones (see ``AdaptiveConfig``) and every ``ExecutionConfig`` option."""
        adaptive = _adaptive_options(options)
        checked = {k: _ADAPTIVE_CHECKS[k](k, v) for k, v in adaptive.items()}
        new = dataclasses.replace(self.adaptive, **checked)
        if new.min_cluster_workers > new.max_cluster_workers:
            raise ConfigError(f"option 'min_cluster_workers' ({new.min_cluster_workers}) must not exceed "
                              f"'max_cluster_workers' ({new.max_cluster_workers})")
        super().configure(**options)
        self.adaptive = new
        return self

    # -- the machinery ---------------------------------------------------------------------------------------
    def _record(self, decision: Decision) -> None:
        with self._lock:
            self.decisions.append(decision)

    def _policy(self) -> MemoryPolicy:
        a = self.adaptive
        return MemoryPolicy(a.memory_threshold if a.monitor_system_resources else 2.0, a.min_cluster_workers,
                            a.max_cluster_workers)

    def _throttle(self, running: int) -> int | None:
        if not self.adaptive.monitor_system_resources:
            return None
        self._allowed, decision = self._policy().in_flight(self._memory(), running, self._allowed)
        if not self.decisions or self.decisions[-1].action != decision.action:
            self._record(self._sourced(decision))
        return self._allowed

    def _sourced(self, decision: Decision) -> Decision:
        source = getattr(self._memory, "source", None)
        return dataclasses.replace(decision, source=source) if source else decision

    def _choose_probe(self) -> None:
        """Where memory is read: the probe given, else this machine's for a ``LocalCluster`` (its workers share
        this machine), else the workers' own figures from the scheduler (``WorkerMemory``)."""
        if self._given_probe is not None:
            self._memory = self._given_probe
            return
        from distributed import LocalCluster

        cluster = self._given_cluster if self._given_cluster is not None else getattr(self.client, "cluster", None)
        self._memory = system_memory if isinstance(cluster, LocalCluster) else WorkerMemory(self.client)

    def _backend(self):
        self.backend = DistributedBackend(self.client, throttle=self._throttle,
                                          bundle_seconds=self.config.bundle_seconds)
        return self.backend

    def _start_cluster(self):
        """Make sure there is a cluster to adapt; returns what to close afterwards."""
        if self.client is not None:
            return None
        from distributed import Client, LocalCluster

        self._main_hidden = _hide_main()
        try:
            cluster = LocalCluster(n_workers=self.adaptive.min_cluster_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.WARNING)
        except BaseException:
            _restore_main(self._main_hidden)
            raise
        self._client, self._owns_client = Client(cluster), True
        self._given_cluster = cluster
        return cluster

    def _adapt(self):
        cluster = self._given_cluster
        if cluster is None:
            cluster = getattr(self.client, "cluster", None)
        if not self.adaptive.adjust_parallelism or cluster is None or not hasattr(cluster, "adapt"):
            return None
        executor = self
        from distributed.deploy.adaptive import Adaptive

        class MemoryAwareAdaptive(Adaptive):
            """distributed's Adaptive, its target counting bundle members and tempered by the memory policy."""

            async def target(self):
                wanted = await super().target()
                backend = executor.backend
                if backend is not None:   # Dask counts a bundle as one task: count its members
                    wanted = max(wanted, backend.members_target(len(self.observed)))
                decision = executor._policy().target(executor._memory(), len(self.observed), wanted)
                executor._record(executor._sourced(decision))
                return decision.target

        a = self.adaptive
        return cluster.adapt(Adaptive=MemoryAwareAdaptive, minimum=a.min_cluster_workers, maximum=a.max_cluster_workers,
                             interval=a.interval, wait_count=2)

    def _execute(self, work: Any, params: Mapping[str, Any] | None, context: Mapping[str, Any] | None,
                 targets=None, force=None) -> Results:
        """Run the work on the adapting cluster (started here when none was given); returns ``Results``."""
        own = self._start_cluster()
        self._choose_probe()
        adaptive = self._adapt()
        self._allowed = 0
        try:
            return super()._execute(work, params, context, targets, force)
        finally:
            # On a cluster you gave, adaptivity stays on, so it shrinks back to min_cluster_workers when idle.
            if adaptive is not None and own is not None:
                adaptive.stop()
            if own is not None:
                self.close()
                own.close()
                self._given_cluster = None
                _restore_main(self._main_hidden)
                self._main_hidden = None

    def report(self) -> str:
        """The recorded decisions, one per line."""
        return "\n".join(str(d) for d in self.decisions)


def _hide_main() -> dict | None:
    """While molexp's own LocalCluster starts and scales, hide where the main script is (``__main__.__file__``
    and ``__spec__``): Python starts each worker process by importing the main script again (the "spawn"
    start method), which in a script without ``if __name__ == "__main__":`` would run the whole script, and
    start another cluster, in every worker. Tasks do not need it: they travel by value (cloudpickle).
    Returns what to put back (None when there is nothing to hide: a notebook, an interactive session)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
        return None
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    return saved


def _restore_main(saved: dict | None) -> None:
    if saved:
        sys.modules["__main__"].__dict__.update(saved)
