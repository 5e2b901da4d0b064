"""``StreamExecutor``: results as they complete, from a generator."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from typing import Any

from ..backends.distributed import DistributedBackend
from ..backends.local import LocalBackend
from ..state.result import TaskResult
from ..run.session import RunSession
from .base import Executor


class StreamExecutor(Executor):
    """Yields each task's ``TaskResult`` as soon as it completes (fails, is skipped...), in completion order.

    On a ``distributed`` cluster each task is submitted once its inputs have finished,
    and results arrive through ``distributed.as_completed``. Leaving the loop early (``break``, an exception, ``close()``)
    cancels what has not started and terminates what is running before the generator returns.
    """

    def __init__(self, work: Any = None, *, client=None, cluster=None, address: str | None = None, **options: Any):
        super().__init__(work, client=client, cluster=cluster, address=address, **options)

    def _backend(self):
        if self.client is not None:
            # Dependents are submitted as their inputs finish: nothing is on the scheduler that a `break`
            # would have to take back but what is already running or about to.
            return DistributedBackend(self.client, bundle_seconds=self.config.bundle_seconds)
        return LocalBackend(self.config.max_workers)

    def execute_stream(self, work: Any = None, params: Mapping[str, Any] | None = None, *,
                       context: Mapping[str, Any] | None = None) -> Iterator[TaskResult]:
        """A generator of results in completion order (``work``, ``params``, ``context`` as for ``execute``).
        Bad input raises here, before anything runs. Closing it (or dropping it), even before its first item,
        stops the run and releases what it holds."""
        return _Stream(self._session(work, params, context))


class _Stream(Generator):
    """The session's results as a generator. Unlike a plain generator it releases the run when it is closed
    (or dropped) before its first item, when a generator's body, never started, could not."""

    def __init__(self, session: RunSession):
        self._session: RunSession | None = session
        self._results: Iterator[TaskResult] | None = None

    def send(self, value) -> TaskResult:
        if self._results is None:
            if self._session is None:
                raise StopIteration
            self._results = iter(self._session)
        return next(self._results)

    def throw(self, typ, val=None, tb=None):
        if self._results is None:
            self.close()
            raise typ if val is None else val
        return self._results.throw(typ, val, tb)   # type: ignore[arg-type]

    def close(self) -> None:
        if self._results is not None:
            self._results.close()       # stops the run (see Driver.iterate), then releases it
        elif self._session is not None:
            self._session.close()
        self._session = None

    def __del__(self):
        self.close()
