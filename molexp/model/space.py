"""Parameter spaces: ``ParamSpace`` (axes: ``Param``, with values or a ``Uniform``/``LogUniform``
distribution), ``ParamSet`` (one drawn set) and how a set is written in a swept copy's name
(``copy_name``/``split_name``; see ``molexp.model.params`` for the naming rules); and the samplers that draw
sets from a space: ``CartesianSampler`` (every combination), ``RandomSampler`` (``n`` sets at random),
``CombinationSampler`` (groups of ``r`` different sets), and ``sampler_from_spec`` for the ``sampler:`` of an
experiment file's ``sweep:`` section."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

from ..errors import SweepError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE = "-_.+"
_PAIR = r"[A-Za-z_][A-Za-z0-9_]*=[^,\[\]=]*"
_COPY_NAME = re.compile(rf"(?P<base>.+)\[(?P<label>{_PAIR}(?:,{_PAIR})*)\]", re.S)
_MAX_REDRAWS = 1000
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

    def __init__(self, name: str, values: Iterable[Any] | Distribution = _NONE):  # type: ignore[assignment]
        if isinstance(name, Mapping) and values is _NONE:
            raise SweepError("Param(name, values) is one sweep axis here; molexp v2's Param (a dict of run values) "
                             f"is a plain dict: pass {dict(name)!r} as run(params=...), or ParamSpace({{name: "
                             "[values]}}) to sweep")
        if values is _NONE:
            raise SweepError(f"Param({name!r}): give its values, Param({name!r}, [v1, v2, ...])")
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
        seen: dict[Any, Any] = {}   # value -> the first equal one (swept values are hashable: one lookup, not a scan)
        for i, v in enumerate(values):
            _check_value(v, f"parameter {name!r}, value {i}")
            label = value_label(v)
            same = seen.get(v, _NONE)
            if same is _NONE:
                same = labels.get(label, _NONE)
            if same is not _NONE:
                raise SweepError(f"parameter {name!r}: value {v!r} is listed twice" if repr(same) == repr(v) else
                                 f"parameter {name!r}: values {same!r} and {v!r} cannot both be swept (they are "
                                 "equal, or read the same in task names)")
            labels[label] = seen[v] = v
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


# -- samplers ----------------------------------------------------------------------------------------

class Sampler:
    """Draws parameter sets from a ``ParamSpace``: ``sample(space) -> list[dict]``.

    A sampler may be given its space when made (``CartesianSampler(space)``, as in molexp v2): then
    ``sample()`` needs no argument, iterating the sampler gives its sets, and ``sampler()`` the first one.
    """

    space: ParamSpace | None = None

    def sample(self, space: ParamSpace | Mapping | None = None) -> list[Any]:
        """The parameter sets drawn from ``space`` (default: the space given when the sampler was made)."""
        raise NotImplementedError

    def _space(self, space: ParamSpace | Mapping | None) -> ParamSpace:
        space = self.space if space is None else space
        if space is None:
            raise SweepError(f"{type(self).__name__}.sample() needs a parameter space: sample(space), or give "
                             f"it when making the sampler ({type(self).__name__}(space, ...))")
        return space if isinstance(space, ParamSpace) else ParamSpace(space)

    def __iter__(self):
        return iter(self.sample())

    def __call__(self, space: ParamSpace | Mapping | None = None) -> Any:
        """The first set ``sample(space)`` draws (molexp v2's one-set-per-call form)."""
        drawn = self.sample(space)
        if not drawn:
            raise SweepError(f"{self!r} drew nothing from {space!r}")
        return drawn[0]


def _bound(space: Any, who: str) -> ParamSpace | None:
    if space is None or isinstance(space, ParamSpace):
        return space
    if isinstance(space, Mapping):
        return ParamSpace(space)
    raise SweepError(f"{who}: the space must be a ParamSpace or a mapping of name -> values, got "
                     f"{type(space).__name__} {space!r}")


class CartesianSampler(Sampler):
    """Every combination, in a fixed order: the first axis varies slowest (as ``itertools.product``)."""

    def __init__(self, space: ParamSpace | Mapping | None = None):
        self.space = _bound(space, "CartesianSampler")

    def sample(self, space: ParamSpace | Mapping | None = None) -> list[dict[str, Any]]:
        """Every combination of ``space`` (default: the bound space), first axis slowest."""
        space = self._space(space)
        for p in space.params:
            if p.continuous:
                raise SweepError(f"parameter {p.name!r} is continuous ({p.values!r}): CartesianSampler needs a "
                                 "list of values; use RandomSampler(n, seed=...) or list the values")
        return [dict(zip(space.names, combo)) for combo in itertools.product(*(p.values for p in space.params))]

    def __repr__(self) -> str:
        return "CartesianSampler()"


class RandomSampler(Sampler):
    """``n`` parameter sets drawn at random; the same ``seed`` gives the same sets in the same order.

    By default the sets are different (drawn without replacement: ``n`` larger than the number of
    combinations is an error). ``replace=True`` draws each set independently, as molexp v2 did: sets may
    repeat, and ``n`` may exceed the number of combinations (a sweep refuses repeated sets, though).
    molexp v2's spelling is accepted too: ``RandomSampler(space, num_samples=10, replace=True)``.
    """

    def __init__(self, n: int | ParamSpace | Mapping | None = None, seed: int | str | None = None, *,
                 num_samples: int | None = None, replace: bool = False,
                 space: ParamSpace | Mapping | None = None):
        if isinstance(n, (ParamSpace, Mapping)):   # v2: RandomSampler(space, num_samples=...)
            if space is not None:
                raise SweepError("RandomSampler: the space is given twice")
            space, n = n, None
        if num_samples is not None:
            if n is not None and n != num_samples:
                raise SweepError(f"RandomSampler: n={n!r} and num_samples={num_samples!r} are the same option; "
                                 "give one")
            n = num_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SweepError(f"RandomSampler: n must be an integer >= 1 (num_samples= is the same), got {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise SweepError(f"RandomSampler: seed must be an integer or a string, got {seed!r}")
        if not isinstance(replace, bool):
            raise SweepError(f"RandomSampler: replace must be True or False, got {replace!r}")
        self.n, self.seed, self.replace = n, seed, replace
        self.space = _bound(space, "RandomSampler")

    @property
    def num_samples(self) -> int:
        """molexp v2's name for ``n``."""
        return self.n

    def sample(self, space: ParamSpace | Mapping | None = None) -> list[dict[str, Any]]:
        """``n`` sets drawn from ``space`` (default: the bound space); see the class docstring."""
        space = self._space(space)
        rng = random.Random(self.seed)
        if self.replace:
            return [_draw(space, rng) for _ in range(self.n)]
        size = space.size
        if self.n > size:
            raise SweepError(f"RandomSampler: n={self.n} is larger than the parameter space ({size} combinations "
                             f"of {', '.join(space.names)}); sets are drawn without replacement (replace=True "
                             "allows repeats)")
        if not space.continuous and size <= 2**62:
            return [space.combination(i) for i in rng.sample(range(int(size)), self.n)]
        out: list[dict[str, Any]] = []
        seen: set[ParamSet] = set()
        redraws = 0
        while len(out) < self.n:
            combo = _draw(space, rng)
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
        replace = ", replace=True" if self.replace else ""
        return f"RandomSampler({self.n}, seed={self.seed!r}{replace})"


def _draw(space: ParamSpace, rng: random.Random) -> dict[str, Any]:
    return {p.name: p.values.draw(rng) if p.continuous else rng.choice(p.values)  # type: ignore
            for p in space.params}


class CombinationSampler(Sampler):
    """Every group of ``r`` different parameter sets of the space's combinations (``itertools.combinations``
    of ``CartesianSampler``'s sets, in that order): ``CombinationSampler(2).sample(space)`` on 4 sets gives
    the 6 pairs. Each item is a tuple of ``r`` dicts, so this is for comparing sets side by side, not for
    ``sweep()`` (which takes sets). ``CombinationSampler(space, r)`` binds the space (molexp v2's form).
    """

    def __init__(self, space: ParamSpace | Mapping | int | None = None, r: int | None = None):
        if isinstance(space, int) and not isinstance(space, bool) and r is None:   # CombinationSampler(2)
            space, r = None, space
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise SweepError(f"CombinationSampler: r (the size of each group) must be an integer >= 1, got {r!r}")
        self.r = r
        self.space = _bound(space, "CombinationSampler")

    def sample(self, space: ParamSpace | Mapping | None = None) -> list[tuple[dict[str, Any], ...]]:
        """Every group of ``r`` different sets of ``space``'s combinations (default: the bound space)."""
        return list(itertools.combinations(CartesianSampler().sample(self._space(space)), self.r))

    def __repr__(self) -> str:
        return f"CombinationSampler(r={self.r})"


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
