"""What a run accepts as its work: an Experiment, a TaskGraph, a TaskPool, a task or a list of tasks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import TaskDefinitionError
from .experiment import Experiment
from .graph import TaskGraph
from .task import Task


def as_graph(work: Any) -> tuple[TaskGraph, str, str, dict]:
    """(graph, experiment name, workdir, default params) of an Experiment, TaskGraph, TaskPool or task list."""
    if isinstance(work, Experiment):
        return work.graph, work.name, work.workdir, dict(work.params)
    if isinstance(work, TaskGraph):
        return work, getattr(work, "name", "workflow"), ".", {}
    if isinstance(work, Task):
        work = [work]
    if isinstance(work, Iterable) and not isinstance(work, (str, bytes, Mapping)):
        items = list(work)
        if all(isinstance(t, Task) for t in items):
            return TaskGraph(items), "workflow", ".", {}
    raise TaskDefinitionError(
        f"expected an Experiment, a TaskGraph, a TaskPool or a list of tasks, got {type(work).__name__}")
