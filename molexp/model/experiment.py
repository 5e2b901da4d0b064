"""``Experiment`` (a named set of tasks with a workdir and parameters), ``TaskPool``, and YAML io."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


from ..errors import SweepError, TaskDefinitionError, ValidationError
from .graph import TaskGraph
from .params import ParamSpace, _axis_from_data, sampler_from_spec, sweep
from .task import LocalTask, PythonTask, Task, dump_yaml, load_yaml, task_from_dict


log = logging.getLogger("molexp")


class TaskPool(TaskGraph):
    """A named, ordered collection of tasks (dependencies allowed), e.g. for ``BatchExecutor.execute``.

    ``TaskPool("my_pool")`` (the name first, as in molexp v2) or ``TaskPool([task, ...], name="my_pool")``;
    ``tasks=`` gives the tasks by keyword. Being a ``TaskGraph``, it validates and orders them too.
    """

    def __init__(self, name_or_tasks: str | Iterable[Task] | None = None, /, tasks: Iterable[Task] = (), *,
                 name: str | None = None):
        first = name_or_tasks
        if first is None or isinstance(first, str):
            if first is not None and name is not None and name != first:
                raise TaskDefinitionError(f"TaskPool: two names given, {first!r} and name={name!r}")
            pool_name = first if first is not None else name
        else:   # TaskPool([task, ...], name=...): the tasks first
            if tasks:
                raise TaskDefinitionError("TaskPool: give the tasks once (first, or as tasks=), not both")
            pool_name, tasks = name, first
        pool_name = "pool" if pool_name is None else pool_name
        if not isinstance(pool_name, str) or not pool_name.strip():
            raise TaskDefinitionError(f"TaskPool: name must be a non-empty string, got {pool_name!r}")
        super().__init__(tasks)
        self.name = pool_name

    def task_count(self) -> int:
        """How many tasks the pool holds (``len(pool)``)."""
        return len(self)

    def get_task(self, name: str) -> Task | None:
        """The task called ``name``, or None when there is none (``pool[name]`` raises instead)."""
        return self.tasks.get(name)

    def list_tasks(self) -> list[str]:
        """The task names, in the order they were added."""
        return list(self.tasks)

    def remove_task(self, name: str) -> Task:
        """Remove and return the task ``name``; ``GraphError`` if there is none. Tasks that depended on it
        keep the dependency (``validate()`` then names it as missing)."""
        task = self._known(name)
        del self._tasks[name]
        self._order = self._dependents = None
        return task

    def update_task(self, task: Task) -> None:
        """Replace the task of the same name by ``task``; ``GraphError`` if the pool has no such task."""
        if not isinstance(task, Task):
            raise TaskDefinitionError(f"update_task expects a Task, got {type(task).__name__}: {task!r}")
        self._known(task.name)
        self._tasks[task.name] = task
        self._order = self._dependents = None

    def get_tasks_by_deps(self, dependency: str) -> list[str]:
        """Names of the tasks that depend directly on ``dependency`` (``get_dependents``)."""
        return self.get_dependents(dependency)

    def to_dict(self) -> dict[str, Any]:
        """The pool as plain data: ``{"name": ..., "tasks": [task dicts, each with its type]}``."""
        return {"name": self.name, "tasks": [t.to_dict() for t in self]}

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The pool as YAML text (each task keeps its type); also written to ``path`` when given."""
        return dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> TaskPool:
        """A pool from a YAML file path or YAML text: ``to_yaml``'s form, or molexp v2's (``tasks`` a
        mapping of name -> task)."""
        data, where, base = load_yaml(source, "task pool YAML")
        if not isinstance(data, Mapping) or "tasks" not in data:
            raise ValidationError(f"{where}: expected a mapping with 'name' and 'tasks', got "
                                  f"{type(data).__name__ if not isinstance(data, Mapping) else sorted(data)}")
        unknown = set(data) - {"name", "tasks"}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {sorted(unknown)}; a task pool has name and tasks")
        return cls(data.get("name") or "pool", _tasks_from_data(data["tasks"], where, base, notes=[]))

    def __repr__(self) -> str:
        return f"<TaskPool {self.name!r}: {len(self)} tasks>"


class Experiment:
    """A named workflow: tasks with dependencies, a working directory and default parameters.

    ``workdir`` (default: the current directory) is where shell tasks run unless they set ``cwd``, and
    where molexp keeps per-task logs (``.molexp/<name>/logs/``). ``params`` are default run parameters,
    overridden by ``run(params=...)``. ``description`` (alias ``readme``, molexp v2's name) is free text.
    The tasks live in ``graph``, a ``TaskPool`` (also ``get_task_pool()``).
    """

    def __init__(self, name: str, *, workdir: str | os.PathLike | None = None,
                 params: Mapping[str, Any] | None = None, description: str | None = None,
                 tasks: Iterable[Task] = (), readme: str | None = None):
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
        if readme is not None and description is not None and readme != description:
            raise ValidationError(f"experiment {name!r}: give description= or readme= (the same thing), not both")
        text = readme if readme is not None else description if description is not None else ""
        if not isinstance(text, str):
            raise ValidationError(f"experiment {name!r}: description (readme) must be a string, got "
                                  f"{type(text).__name__}")
        self.description = text
        self.cluster: dict[str, Any] = {}  # where `molexp run` runs it (see molexp.backends.cluster.make_cluster)
        self.graph: TaskGraph = TaskPool(f"{name}_tasks", tasks)

    @property
    def readme(self) -> str:
        """molexp v2's name for ``description``."""
        return self.description

    @readme.setter
    def readme(self, text: str) -> None:
        self.description = text

    def get_task_pool(self) -> TaskGraph:
        """The experiment's tasks (its ``graph``, a ``TaskPool``): adding to it adds to the experiment."""
        return self.graph

    def set_task_pool(self, pool: TaskGraph | Iterable[Task]) -> None:
        """Make ``pool`` (a ``TaskPool``, ``TaskGraph`` or list of tasks) the experiment's tasks, replacing
        those it had."""
        if isinstance(pool, TaskGraph):
            self.graph = pool
            return
        if isinstance(pool, (str, bytes, Mapping)) or not isinstance(pool, Iterable):
            raise ValidationError(f"experiment {self.name!r}: set_task_pool expects a TaskPool, TaskGraph or list "
                                  f"of tasks, got {type(pool).__name__}")
        self.graph = TaskPool(f"{self.name}_tasks", pool)

    def get_execution_order(self) -> list[str]:
        """Task names in an order that runs each after its dependencies (``graph.topological_sort()``)."""
        return self.graph.topological_sort()

    def validate_experiment(self) -> None:
        """Check the tasks can run (``graph.validate()``): ``GraphError`` for a missing or self dependency or
        a duplicate, ``CycleError`` naming a cycle."""
        self.graph.validate()

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
            if isinstance(t, LocalTask):
                what = "; ".join(t.commands)
            elif isinstance(t, PythonTask):
                what = getattr(t.func, "__qualname__", str(t.func))
            else:   # a plain Task: a described step, nothing to run
                what = t.description or "(nothing to run)"
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
        return dump_yaml(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "experiment",
                  base: str | os.PathLike | None = None) -> Experiment:
        """Build an experiment from plain data (the shape ``to_dict`` returns, or molexp v2's: ``readme``,
        ``task_pool``). ``base``: the directory of the file it came from, where ``func: module:function``
        modules are looked for first."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"{source}: expected a mapping with 'name' and 'tasks', got {type(data).__name__}")
        notes: list[str] = []
        pool_name = None
        if "readme" in data or "task_pool" in data:
            data, pool_name = _from_v2(data, source, notes)
        if "sweep" in data:
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
        if pool_name:
            exp.graph.name = pool_name
        exp.add_tasks(_tasks_from_data(data.get("tasks") or [], source, base, notes))
        if notes:   # once per file: what was read as what
            log.warning("molexp: %s is a molexp v2 file; converted %s. Write it in this version's form with "
                        "Experiment.from_yaml(...).to_yaml(path)", source, "; ".join(notes))
        return exp

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> Experiment:
        """Load an experiment from a YAML file path, or from YAML text (this version's form, or molexp v2's).

        From a file, a relative ``workdir`` is taken relative to the file's directory, and a Python task's
        ``func: analysis:summarize`` imports ``analysis.py`` from that directory when it is there.
        """
        data, where, base = load_yaml(source, "experiment YAML")
        exp = cls.from_dict(data, source=where, base=base)
        if base is not None and not os.path.isabs(exp.workdir):
            exp.workdir = os.path.normpath(Path(base) / exp.workdir)  # relative to the file, not the shell
        return exp


def _tasks_from_data(tasks: Any, source: str, base: str | None, notes: list[str]) -> Iterable[Task]:
    """The tasks of a ``tasks:`` list (this version) or mapping name -> task (molexp v2)."""
    if isinstance(tasks, Mapping):   # v2: {name: {name: ..., ...}}
        specs = []
        for key, spec in tasks.items():
            if isinstance(spec, Mapping):
                spec = {"name": key, **{k: v for k, v in spec.items() if v is not None}}
            specs.append(spec)
        notes.append("tasks from a mapping of name -> task")
        return [task_from_dict(spec, where=f"{source}: tasks[{spec.get('name')!r}]" if isinstance(spec, Mapping)
                               else f"{source}: tasks", base=base, v2=True) for spec in specs]
    if not isinstance(tasks, list):
        raise ValidationError(f"{source}: 'tasks' must be a list, got {type(tasks).__name__}")
    return (task_from_dict(spec, where=f"{source}: tasks[{i}]", base=base) for i, spec in enumerate(tasks))


def _from_v2(data: Mapping[str, Any], source: str, notes: list[str]) -> tuple[dict[str, Any], str | None]:
    """molexp v2's experiment data (``readme``, ``task_pool: {name, tasks: {name: task}}``) in this form,
    and the pool's name."""
    data, pool_name = dict(data), None
    if "readme" in data:
        readme = data.pop("readme")
        if "description" in data and readme not in (None, "", data["description"]):
            raise ValidationError(f"{source}: give description or readme (the same thing), not both")
        if readme:
            data.setdefault("description", readme)
        notes.append("readme -> description")
    if "task_pool" in data:
        pool = data.pop("task_pool")
        if "tasks" in data:
            raise ValidationError(f"{source}: give tasks or task_pool (molexp v2's form), not both")
        if pool is not None:
            if not isinstance(pool, Mapping) or not set(pool) <= {"name", "tasks"}:
                raise ValidationError(f"{source}: task_pool must be a mapping with name and tasks, got {pool!r}")
            data["tasks"] = pool.get("tasks") or []
            pool_name = pool.get("name")
        notes.append("task_pool -> tasks")
    return data, pool_name


def expand_sweep(data: Mapping[str, Any], *, source: str = "experiment") -> dict[str, Any]:
    """Experiment data with a ``sweep:`` section -> the same data with the tasks swept and ``sweep`` removed.

    ::

        sweep:
          sampler: cartesian              # default; or {random: {n: 4, seed: 1}}
          params: {temperature: [300, 350], rate: {loguniform: [0.001, 0.1]}}
          # or, instead of sampler + params, explicit sets:
          # sets: [{temperature: 300, pressure: 1}, {temperature: 350, pressure: 5}]

    Data without ``sweep`` comes back as a copy. Every key but ``params``, ``tasks`` and ``sweep`` is kept as is.
    ``source`` (a file name) prefixes errors in the tasks, as in ``Experiment.from_dict``.
    """
    if not isinstance(data, Mapping) or "sweep" not in data:
        return dict(data) if isinstance(data, Mapping) else data  # type: ignore[return-value]
    section = data["sweep"]
    if not isinstance(section, Mapping):
        raise SweepError(f"{source}: sweep: expected a mapping with 'params' (and 'sampler') or 'sets', "
                         f"got {section!r}")
    unknown = set(section) - {"params", "sampler", "sets"}
    if unknown:
        raise SweepError(f"sweep: unknown key(s) {sorted(map(str, unknown))}; expected params, sampler, sets")
    if ("params" in section) == ("sets" in section):
        raise SweepError("sweep: give either 'params' (axes, with an optional 'sampler') or 'sets' (a list of "
                         "parameter sets)")
    if "sets" in section:
        if "sampler" in section:
            raise SweepError("sweep: 'sampler' applies to 'params', not to explicit 'sets'")
        space: Any = section["sets"]
        if not isinstance(space, list):
            raise SweepError(f"sweep: sets: expected a list of mappings, got {space!r}")
        sampler = None
    else:
        axes = section["params"]
        if not isinstance(axes, Mapping) or not axes:
            raise SweepError(f"sweep: params: expected a mapping of name -> values, got {axes!r}")
        space = ParamSpace([_axis_from_data(k, v) for k, v in axes.items()])
        sampler = sampler_from_spec(section.get("sampler"))
    rest = {k: v for k, v in data.items() if k != "sweep"}
    swept = sweep(Experiment.from_dict(rest, source=source), space, sampler)
    out = dict(rest)
    out.pop("params", None)
    if swept.params:
        out["params"] = dict(swept.params)
    out["tasks"] = [t.to_dict() for t in swept.graph]
    return out
