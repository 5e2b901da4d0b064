"""``Experiment`` (a named set of tasks with a workdir and parameters), ``TaskPool``, and YAML io."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import TaskDefinitionError, ValidationError
from .graph import TaskGraph
from .task import LocalTask, PythonTask, Task, resolve_ref

TASK_TYPES: dict[str, type[Task]] = {"shell": LocalTask, "local": LocalTask, "python": PythonTask}


class TaskPool(TaskGraph):
    """A named, ordered collection of tasks (dependencies allowed), e.g. for ``BatchExecutor.execute``."""

    def __init__(self, tasks: Iterable[Task] = (), *, name: str = "pool"):
        super().__init__(tasks)
        self.name = name

    def __repr__(self) -> str:
        return f"<TaskPool {self.name!r}: {len(self)} tasks>"


class Experiment:
    """A named workflow: tasks with dependencies, a working directory and default parameters.

    ``workdir`` (default: the current directory) is where shell tasks run unless they set ``cwd``, and
    where molexp keeps per-task logs (``.molexp/<name>/logs/``). ``params`` are default run parameters,
    overridden by ``run(params=...)``.
    """

    def __init__(self, name: str, *, workdir: str | os.PathLike | None = None,
                 params: Mapping[str, Any] | None = None, description: str = "",
                 tasks: Iterable[Task] = ()):
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"experiment name must be a non-empty string, got {name!r}")
        if "\0" in name:
            raise ValidationError(f"experiment name must not contain a NUL character (\\x00), got {name!r}")
        self.name = name
        self.workdir = os.fspath(workdir) if workdir is not None else "."
        if "\0" in str(self.workdir):
            raise ValidationError(f"experiment {name!r}: workdir must not contain a NUL character, got "
                                  f"{self.workdir!r}")
        if params is not None and not isinstance(params, Mapping):
            raise ValidationError(f"experiment {name!r}: params must be a mapping, got {type(params).__name__}")
        self.params = dict(params or {})
        self.description = description
        self.cluster: dict[str, Any] = {}  # where `molexp run` runs it (see molexp.backends.cluster.make_cluster)
        self.graph = TaskGraph(tasks)

    def add_task(self, task: Task, dependencies: Iterable[str | Task] | None = None) -> Task:
        """Add a task (names must be unique); ``dependencies`` are added to its ``deps``. Returns it."""
        return self.graph.add_task(task, dependencies)

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Add many tasks at once (a list, or a generator making them): the fast way to build a large
        experiment (see ``TaskGraph.add_tasks``)."""
        self.graph.add_tasks(tasks)

    @property
    def tasks(self) -> dict[str, Task]:
        """The tasks by name, in the order they were added."""
        return self.graph.tasks

    def __len__(self) -> int:
        return len(self.graph)

    def _repr_html_(self) -> str:
        from ..views.html import table

        rows = []
        for t in self.graph:
            what = "; ".join(t.commands) if isinstance(t, LocalTask) else getattr(t.func, "__qualname__", str(t.func))
            rows.append([t.name, t.kind, ", ".join(t.deps), what])
        caption = f"Experiment {self.name!r}: {len(self.graph)} tasks, workdir {self.workdir}"
        return table(caption, ["task", "type", "depends on", "runs"], rows)

    def visualize(self, statuses=None, format: str = "auto"):
        """A picture of the task graph, coloured by ``statuses`` (e.g. a run's ``Results``) when given.

        Shows itself in Jupyter; ``.save("graph.svg"|"graph.html")``, ``.mermaid``, ``.dot``.
        """
        from ..state.files import with_file_deps
        from ..views.visualize import visualize

        return visualize(with_file_deps(self), statuses, format=format)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Experiment):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r}: {len(self.graph)} tasks>"

    # -- plain data and YAML ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The experiment as plain data (what ``to_yaml`` writes)."""
        data: dict[str, Any] = {"name": self.name, "workdir": self.workdir}
        if self.description:
            data["description"] = self.description
        if self.params:
            data["params"] = dict(self.params)
        if self.cluster:
            data["cluster"] = dict(self.cluster)
        data["tasks"] = [t.to_dict() for t in self.graph]
        return data

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The experiment as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "experiment") -> Experiment:
        """Build an experiment from plain data (the shape ``to_dict`` returns)."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"{source}: expected a mapping with 'name' and 'tasks', got {type(data).__name__}")
        if "sweep" in data:
            from .params import expand_sweep

            data = expand_sweep(data, source=source)
        unknown = set(data) - {"name", "workdir", "params", "description", "tasks", "cluster"}
        if unknown:
            raise ValidationError(f"{source}: unknown key(s) {sorted(unknown)}; expected name, workdir, params, "
                                  "description, cluster, sweep, tasks")
        if "name" not in data:
            raise ValidationError(f"{source}: missing 'name'")
        exp = cls(data["name"], workdir=data.get("workdir"), params=data.get("params"),
                  description=data.get("description", ""))
        cluster = data.get("cluster") or {}
        if not isinstance(cluster, Mapping):
            raise ValidationError(f"{source}: 'cluster' must be a mapping, got {type(cluster).__name__}")
        exp.cluster = dict(cluster)
        tasks = data.get("tasks") or []
        if not isinstance(tasks, list):
            raise ValidationError(f"{source}: 'tasks' must be a list, got {type(tasks).__name__}")
        exp.add_tasks(task_from_dict(spec, where=f"{source}: tasks[{i}]") for i, spec in enumerate(tasks))
        return exp

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> Experiment:
        """Load an experiment from a YAML file path, or from YAML text.

        From a file, a relative ``workdir`` is taken relative to the file's directory.
        """
        where, base = "experiment YAML", None
        if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                                and source.endswith((".yaml", ".yml"))):
            where, base = os.fspath(source), Path(source).resolve().parent
            try:
                text = Path(source).read_text()
            except OSError as e:
                raise ValidationError(f"cannot read experiment file {where}: {e.strerror}") from None
        else:
            text = source
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValidationError(f"{where}: not valid YAML: {e}") from None
        exp = cls.from_dict(data, source=where)
        if base is not None and not os.path.isabs(exp.workdir):
            exp.workdir = os.path.normpath(base / exp.workdir)  # relative to the file, not the shell
        return exp


def task_from_dict(spec: Any, *, where: str = "task") -> Task:
    """Build a task from its plain-data form: ``{"type": "shell"|"python", "name": ..., ...}``."""
    if not isinstance(spec, Mapping):
        raise TaskDefinitionError(f"{where}: expected a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("type", "shell" if "commands" in spec else "python" if "func" in spec else None)
    if kind not in TASK_TYPES:
        raise TaskDefinitionError(f"{where}: 'type' must be one of {sorted(set(TASK_TYPES))}, got {kind!r}")
    name = spec.pop("name", None)
    if "condition" in spec and isinstance(spec["condition"], str):
        spec["condition"] = resolve_ref(spec["condition"], f"{where}: condition")
    cls = TASK_TYPES[kind]
    required = "commands" if cls is LocalTask else "func"
    allowed = _BASE_FIELDS | ({required} if cls is LocalTask else {required, "isolated"})
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TaskDefinitionError(f"{where} ({name!r}): unknown field {key!r}{hint}; a {kind} task takes "
                                      f"name, {', '.join(sorted(allowed))}")
    if required not in spec:
        raise TaskDefinitionError(f"{where} ({name!r}): a {kind} task needs {required!r}")
    return cls(name, **spec)  # type: ignore[arg-type]


_BASE_FIELDS = frozenset({"deps", "kwargs", "timeout", "retries", "priority", "resources", "condition", "cwd",
                          "env", "inputs", "outputs"})
