"""Samplers: draw parameter sets (dicts) from a ``ParamSpace``: ``CartesianSampler`` (every combination),
``RandomSampler`` (``n`` sets at random), ``CombinationSampler`` (groups of ``r`` different sets), and
``sampler_from_spec`` for the ``sampler:`` of an experiment file's ``sweep:`` section."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from ..errors import SweepError
from .space import _MAX_REDRAWS, ParamSet, ParamSpace


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
