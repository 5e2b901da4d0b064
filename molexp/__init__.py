"""molexp: experiments of shell and Python tasks, run in parallel on Dask.

Public names only; see the README and ``docs/`` for the guide.
"""

from .run.config import ExecutionConfig
from .errors import (CheckpointError, CheckpointLocked, ClusterError, ConfigError, CycleError, ExecutionError,
                     FileDeclarationError, GraphError, MolexpError, SweepError, TaskDefinitionError, TemplateError, ValidationError)
from .backends.adaptive_policy import Decision, MemoryPolicy
from .executors import AdaptiveExecutor, BatchExecutor, Executor, ExperimentExecutor, RunInterrupted, StreamExecutor
from .model.experiment import Experiment, TaskPool
from .model.graph import TaskGraph
from .model.params import (CartesianSampler, CombinationSampler, LogUniform, Param, ParamSet, ParamSpace, RandomSampler, Uniform,
                     group_results, param_sets, sweep)
from .state.uptodate import Plan, PlanEntry
from .state.result import Attempt, FailureKind, Results, TaskResult, TaskStatus
from .run.spec import CurrentTask, current_task
from .model.task import LocalTask, PythonTask, ShellTask, Task, task

__version__ = "0.1.0"

__all__ = [
    "AdaptiveExecutor", "BatchExecutor", "Decision", "MemoryPolicy", "StreamExecutor",
    "CartesianSampler", "CombinationSampler", "LogUniform", "Param", "ParamSet", "ParamSpace", "RandomSampler", "SweepError", "Uniform",
    "group_results", "param_sets", "sweep",
    "Attempt", "CheckpointError", "CheckpointLocked", "ClusterError", "ConfigError", "CycleError",
    "ExecutionConfig", "ExecutionError", "Executor", "Experiment", "ExperimentExecutor", "FailureKind",
    "FileDeclarationError", "Plan", "PlanEntry",
    "GraphError", "LocalTask", "MolexpError", "PythonTask", "Results", "RunInterrupted", "ShellTask", "Task",
    "TaskDefinitionError", "TaskGraph", "TaskPool", "TaskResult", "TaskStatus", "TemplateError",
    "ValidationError", "CurrentTask", "current_task", "task",
]
