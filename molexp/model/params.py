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
import itertools
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from ..errors import SweepError
from ..state.files import groups
from .task import _PLACEHOLDER, LocalTask, PythonTask, Task

__all__ = [
    "CartesianSampler", "LogUniform", "Param", "ParamSet", "ParamSpace", "RandomSampler", "Sampler", "SweepError",
    "Uniform", "copies", "copy_name", "expand_sweep", "group_results", "param_sets",
    "sampler_from_spec",
    "split_name", "sweep",
]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE = "-_.+"
_PAIR = r"[A-Za-z_][A-Za-z0-9_]*=[^,\[\]=]*"
_COPY_NAME = re.compile(rf"(?P<base>.+)\[(?P<label>{_PAIR}(?:,{_PAIR})*)\]", re.S)
_MAX_REDRAWS = 1000
_ALL = "[*]"   # `deps: [simulate[*]]`: every copy of the swept task `simulate`
_NONE = object()


# -- values and their text in task names --------------------------------------------------------------

def _check_value(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise SweepError(f"{where}: a swept value must be a string, number, bool or None, got "
                         f"{type(value).__name__} {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise SweepError(f"{where}: a swept value cannot be NaN")


def _decode(text: str) -> Any:
    text = unquote(text)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        if str(int(text)) == text:
            return int(text)
    except ValueError:
        pass
    try:
        if repr(float(text)) == text:
            return float(text)
    except ValueError:
        pass
    return text


def value_label(value: Any) -> str:
    """How ``value`` is written in a copy's name; ``_decode`` reads it back exactly (type included)."""
    if isinstance(value, str):
        text = quote(value, safe=_SAFE)
        if _decode(text) != value or not isinstance(_decode(text), str):
            text = quote(f"'{value}'", safe=_SAFE)
        return text
    return repr(value) if isinstance(value, float) else str(value)


class ParamSet(Mapping):
    """One parameter set: an immutable, hashable mapping name -> value (equal to a dict of the same items).

    Keys of ``group_results()`` and ``copies()``: ``groups[ParamSet(temperature=300, pressure=1)]``.
    ``label`` is the text in copies' names: ``"temperature=300,pressure=1"``.
    """

    __slots__ = ("_data",)

    def __init__(self, *args: Any, **kwargs: Any):
        self._data = dict(*args, **kwargs)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._data == dict(other.items())

    @property
    def label(self) -> str:
        return ",".join(f"{k}={value_label(v)}" for k, v in self._data.items())

    def __repr__(self) -> str:
        return "ParamSet(" + ", ".join(f"{k}={v!r}" for k, v in self._data.items()) + ")"


def copy_name(task_name: str, params: Mapping[str, Any]) -> str:
    """The name of ``task_name``'s copy for ``params``: ``"simulate[temperature=300,pressure=1]"``."""
    return f"{task_name}[{ParamSet(params).label}]"


def split_name(name: str) -> tuple[str, ParamSet | None]:
    """``"simulate[temperature=300]"`` -> ``("simulate", ParamSet(temperature=300))``; a shared task's
    name -> ``(name, None)``."""
    m = _COPY_NAME.fullmatch(name)
    if m is None:
        return name, None
    pairs = (p.split("=", 1) for p in m.group("label").split(","))
    return m.group("base"), ParamSet((k, _decode(v)) for k, v in pairs)


# -- axes and spaces -------------------------------------------------------------------------------

class Distribution:
    """A continuous axis; only ``RandomSampler`` can draw from it."""

    def __init__(self, low: float, high: float, *, precision: int | None = None):
        for label, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SweepError(f"{type(self).__name__}: {label} must be a finite number, got {v!r}")
        if not low < high:
            raise SweepError(f"{type(self).__name__}: low must be less than high, got low={low!r}, high={high!r}")
        if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int)
                                      or precision < 1):
            raise SweepError(f"{type(self).__name__}: precision (significant digits) must be an integer >= 1, "
                             f"got {precision!r}")
        self.low, self.high, self.precision = low, high, precision

    def draw(self, rng: random.Random) -> float:
        x = self._draw(rng)
        return float(f"{x:.{self.precision}g}") if self.precision else x

    def _draw(self, rng: random.Random) -> float:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        p = f", precision={self.precision}" if self.precision else ""
        return f"{type(self).__name__}({self.low!r}, {self.high!r}{p})"


class Uniform(Distribution):
    """Floats drawn uniformly from ``[low, high)``; ``precision`` rounds them to that many significant digits."""

    def _draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


class LogUniform(Distribution):
    """Floats whose logarithm is uniform in ``[log low, log high)`` (``0 < low < high``): for scales such as
    learning rates or concentrations. ``precision`` rounds to that many significant digits."""

    def __init__(self, low: float, high: float, *, precision: int | None = None):
        super().__init__(low, high, precision=precision)
        if low <= 0:
            raise SweepError(f"LogUniform: low must be > 0, got {low!r}")

    def _draw(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


class Param:
    """One axis: a name (a template-variable name such as ``temperature``) and its values, either a
    non-empty list/tuple/range of strings, numbers, bools or None, or a ``Uniform``/``LogUniform``."""

    def __init__(self, name: str, values: Iterable[Any] | Distribution):
        if not isinstance(name, str) or not _IDENT.fullmatch(name):
            raise SweepError(f"parameter name {name!r} is not an identifier (letters, digits and _, not starting "
                             "with a digit), so it cannot be a $template variable or a keyword argument")
        self.name = name
        if isinstance(values, Distribution):
            self.values: list[Any] | Distribution = values
            return
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise SweepError(f"parameter {name!r}: values must be a list of values or Uniform/LogUniform, got "
                             f"{type(values).__name__} {values!r}")
        values = list(values)
        if not values:
            raise SweepError(f"parameter {name!r}: the list of values is empty")
        labels: dict[str, Any] = {}
        for i, v in enumerate(values):
            _check_value(v, f"parameter {name!r}, value {i}")
            same = next((w for w in values[:i] if w == v), labels.get(value_label(v), _NONE))
            if same is not _NONE:
                raise SweepError(f"parameter {name!r}: value {v!r} is listed twice" if repr(same) == repr(v) else
                                 f"parameter {name!r}: values {same!r} and {v!r} cannot both be swept (they are "
                                 "equal, or read the same in task names)")
            labels[value_label(v)] = v
        self.values = values

    @property
    def continuous(self) -> bool:
        return isinstance(self.values, Distribution)

    @property
    def size(self) -> float:
        return math.inf if self.continuous else len(self.values)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and (self.name, self.values) == (other.name, other.values)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.values!r})"


class ParamSpace:
    """The axes of a sweep, in order: ``ParamSpace(temperature=[300, 350], pressure=[1, 2, 5])``,
    ``ParamSpace({"temperature": [300, 350]})`` or ``ParamSpace([Param("rate", LogUniform(1e-4, 1e-1))])``.

    ``sample(sampler)`` returns the parameter sets as a list of dicts (default: every combination).
    """

    def __init__(self, axes: Mapping[str, Any] | Iterable[Param] | None = None, /, **more: Any):
        params: list[Param] = []
        if isinstance(axes, Mapping):
            params += [Param(k, v) for k, v in axes.items()]
        elif axes is not None:
            if isinstance(axes, (str, bytes)) or not isinstance(axes, Iterable):
                raise SweepError(f"ParamSpace expects a mapping of name -> values or a list of Param, got "
                                 f"{type(axes).__name__}")
            for p in axes:
                if not isinstance(p, Param):
                    raise SweepError(f"ParamSpace expects Param objects in a list, got {p!r}")
                params.append(p)
        params += [Param(k, v) for k, v in more.items()]
        if not params:
            raise SweepError("the parameter space has no axes: give at least one name -> values")
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise SweepError(f"parameter {p.name!r} is given twice")
            seen.add(p.name)
        self.params = params

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def size(self) -> float:
        """The number of combinations (``math.inf`` when an axis is continuous)."""
        return math.prod(p.size for p in self.params)

    @property
    def continuous(self) -> bool:
        return any(p.continuous for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def combination(self, index: int) -> dict[str, Any]:
        """The ``index``-th combination in Cartesian order (first axis slowest); discrete spaces only."""
        out: dict[str, Any] = {}
        for p in reversed(self.params):
            index, i = divmod(index, len(p.values))  # type: ignore[arg-type]
            out[p.name] = p.values[i]  # type: ignore[index]
        return {n: out[n] for n in self.names}

    def sample(self, sampler: Sampler | str | Mapping | None = None) -> list[dict[str, Any]]:
        """Parameter sets drawn by ``sampler`` (a ``Sampler``, or ``"cartesian"``/``{"random": {...}}``)."""
        return sampler_from_spec(sampler).sample(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSpace) and self.params == other.params

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "ParamSpace(" + ", ".join(f"{p.name}={p.values!r}" for p in self.params) + ")"


# -- samplers -----------------------------------------------------------------------------------------

class Sampler:
    """Draws parameter sets from a ``ParamSpace``: ``sample(space) -> list[dict]``."""

    def sample(self, space: ParamSpace) -> list[dict[str, Any]]:
        raise NotImplementedError


class CartesianSampler(Sampler):
    """Every combination, in a fixed order: the first axis varies slowest (as ``itertools.product``)."""

    def sample(self, space: ParamSpace) -> list[dict[str, Any]]:
        for p in space.params:
            if p.continuous:
                raise SweepError(f"parameter {p.name!r} is continuous ({p.values!r}): CartesianSampler needs a "
                                 "list of values; use RandomSampler(n, seed=...) or list the values")
        return [dict(zip(space.names, combo)) for combo in itertools.product(*(p.values for p in space.params))]

    def __repr__(self) -> str:
        return "CartesianSampler()"


class RandomSampler(Sampler):
    """``n`` different parameter sets drawn at random, without replacement; the same ``seed`` gives the
    same sets in the same order. ``n`` larger than the number of combinations is an error."""

    def __init__(self, n: int, seed: int | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SweepError(f"RandomSampler: n must be an integer >= 1, got {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise SweepError(f"RandomSampler: seed must be an integer or a string, got {seed!r}")
        self.n, self.seed = n, seed

    def sample(self, space: ParamSpace) -> list[dict[str, Any]]:
        size = space.size
        if self.n > size:
            raise SweepError(f"RandomSampler: n={self.n} is larger than the parameter space ({size} combinations "
                             f"of {', '.join(space.names)}); sets are drawn without replacement")
        rng = random.Random(self.seed)
        if not space.continuous and size <= 2**62:
            return [space.combination(i) for i in rng.sample(range(int(size)), self.n)]
        out: list[dict[str, Any]] = []
        seen: set[ParamSet] = set()
        redraws = 0
        while len(out) < self.n:
            combo = {p.name: p.values.draw(rng) if p.continuous else rng.choice(p.values)  # type: ignore
                     for p in space.params}
            key = ParamSet(combo)
            if key in seen:
                redraws += 1
                if redraws > _MAX_REDRAWS:
                    raise SweepError(f"RandomSampler: cannot draw {self.n} different sets (raise precision, or "
                                     "widen the ranges)")
                continue
            seen.add(key)
            out.append(combo)
        return out

    def __repr__(self) -> str:
        return f"RandomSampler({self.n}, seed={self.seed!r})"


_SAMPLERS = {"cartesian": CartesianSampler, "random": RandomSampler}


def sampler_from_spec(spec: Sampler | str | Mapping | None) -> Sampler:
    """A sampler from ``None``/``"cartesian"``, ``{"random": {"n": 4, "seed": 1}}`` or a ``Sampler``."""
    if spec is None:
        return CartesianSampler()
    if isinstance(spec, Sampler):
        return spec
    options: Any = {}
    if isinstance(spec, Mapping) and len(spec) == 1:
        spec, options = next(iter(spec.items()))
        options = {} if options is None else options
    if not isinstance(spec, str) or spec not in _SAMPLERS:
        raise SweepError(f"unknown sampler {spec!r}; expected 'cartesian' or {{random: {{n: 4, seed: 1}}}}")
    if not isinstance(options, Mapping):
        raise SweepError(f"sampler {spec!r}: options must be a mapping, got {options!r}")
    try:
        return _SAMPLERS[spec](**options)
    except TypeError as e:
        raise SweepError(f"sampler {spec!r}: bad options {dict(options)!r} ({e})") from None


# -- sweeping an experiment ------------------------------------------------------------------------

def _param_sets(space: Any, sampler: Any) -> list[ParamSet]:
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
        if p in out:
            raise SweepError(f"parameter set {dict(p)!r} is given twice")
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
    from .experiment import Experiment

    if not isinstance(experiment, Experiment):
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

    new = Experiment(name if name is not None else experiment.name, workdir=experiment.workdir,
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
    c.inputs, c.outputs = _copy.deepcopy(t.inputs), _copy.deepcopy(t.outputs)
    if isinstance(c, LocalTask):
        c.commands = list(t.commands)
    return c


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
    from .experiment import Experiment

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
