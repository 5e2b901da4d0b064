"""The order in which ready tasks start, on both schedulers (issue 20 point 2).

With no options, among the tasks ready at a moment the one with the longest remaining path to the end of the
graph starts first: measured in the seconds earlier runs of the experiment recorded (``state.durations``),
else in tasks; ties go in topological order, which is the declaration order when every task is declared after
its dependencies. Starting long chains early is what shortens a run's makespan (W4, 60 random `sleep`s on 4
workers: 1.05-1.15 of the lower bound against 1.14-1.24 in Dask's order and 1.27-1.44 for first-in-first-out,
same runs, loaded machine; benchmarks/results/order-session9.md). With ``priority_scheduling=True`` the tasks' own ``priority`` ranks first
and the path length breaks ties (``ranks``).

``places`` gives each task one distinct number, higher first (``Compiled.priorities``): the local backend keeps
Dask's ready list sorted by it, the cluster backend submits ready tasks by it and annotates them with it, so
that Dask's own tie-breaks never apply. ``order_matters`` tells the local backend whether the order can change
anything in a graph (otherwise it leaves Dask's ready list alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..state.durations import critical_path


def ranks(order: list[str], dependents: Mapping[str, Iterable[str]], known: Mapping[str, float],
          user: Mapping[str, int] | None = None) -> dict[str, float]:
    """name -> rank (higher starts first among ready tasks).

    Without ``user`` (the default), a task's rank is its ``critical_path`` length: the longest remaining path,
    in recorded seconds (``known``: name -> seconds) when any task has a record, else in tasks. With ``user``
    (``priority_scheduling=True``: name -> the task's ``priority``; absent means 0) the priority ranks first and
    the path length breaks ties between equal priorities: rank = priority + length / (longest length + 1),
    whose fraction stays below 1."""
    length = critical_path(order, dependents, known)
    if user is None:
        return length  # type: ignore[return-value]
    scale = 1.0 / (max(length.values(), default=0) + 1)
    get = user.get
    return {n: (get(n) or 0) + length[n] * scale for n in order}


def places(order: list[str], rank: Mapping[str, float], keys: Mapping[str, str] | None = None) -> dict[str, int]:
    """name (or ``keys[name]``) -> its place in the order of ready tasks as a priority: ``len(order)`` for the
    first (highest rank), 1 for the last; equal ranks in ``order``'s order (a stable sort)."""
    first = sorted(range(len(order)), key=[-rank[n] for n in order].__getitem__)
    n = len(order)
    out = [keys[o] for o in order] if keys is not None else order
    return {out[i]: n - place for place, i in enumerate(first)}


def order_matters(order: list[str], deps: Callable[[str], Iterable[str]], rank: Mapping[str, float]) -> bool:
    """Whether tasks of different ranks can be ready at the same time, so that the order of ready tasks can
    change what runs; O(tasks + edges). ``deps(name)``: its dependencies (names outside ``order`` are done).

    False when every task has the same rank (independent tasks on a first run), and when the graph is graded:
    all tasks at one depth have the same rank and each depends on every task one level up (a chain, uniform
    all-to-all layers, a fan-out), since tasks at different depths are then never ready together and tasks at
    one depth rank alike. True otherwise (tasks at one depth are never one before the other, so they can be
    ready together; a task that needs only part of the level above can be ready with tasks of that level)."""
    values = iter(rank.values())
    first = next(values, None)
    if all(v == first for v in values):
        return False
    depth: dict[str, int] = {}
    level_rank: list[float] = []
    level_size: list[int] = []
    for name in order:
        d = 1 + max((depth[x] for x in deps(name) if x in depth), default=-1)
        depth[name] = d
        r = rank[name]
        if d == len(level_rank):
            level_rank.append(r)
            level_size.append(0)
        elif level_rank[d] != r:
            return True
        level_size[d] += 1
    for name in order:
        d = depth[name]
        if d and len({x for x in deps(name) if depth.get(x) == d - 1}) != level_size[d - 1]:
            return True
    return False
