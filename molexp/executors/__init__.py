"""Executors: one contract (``executors.base.Executor``), several ways of handing work to Dask."""

from .base import Executor, RunInterrupted
from .experiment import ExperimentExecutor

__all__ = ["Executor", "ExperimentExecutor", "RunInterrupted"]
