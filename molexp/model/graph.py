"""``TaskGraph``: the DAG of tasks. Validation, topological order, layers, critical path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..gc_pause import gc_paused
from ..errors import CycleError, GraphError, TaskDefinitionError
from .task import Task


class TaskGraph:
    """A directed acyclic graph of tasks, keyed by task name.

    ``add_task(task, dependencies=[...])`` takes Task objects or names; the dependencies are added to the
    task's own ``deps``. ``validate()`` (called by every executor before anything runs) raises
    ``GraphError`` for a missing or self dependency and ``CycleError`` naming the cycle.
    """

    def __init__(self, tasks: Iterable[Task] = ()):
        self._tasks: dict[str, Task] = {}
        self._order: list[str] | None = None
        self._dependents: dict[str, list[str]] | None = None
        self.add_tasks(tasks)

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Add every task of ``tasks`` (a list, or a generator that makes them). The cyclic garbage collector
        is paused while they are added (Python would otherwise scan the growing graph again and again), not
        while a generator of yours makes them: it runs first, with the collector as you left it (100,000 tasks
        from a generator: 0.73-0.79 s with the generator paused too, 1.0-1.5 s this way, loaded machine)."""
        if not isinstance(tasks, (list, tuple)):
            tasks = list(tasks)
        with gc_paused():
            for t in tasks:
                self.add_task(t)

    def add_task(self, task: Task, dependencies: Iterable[str | Task] | None = None) -> Task:
        """Add ``task``; ``dependencies`` (names or tasks) are appended to its ``deps``. Returns the task."""
        if not isinstance(task, Task):
            raise TaskDefinitionError(f"add_task expects a Task, got {type(task).__name__}: {task!r}")
        if task.name in self._tasks:
            raise GraphError(f"duplicate task name {task.name!r}: task names must be unique in a graph")
        if dependencies is not None:
            if isinstance(dependencies, (str, Task)):
                dependencies = [dependencies]
            for d in dependencies:
                dep = d.name if isinstance(d, Task) else d
                if not isinstance(dep, str) or not dep:
                    raise TaskDefinitionError(
                        f"task {task.name!r}: a dependency must be a task name or a Task, got {d!r}")
                if dep not in task.deps:
                    task.deps.append(dep)
        self._tasks[task.name] = task
        self._order = self._dependents = None
        return task

    # -- mapping-like access ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def tasks(self) -> dict[str, Task]:
        """The tasks by name, in insertion order."""
        return self._tasks

    def dependents(self) -> dict[str, list[str]]:
        """name -> names of the tasks that depend on it (computed once per validated graph; do not modify)."""
        if self._dependents is not None and self._order is not None and len(self._order) == len(self._tasks):
            return self._dependents
        out: dict[str, list[str]] = {n: [] for n in self._tasks}
        for t in self._tasks.values():
            for d in t.deps:
                if d in out:
                    out[d].append(t.name)
        self._dependents = out
        return out

    # -- validation and order -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``GraphError``/``CycleError`` if the graph cannot run; cheap once validated."""
        self.topological_order()

    def topological_order(self) -> list[str]:
        """Task names, every task after all of its dependencies: the insertion order when every task was added
        after its dependencies, else the order in which they become ready (ties keep insertion order)."""
        if self._order is not None and len(self._order) == len(self._tasks):
            return self._order
        with gc_paused():
            order = self._insertion_order()
            if order is None:
                order = self._kahn_order()
        self._order = order
        return order

    def _insertion_order(self) -> list[str] | None:
        """The insertion order if every task comes after its dependencies (the usual way graphs are built:
        one pass, no per-task structures); None otherwise."""
        seen: set[str] = set()
        add = seen.add
        for name, t in self._tasks.items():
            for d in t.deps:
                if d not in seen:
                    return None
            add(name)
        return list(self._tasks)

    def _kahn_order(self) -> list[str]:
        tasks = self._tasks
        indegree: dict[str, int] = {}
        dependents: dict[str, list[str]] = {n: [] for n in tasks}
        for name, t in tasks.items():   # one pass: check every edge and build the dependents
            for d in t.deps:
                after = dependents.get(d)
                if after is None or d == name:
                    if d == name:
                        raise GraphError(f"task {name!r} depends on itself")
                    raise GraphError(f"task {name!r} depends on {d!r}, which is not in the graph"
                                     + _did_you_mean(d, tasks))
                after.append(name)
            indegree[name] = len(t.deps)
        self._dependents = dependents
        ready = [n for n, k in indegree.items() if k == 0]
        order: list[str] = []
        i = 0
        while i < len(ready):
            n = ready[i]
            i += 1
            order.append(n)
            for m in dependents[n]:
                indegree[m] -= 1
                if indegree[m] == 0:
                    ready.append(m)
        if len(order) != len(tasks):
            cycle = self._find_cycle({n for n, k in indegree.items() if k > 0})
            raise CycleError("dependency cycle: " + " -> ".join(cycle), cycle)
        return order

    def _find_cycle(self, remaining: set[str]) -> list[str]:
        # Every node left has a dependency that is also left: walk them until a node repeats.
        start = next(n for n in self._tasks if n in remaining)
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(d for d in self._tasks[node].deps if d in remaining)
        cycle = path[seen[node]:] + [node]
        cycle.reverse()  # show it in execution direction: a -> b means b runs after a
        return cycle

    def needed_by(self, names: Iterable[str]) -> TaskGraph:
        """The graph of ``names`` and every task they need (their ancestors), in this graph's order.
        ``GraphError`` names a task that is not in the graph."""
        wanted: set[str] = set()
        stack = []
        for n in names:
            if n not in self._tasks:
                raise GraphError(f"target {n!r} is not a task of this graph" + _did_you_mean(n, self._tasks))
            stack.append(n)
        while stack:
            n = stack.pop()
            if n not in wanted:
                wanted.add(n)
                stack.extend(self._tasks[n].deps)
        sub = TaskGraph(t for n, t in self._tasks.items() if n in wanted)
        if hasattr(self, "name"):
            sub.name = self.name  # type: ignore[attr-defined]
        return sub

    def layers(self) -> list[list[str]]:
        """Groups of tasks that can run at the same time: layer k's tasks depend only on earlier layers."""
        depth: dict[str, int] = {}
        for n in self.topological_order():
            deps = self._tasks[n].deps
            depth[n] = 1 + max((depth[d] for d in deps), default=-1)
        out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for n, k in depth.items():
            out[k].append(n)
        return out

    def critical_path_lengths(self) -> dict[str, int]:
        """name -> number of tasks on the longest path from it to the end of the graph (itself included)."""
        from ..state.durations import critical_path

        return critical_path(self.topological_order(), self.dependents(), {})  # type: ignore[return-value]

    # -- molexp v2's names (each a thin layer over the methods above) ------------------------------------
    def topological_sort(self) -> list[str]:
        """Task names, each after its dependencies (``topological_order()``); raises ``GraphError`` /
        ``CycleError`` for a graph that cannot run."""
        return list(self.topological_order())

    def validate_dependencies(self) -> bool:
        """``validate()``: raises ``GraphError`` (missing or self dependency) or ``CycleError``; True otherwise."""
        self.validate()
        return True

    def has_cycle(self) -> bool:
        """True when the dependencies form a cycle (``validate()`` would raise ``CycleError``). A missing
        dependency is not a cycle: it raises ``GraphError``."""
        try:
            self.topological_order()
        except CycleError:
            return True
        return False

    def _known(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except (KeyError, TypeError):
            raise GraphError(f"no task {name!r} in this graph" + _did_you_mean(str(name), self._tasks)) from None

    def get_dependencies(self, name: str) -> list[str]:
        """Names of the tasks ``name`` depends on directly; ``GraphError`` if there is no such task."""
        return list(self._known(name).deps)

    def get_dependents(self, name: str) -> list[str]:
        """Names of the tasks that depend directly on ``name``; ``GraphError`` if there is no such task."""
        self._known(name)
        return list(self.dependents().get(name, []))

    def get_all_dependencies(self, name: str) -> set[str]:
        """Every task ``name`` needs, directly or not (its ancestors, itself excluded)."""
        return set(self.needed_by([self._known(name).name]).tasks) - {name}

    def get_all_dependents(self, name: str) -> set[str]:
        """Every task that needs ``name``, directly or not (its descendants, itself excluded)."""
        self._known(name)
        dependents = self.dependents()
        found: set[str] = set()
        stack = list(dependents.get(name, []))
        while stack:
            n = stack.pop()
            if n not in found:
                found.add(n)
                stack.extend(dependents.get(n, []))
        return found

    def get_ready_tasks(self, done: Iterable[str] = ()) -> list[str]:
        """Names of the tasks not in ``done`` whose dependencies are all in ``done``, in insertion order."""
        if isinstance(done, str):
            done = [done]
        finished = set(done)
        for n in finished:
            self._known(n)
        return [n for n, t in self._tasks.items() if n not in finished and all(d in finished for d in t.deps)]

    def __repr__(self) -> str:
        return f"<TaskGraph {len(self._tasks)} tasks>"


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
