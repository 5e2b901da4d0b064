"""Executors: one contract (``executors.base.Executor``), several ways of handing work to Dask."""

from .adaptive import AdaptiveExecutor
from .base import Executor, RunInterrupted
from .batch import BatchExecutor
from .experiment import ExperimentExecutor
from .stream import StreamExecutor

__all__ = ["AdaptiveExecutor", "BatchExecutor", "Executor", "ExperimentExecutor", "RunInterrupted",
           "StreamExecutor"]
