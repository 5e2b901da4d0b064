"""Parameter sweeps: a ``ParamSpace`` of axes, samplers that draw parameter sets from it, and ``sweep()``,
which copies an experiment's tasks once per parameter set into ONE new experiment (one DAG, one run).

Copies are named ``<task>[<name>=<value>,...]`` (axes in the space's order), e.g.
``simulate[temperature=300,pressure=1]``. The name alone says which set a copy belongs to, so
``param_sets()``, ``copies()`` and ``group_results()`` work on any swept experiment, including one loaded
from YAML. Values are written as Python writes them (``300``, ``0.5``, ``1e-05``, ``True``, ``None``);
strings as themselves, percent-encoding every character but letters, digits and ``-_.+`` (``"NPT run"`` ->
``NPT%20run``), and quoted (``%27300%27``) when they would read back as a number, bool or None. Names hold
no ``/ \\ : * ? " < > |`` and no spaces: they are valid file names on Linux, macOS and Windows.

A task is copied when it uses a swept parameter (a shell task mentions ``$name``/``${name}`` in a
command; a Python task's function has a parameter of that name, or the task's ``kwargs`` has it) or when
it depends, directly or not, on a copied task. Every other task runs ONCE, shared by all the copies, under
its own name. Each copy gets its set's values in its ``kwargs`` (a Python task only those it takes) and
the swept names are removed from the new experiment's ``params``, so the sweep's values win over the
experiment's defaults; ``run(params=...)`` naming a swept parameter would still override every copy.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import SweepError
from .files import groups
from .space import (
    CartesianSampler,
    CombinationSampler,
    RandomSampler,
    Sampler,
    sampler_from_spec,
)
from .space import (  # noqa: F401
    _IDENT,
    LogUniform,
    Param,
    ParamSet,
    ParamSpace,
    Uniform,
    _check_value,
    copy_name,
    split_name,
)
from .task import _PLACEHOLDER, LocalTask, PythonTask, Task

__all__ = [
    "CartesianSampler", "CombinationSampler", "LogUniform", "Param", "ParamSet", "ParamSpace", "RandomSampler",
    "Sampler", "SweepError", "Uniform", "copies", "copy_name", "group_results", "param_sets",
    "sampler_from_spec", "split_name", "sweep",
]

_ALL = "[*]"   # `deps: [simulate[*]]`: every copy of the swept task `simulate`

# -- sweeping an experiment ------------------------------------------------------------------------

def _param_sets(space: Any, sampler: Any) -> list[ParamSet]:
    if isinstance(sampler, CombinationSampler):
        raise SweepError("CombinationSampler draws groups of r parameter sets, not parameter sets: sweep with "
                         "CartesianSampler or RandomSampler, or over the sets of one group")
    if isinstance(space, ParamSpace) or isinstance(space, Mapping):
        space = space if isinstance(space, ParamSpace) else ParamSpace(space)
        sets = space.sample(sampler)
    else:
        if sampler is not None:
            raise SweepError("a sampler applies to a ParamSpace, not to a list of parameter sets")
        if isinstance(space, (str, bytes)) or not isinstance(space, Sequence):
            raise SweepError(f"sweep expects a ParamSpace, a mapping of name -> values or a list of parameter "
                             f"sets, got {type(space).__name__}")
        sets = list(space)
    if not sets:
        raise SweepError("the sweep has no parameter sets")
    out: list[ParamSet] = []
    seen: set[ParamSet] = set()   # (a set: a list's ``in`` made 10,000 sets take a minute)
    names: list[str] | None = None
    for i, s in enumerate(sets):
        if not isinstance(s, Mapping) or not s:
            raise SweepError(f"parameter set {i} must be a non-empty mapping of name -> value, got {s!r}")
        for k, v in s.items():
            if not isinstance(k, str) or not _IDENT.fullmatch(k):
                raise SweepError(f"parameter name {k!r} is not an identifier (letters, digits and _, not starting "
                                 "with a digit), so it cannot be a $template variable or a keyword argument")
            _check_value(v, f"parameter set {i}, {k!r}")
        if names is None:
            names = list(s)
        elif set(s) != set(names):
            raise SweepError(f"parameter set {i} has names {sorted(s)}, but set 0 has {sorted(names)}: every set "
                             "must give the same parameters")
        p = ParamSet((n, s[n]) for n in names)
        if p in seen:
            raise SweepError(f"parameter set {dict(p)!r} is given twice")
        seen.add(p)
        out.append(p)
    return out


def _uses(t: Task, names: Iterable[str]) -> set[str]:
    """The swept names that reach task ``t``: $placeholders of a shell task, arguments of a Python task."""
    names = set(names)
    # a task whose file paths name a swept parameter (outputs: "mapped/${sample}.bam") is copied too
    paths = [p for declared in (t.inputs, t.outputs) for _, ps in groups(declared) for p in ps]
    used = {m.group(2) or m.group(3) for p in paths for m in _PLACEHOLDER.finditer(p)}
    if isinstance(t, LocalTask):
        used |= {m.group(2) or m.group(3) for c in t.commands for m in _PLACEHOLDER.finditer(c)}
        return names & used
    if isinstance(t, PythonTask):
        accepted, _ = t.accepts()
        return names & (set(accepted) | set(t.kwargs) | used)
    return names & used


def sweep(experiment: Any, space: ParamSpace | Mapping[str, Any] | Sequence[Mapping[str, Any]],
          sampler: Sampler | str | Mapping | None = None, *, name: str | None = None) -> Any:
    """A new ``Experiment`` running ``experiment``'s tasks once per parameter set, as one DAG.

    ``space`` is a ``ParamSpace`` (or a mapping of name -> values) sampled by ``sampler`` (default: every
    combination), or a list of parameter-set dicts. See the module docstring for names, sharing and
    precedence. The original experiment is not changed. Raises ``SweepError`` for a bad space or set, a
    parameter no task uses, or a task name that already looks like a copy's.
    """
    if not all(hasattr(experiment, a) for a in ("graph", "params", "workdir", "description")) \
            or not hasattr(type(experiment), "from_dict"):   # an Experiment (not imported here: it imports this)
        raise SweepError(f"sweep expects an Experiment, got {type(experiment).__name__}")
    sets = _param_sets(space, sampler)
    swept = list(sets[0])
    tasks = list(experiment.graph)
    for t in tasks:
        if split_name(t.name)[1] is not None:
            raise SweepError(f"task {t.name!r} is named like a swept copy (name[a=1,...]): rename it, or sweep "
                             "over one combined space instead of sweeping a swept experiment")
    uses = {t.name: _uses(t, swept) for t in tasks}
    unused = [n for n in swept if not any(n in u for u in uses.values())]
    if unused:
        raise SweepError(f"sweep parameter(s) {unused} are not used by any task of {experiment.name!r} (shell "
                         "tasks use $name in a command; Python tasks take it as an argument or in kwargs)")
    graph = experiment.graph
    if any(d.endswith(_ALL) for t in tasks for d in t.deps):   # `name[*]`: order by `name`
        from .graph import TaskGraph

        graph = TaskGraph(_clone(t, t.name, [d[:-len(_ALL)] if d.endswith(_ALL) else d for d in t.deps], t.kwargs)
                          for t in tasks)
    order = graph.topological_order()
    expanded: set[str] = set()
    for n in order:
        if uses[n] or any(d in expanded for d in experiment.graph[n].deps):
            expanded.add(n)

    def deps_of(t: Task, p: ParamSet | None) -> list[str]:
        out: list[str] = []
        for d in t.deps:
            if d.endswith(_ALL):    # every copy of a swept task (a gather step), or the task itself
                base = d[:-len(_ALL)]
                out += [copy_name(base, q) for q in sets] if base in expanded else [base]
            else:
                out.append(copy_name(d, p) if p is not None and d in expanded else d)
        return out

    new = type(experiment)(name if name is not None else experiment.name, workdir=experiment.workdir,
                     params={k: v for k, v in experiment.params.items() if k not in swept},
                     description=experiment.description)
    def copies():
        for t in tasks:
            if t.name not in expanded:
                yield _clone(t, t.name, deps_of(t, None), t.kwargs)
                continue
            for p in sets:
                kwargs = dict(t.kwargs)
                give = swept if isinstance(t, LocalTask) else uses[t.name]
                kwargs.update((k, p[k]) for k in swept if k in give)
                yield _clone(t, copy_name(t.name, p), deps_of(t, p), kwargs)

    new.add_tasks(copies())
    new.graph.validate()
    return new


def _clone(t: Task, name: str, deps: list[str], kwargs: Mapping[str, Any]) -> Task:
    c = _copy.copy(t)
    c.name, c.deps, c.kwargs = name, list(deps), dict(kwargs)
    c.resources, c.env = dict(t.resources), dict(t.env)
    c.inputs, c.outputs = _own(t.inputs), _own(t.outputs)
    if isinstance(c, LocalTask):
        c.commands = list(t.commands)
    return c


def _own(declared: list | dict) -> list | dict:
    """A copy of a checked file declaration (``model.files.declare``: a list of paths, or a dict name -> path
    or list of paths) that shares nothing mutable with it: ``copy.deepcopy`` without its cost (3 us a list)."""
    if declared.__class__ is list:
        return list(declared)
    return {k: v if v.__class__ is str else list(v) for k, v in declared.items()}


# -- reading a swept experiment and its results -----------------------------------------------------

def _task_names(source: Any) -> list[str]:
    if hasattr(source, "graph"):
        return list(source.graph.tasks)
    if isinstance(source, Mapping):
        return list(source)
    return [t if isinstance(t, str) else t.name for t in source]


def param_sets(experiment: Any) -> list[ParamSet]:
    """The parameter sets of a swept experiment (or of its ``Results``), in the order they were swept."""
    out: dict[ParamSet, None] = {}
    for n in _task_names(experiment):
        p = split_name(n)[1]
        if p is not None:
            out.setdefault(p)
    if not out:
        raise SweepError("no swept tasks here (no task is named like 'name[param=value,...]')")
    return list(out)


def copies(experiment: Any, task_name: str) -> dict[ParamSet, str]:
    """``{parameter set: name of the copy}`` of the original task ``task_name`` in a swept experiment
    (every set maps to ``task_name`` itself when the task is shared). For fan-in tasks added after a sweep."""
    names = _task_names(experiment)
    sets = param_sets(experiment)
    if task_name in names:
        return {p: task_name for p in sets}
    found = {p: n for n in names for base, p in [split_name(n)] if p is not None and base == task_name}
    if not found:
        raise SweepError(f"no task {task_name!r} and no copy of it in this swept experiment")
    return found


def group_results(results: Mapping[str, Any], experiment: Any = None) -> dict[ParamSet, dict[str, Any]]:
    """``{ParamSet: {original task name: TaskResult}}``: one group per parameter set, holding its copies and
    the shared tasks. ``experiment`` (the swept one) fixes the order and includes sets absent from ``results``."""
    sets = param_sets(experiment if experiment is not None else results)
    groups: dict[ParamSet, dict[str, Any]] = {p: {} for p in sets}
    for n, r in results.items():
        base, p = split_name(n)
        if p is None:
            for g in groups.values():
                g[base] = r
        elif p in groups:
            groups[p][base] = r
    return groups


# -- the ``sweep:`` section of an experiment file --------------------------------------------------

def _axis_from_data(name: Any, spec: Any) -> Param:
    if isinstance(spec, Mapping):
        if len(spec) != 1:
            raise SweepError(f"sweep: params: {name}: expected a list of values, {{uniform: [low, high]}} or "
                             f"{{loguniform: [low, high]}}, got {dict(spec)!r}")
        kind, args = next(iter(spec.items()))
        dists = {"uniform": Uniform, "loguniform": LogUniform}
        if kind not in dists:
            raise SweepError(f"sweep: params: {name}: unknown distribution {kind!r}; expected uniform or loguniform")
        options: dict[str, Any] = {}
        if isinstance(args, Mapping):
            options = dict(args)
            try:
                args = [options.pop("low"), options.pop("high")]
            except KeyError as e:
                raise SweepError(f"sweep: params: {name}: {kind} needs low and high, missing {e}") from None
        if not isinstance(args, (list, tuple)) or len(args) != 2:
            raise SweepError(f"sweep: params: {name}: {kind} needs [low, high], got {args!r}")
        try:
            return Param(name, dists[kind](*args, **options))
        except TypeError as e:
            raise SweepError(f"sweep: params: {name}: bad {kind} options {options!r} ({e})") from None
    if not isinstance(spec, list):
        raise SweepError(f"sweep: params: {name}: expected a list of values, got {spec!r}")
    return Param(name, spec)
