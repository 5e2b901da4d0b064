"""Files a task reads and writes: ``inputs=`` / ``outputs=`` and what they mean for one run's graph (what the
worker does with the outputs is ``molexp.state.outputs``).

A declaration is a list of paths, or a mapping name -> path or list of paths (the names become template
variables: ``$reads``). Paths are templated like commands (``$sample``), relative to the task's cwd; inputs
may be globs. ``resolve`` turns the declarations of one run into absolute paths, infers dependencies (a task
whose input is another task's output runs after it) and refuses, before anything runs, an input that no task
produces and that does not exist, and an output declared twice.

A glob input matches the outputs that the run's tasks declare (its dependencies are their producers); when no
task declares a match, it matches the files on disk when the run starts. Either way the list is fixed before
anything runs, so ``$inputs``, the dependencies and ``plan()`` agree with what the task gets.
"""

from __future__ import annotations

import copy
import fnmatch
import glob as _glob
import os
import re
import shlex
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import FileDeclarationError, TemplateError
from ..model.files import _MAGIC, groups
from ..model.task import _PLACEHOLDER, RUNTIME_ENV, _as_format
from .outputs import _rel

_SHELL_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search   # shlex.quote's test: text it leaves as it is
_UNSAFE_OR_NUL = re.compile(r"[^\w@%+=:,./\0-]", re.ASCII).search
_SAFE_OR_NUL = (string.ascii_letters + string.digits + "_@%+=:,./-\0").encode()   # (the same characters)
_SIMPLE = 2   # (a third value of "plain": a plain declaration of simple paths)


def _simple(blob: str) -> bool:
    """Whether paths joined by NUL (which no declared path holds) are all "simple": no character shlex.quote
    would quote (so no $, glob or ~), none empty, no part starting with . (so no . or ..), no //, no final /.
    Such a task needs no rendering, normalising, glob expansion or quoting: a search and a few substring
    tests per task (0.5 us) instead of five searches (one regex with these alternatives took 1.6 us). The
    paths of a whole run have their characters tested by deleting the allowed ones from their bytes (10,000
    tasks: 0.3 ms, where the regex search took 3)."""
    chars = _UNSAFE_OR_NUL(blob) is None if len(blob) < 1024 else \
        blob.isascii() and not blob.encode().translate(None, _SAFE_OR_NUL)
    return (chars and "//" not in blob and "/\0" not in blob and "\0\0" not in blob
            and "/." not in blob and "\0." not in blob and blob[:1] not in ("", ".", "\0")
            and blob[-1:] not in ("/", "\0"))
# -- one run's files ------------------------------------------------------------------------------------

class TaskFiles(NamedTuple):
    """One task's files in one run: absolute ``inputs`` (globs expanded) and ``outputs``; ``values`` are the
    template values they add to commands (shell-quoted); ``call`` the ``inputs``/``outputs`` arguments of a
    Python task; ``declared`` the paths as written (after templating), for the fingerprint, or None when they
    are the task's own ``inputs`` and ``outputs`` lists (nothing to render: the common case, three tuples fewer).

    A tuple, not a class with slots: holding only text (tuples of str, a dict of str), the cyclic garbage
    collector stops tracking it after its first look, where it went through 10,000 of them (and their
    ``declared`` tuples) in every older-generation collection of a resume."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    values: dict[str, str]
    shaped: dict[str, Any] | None   # ``call`` of a task with named files; None: two lists, made on demand
    declared: tuple[tuple[str, ...], tuple[str, ...]] | None

    @property
    def call(self) -> dict[str, Any]:
        # Made when asked (by a Python task's compile), not kept: a dict and two lists per task that the cyclic
        # garbage collector would otherwise go through again and again during a resume of 10,000 shell tasks.
        if self.shaped is not None:
            return self.shaped
        return {"inputs": list(self.inputs), "outputs": list(self.outputs)}


@dataclass(slots=True)
class Resolved:
    """The run's graph with the dependencies files imply, each task's ``TaskFiles`` (only tasks declaring
    files), ``producers`` (absolute output path -> task name) and ``sources`` (source input -> its content
    hash, or None when it cannot be read: filled when ``resolve`` was given ``hashes``)."""

    graph: Any
    files: dict[str, TaskFiles]
    producers: dict[str, str]
    sources: dict[str, str | None] = field(default_factory=dict)


def with_file_deps(work) -> Any:
    """The graph of an ``Experiment`` (or a ``TaskGraph``) with the dependencies its files imply, for
    pictures and ``molexp graph``: inputs missing on disk are not an error here."""
    graph = getattr(work, "graph", work)
    params = getattr(work, "params", {})
    workdir = os.path.abspath(getattr(work, "workdir", "."))
    return resolve(graph, params, workdir, strict=False).graph


def resolve(graph, params: Mapping[str, Any], workdir: str, *, strict: bool = True,
            hashes: Callable[[str, os.stat_result | None], str | None] | None = None) -> Resolved:
    """Render every task's files, infer dependencies and check them (see the module docstring). A graph
    whose tasks declare no file comes back as it is. ``strict=False`` lets inputs be missing. ``hashes``
    (``HashCache.get``): the content hash of each source input is taken with the ``os.stat`` that checks
    it exists (one stat a file, and no stat result kept per file), into ``Resolved.sources``."""
    tasks = [t for t in graph if t.inputs or t.outputs]
    if not tasks:
        return Resolved(graph, {}, {})
    rendered: list[tuple] = []
    producers: dict[str, str] = {}
    claim = producers.setdefault
    lw = len(workdir)
    top_w = workdir + "/" if workdir != "/" else "/"
    # Every task declaring lists of simple paths (the common case): one test for all of them (1 us a task less)
    all_simple = all(t.inputs.__class__ is list and t.outputs.__class__ is list for t in tasks) and _simple(
        "\0".join([p for t in tasks for ps in (t.inputs, t.outputs) for p in ps]))
    for t in tasks:
        cwd = os.path.normpath(os.path.join(workdir, t.cwd)) if t.cwd is not None else workdir
        ins, outs = t.inputs, t.outputs
        plain = ins.__class__ is list and outs.__class__ is list   # no names: the common case, kept flat
        if plain and (all_simple or _simple("\0".join((*ins, *outs)))):
            # The common case, tested once per task: nothing to render, normalise, expand or quote.
            top = top_w if cwd is workdir else cwd + "/" if cwd != "/" else "/"
            out_abs = [p if p[:1] == "/" else top + p for p in outs]
            rendered.append((t, _SIMPLE, cwd, ins, outs, out_abs))
            if len(out_abs) == 1 and len(path := out_abs[0]) > lw and len(path) > len(cwd):
                if claim(path, t.name) != t.name:   # (``_producer`` inline: one output, longer than both)
                    _producer(t.name, outs, out_abs, cwd, workdir, {path: producers[path]})
            else:
                _producer(t.name, outs, out_abs, cwd, workdir, producers)
            continue
        if plain:
            templated = "$" in "".join(ins) or "$" in "".join(outs)
        else:
            ins, outs = groups(ins), groups(outs)
            templated = any("$" in p for p in _flat(ins, plain)) or any("$" in p for p in _flat(outs, plain))
        if templated:
            values = t.template_values(params)
            if plain:
                ins = [_render(t, "inputs", p, values) for p in ins]
                outs = [_render(t, "outputs", p, values) for p in outs]
            else:
                ins = [(g, [_render(t, "inputs", p, values) for p in ps]) for g, ps in ins]
                outs = [(g, [_render(t, "outputs", p, values) for p in ps]) for g, ps in outs]
        if plain:
            if _UNCLEAN_LINES.search("\n".join(outs)) is None:   # _abs without a call per path
                top = cwd + "/" if cwd != "/" else "/"
                out_abs = [p if p[:1] == "/" else top + p for p in outs]
            else:
                out_abs = [_abs(cwd, p) for p in outs]
        else:
            out_abs = [[_abs(cwd, p) for p in ps] for _, ps in outs]
        rendered.append((t, plain, cwd, ins, outs, out_abs))
        _producer(t.name, list(_flat(outs, plain)), out_abs if plain else [q for qs in out_abs for q in qs], cwd,
                  workdir, producers)
    _no_nested_outputs(producers, workdir)

    files: dict[str, TaskFiles] = {}
    extra: dict[str, list[str]] = {}
    sources = _Sources(hashes)
    inside = _Inside(producers, workdir)
    get = producers.get
    n = len(workdir)
    stat, new_files = os.stat, tuple.__new__   # (TaskFiles' own __new__ is a Python function: 0.3 us)
    for t, plain, cwd, ins, outs, out_abs in rendered:
        ups: list[str] = []
        if plain == _SIMPLE or (plain and _MAGIC.search("".join(ins)) is None
                                and _UNCLEAN_LINES.search("\n".join(ins)) is None):
            # No name, no glob, nothing to normalise (the common case): ``_plain_files`` and ``_expand`` inline,
            # which halves ``resolve`` at 10,000 tasks (per-path calls were most of its time).
            name = t.name
            all_in: list[str] = []
            top = top_w if cwd is workdir else cwd + "/" if cwd != "/" else "/"
            for p in ins:
                path = p if p[:1] == "/" else top + p
                producer = get(path)
                if producer is None and len(path) > n:
                    producer = inside[path[: path.rindex("/")] or "/"]
                if producer is None:
                    if strict:   # (``_Sources.exists`` inline)
                        try:
                            st = stat(path)
                        except OSError:
                            if not sources.exists(path):
                                _missing_input(t, p, path)
                        else:
                            if hashes is not None:
                                sources[path] = hashes(path, st)
                elif producer != name and producer not in ups:
                    ups.append(producer)
                all_in.append(path)
            if all_in and out_abs and not (len(all_in) == 1 == len(out_abs) and all_in[0] != out_abs[0]):
                _no_clash(t, all_in, out_abs, workdir)
            if plain == _SIMPLE or (_SHELL_UNSAFE("".join(ins)) is None and _SHELL_UNSAFE("".join(outs)) is None
                                    and "" not in ins and "" not in outs):
                values = {"inputs": " ".join(ins), "outputs": " ".join(outs)}   # what shlex.quote leaves as is
            else:
                values = {"inputs": " ".join(map(shlex.quote, ins)), "outputs": " ".join(map(shlex.quote, outs))}
            declared = None if plain == _SIMPLE else (tuple(ins), tuple(outs))   # None: the task's own lists
            f = new_files(TaskFiles, (tuple(all_in), tuple(out_abs), values, None, declared))
        elif plain:
            f = _plain_files(t, cwd, ins, outs, out_abs, producers, strict, workdir, ups, sources, inside)
        else:
            f = _named_files(t, cwd, ins, outs, out_abs, producers, strict, workdir, ups, sources, inside)
        files[t.name] = f
        if ups:
            new = [u for u in ups if u not in t.deps]
            if new:
                extra[t.name] = new
    if extra:
        from ..model.graph import TaskGraph

        def with_deps(t):
            if t.name not in extra:
                return t
            c = copy.copy(t)
            c.deps = [*t.deps, *extra[t.name]]
            return c

        graph = TaskGraph(with_deps(t) for t in graph)
    graph.validate()
    return Resolved(graph, files, producers, sources)


def _producer(name: str, outs, out_abs, cwd: str, workdir: str, producers: dict[str, str]) -> None:
    """Register ``name`` as the producer of its outputs (as written, and absolute), refusing one that holds its
    working directory or that another task declares."""
    for p, path in zip(outs, out_abs):
        # An output holding the workdir or the cwd is not longer than it: skip the tests for the others.
        if len(path) <= len(cwd) or len(path) <= len(workdir):
            if path in (cwd, workdir) or workdir.startswith(path + os.sep) or cwd.startswith(path + os.sep):
                raise FileDeclarationError(f"task {name!r}: output {p!r} is its working directory or "
                                           "holds it; declare the files or a subdirectory it writes")
        other = producers.setdefault(path, name)
        if other != name:
            raise FileDeclarationError(f"tasks {other!r} and {name!r} both declare the output "
                                       f"{_show(path, workdir)!r}: a file has one producer")


def _flat(declared, plain: bool):
    """The paths of a rendered declaration: a flat list (``plain``) or (name, paths) groups."""
    return declared if plain else (p for _, ps in declared for p in ps)


def _no_nested_outputs(producers: Mapping[str, str], workdir: str) -> None:
    """Refuse an output inside another task's (directory) output. Each directory holding outputs is looked
    up once, with its parents up to the workdir; only a hit looks at the paths."""
    checked: set[str] = set()
    for d in {_parent(p) for p in producers}:
        while len(d) > 1 and d != workdir and d not in checked:
            checked.add(d)
            other = producers.get(d)
            if other is not None:
                below = d + os.sep
                for path, name in producers.items():
                    if path.startswith(below) and name != other:
                        raise FileDeclarationError(
                            f"task {name!r} declares the output {_show(path, workdir)!r}, inside the output "
                            f"{_show(d, workdir)!r} of task {other!r}")
            d = _parent(d)


def _plain_files(t, cwd, ins, outs, out_abs, producers, strict, workdir, ups, sources, inside) -> TaskFiles:
    """``TaskFiles`` of a task declaring lists of paths (no names) among which a glob or a path to normalise
    (the common case is inline in ``resolve``)."""
    all_in: list[str] = []
    shown_in: list[str] = []
    _inputs(t, cwd, ins, producers, strict, workdir, ups, sources, all_in, shown_in, inside)
    all_out, shown_out = out_abs, outs
    _no_clash(t, all_in, all_out, workdir)
    q = shlex.quote
    values = {"inputs": " ".join(map(q, shown_in)), "outputs": " ".join(map(q, shown_out))}
    return TaskFiles(tuple(all_in), tuple(all_out), values, None, (tuple(shown_in), tuple(shown_out)))


def _named_files(t, cwd, ins, outs, out_abs, producers, strict, workdir, ups, sources, inside) -> TaskFiles:
    """``TaskFiles`` of a task with a mapping of named inputs or outputs."""
    values: dict[str, str] = {}
    call: dict[str, Any] = {}
    all_in: list[str] = []
    shown_in: list[str] = []
    in_groups = []
    for g, ps in ins:
        paths: list[str] = []
        shown: list[str] = []
        _inputs(t, cwd, ps, producers, strict, workdir, ups, sources, paths, shown, inside)
        in_groups.append((g, paths, shown, _single(t.inputs, g) and not _MAGIC.search(ps[0])))
        all_in += paths
        shown_in += shown
    all_out = [path for paths in out_abs for path in paths]
    _no_clash(t, all_in, all_out, workdir)
    _values_and_call(t, in_groups, "inputs", values, call)
    _values_and_call(t, [(g, paths, ps, _single(t.outputs, g)) for (g, ps), paths in zip(outs, out_abs)],
                     "outputs", values, call)
    return TaskFiles(tuple(all_in), tuple(all_out), values, call,
                     (tuple(shown_in), tuple(p for _, ps in outs for p in ps)))


def _inputs(t, cwd, ps, producers, strict, workdir, ups, sources, paths: list, shown: list, inside) -> None:
    """Expand the inputs ``ps`` as written into ``paths`` (absolute) and ``shown`` (as ``$inputs`` shows them),
    adding their producers to ``ups``."""
    for p in ps:
        found = _expand(t, cwd, p, producers, strict, workdir, sources, inside)
        for path, producer in found:
            if producer is not None and producer != t.name and producer not in ups:
                ups.append(producer)
            paths.append(path)
            shown.append(p if len(found) == 1 and not _MAGIC.search(p) else _rel(path, cwd))


def _no_clash(t, all_in: list[str], all_out: list[str], workdir: str) -> None:
    if not all_in or not all_out or (len(all_in) == 1 == len(all_out) and all_in[0] != all_out[0]):
        return   # (no set for one input and one output)
    clash = set(all_in).intersection(all_out)
    if clash:
        raise FileDeclarationError(f"task {t.name!r}: {_show(min(clash), workdir)!r} is both an input and an "
                                   "output; write the result to a new file")


def _single(declared, name: str | None) -> bool:
    """Whether a mapping declared this name as one path (a Python task then gets a str, not a list)."""
    return isinstance(declared, dict) and isinstance(declared.get(name), str)


def _values_and_call(t, in_groups, field: str, values: dict, call: dict) -> None:
    everything, shaped = [], {}
    for g, paths, shown, single in in_groups:
        everything += shown
        if g is None:
            call[field] = list(paths)
        else:
            values[g] = " ".join(map(shlex.quote, shown))
            shaped[g] = paths[0] if single else list(paths)
    values[field] = " ".join(map(shlex.quote, everything))
    if shaped:
        call[field] = shaped


def _expand(t, cwd: str, p: str, producers: Mapping[str, str], strict: bool, workdir: str,
            sources: "_Sources", inside: "_Inside") -> list[tuple[str, str | None]]:
    """[(absolute path, producer or None)] of one input as written (a path or a glob); a source input's
    hash goes into ``sources`` (``strict`` only)."""
    path = _abs(cwd, p)
    if not _MAGIC.search(p):
        producer = producers.get(path)
        if producer is None and len(path) > len(workdir):
            producer = inside[_parent(path)]
        if producer is None and strict and not sources.exists(path):
            _missing_input(t, p, path)
        return [(path, producer)]
    parts = path.split(os.sep)
    made = sorted((q, n) for q, n in producers.items() if n != t.name and _glob_match(parts, q))
    if made:
        return made
    on_disk = sorted(q for q in _glob.glob(path) if producers.get(q) != t.name)   # not its own outputs
    if not on_disk and strict:
        raise FileDeclarationError(f"task {t.name!r}: input pattern {p!r} matches no file on disk and no task's "
                                   f"output (looked for {path})")
    if strict and sources.hashes is not None:
        for q in on_disk:
            sources.exists(q)
    return [(q, None) for q in on_disk]


def _missing_input(t, p: str, path: str):
    raise FileDeclarationError(f"task {t.name!r}: input {p!r} does not exist and no task declares it as an "
                               f"output (looked for {path})")


class _Inside(dict):
    """directory -> the task whose directory output holds it (below the workdir), or None; each directory is
    looked up once, so 10,000 inputs in one directory walk its parents once (was: once per input)."""

    def __init__(self, producers: Mapping[str, str], workdir: str):
        super().__init__()
        self.producers, self.workdir = producers, workdir

    def __missing__(self, directory: str) -> str | None:
        producer, d, n = None, directory, len(self.workdir)
        while producer is None and len(d) > n:
            producer = self.producers.get(d)
            d = _parent(d)
        self[directory] = producer
        return producer


class _Sources(dict):
    """source input -> its content hash (``hashes(path, stat)``; None when it cannot be read), filled as the
    inputs are checked; stays empty without ``hashes``."""

    def __init__(self, hashes: Callable[[str, os.stat_result | None], str | None] | None):
        super().__init__()
        self.hashes = hashes

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (a dangling link does: reading it will fail the task), hashing it."""
        try:
            st = os.stat(path)
        except OSError:
            if not os.path.lexists(path):
                return False
            st = None
        if self.hashes is not None:
            self[path] = self.hashes(path, st) if st is not None else None
        return True


def _glob_match(pattern_parts: list[str], path: str) -> bool:
    """Whether ``path`` matches the pattern as ``glob`` would (``*`` does not cross ``/``)."""
    parts = path.split(os.sep)
    return len(parts) == len(pattern_parts) and all(
        a == b or fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern_parts))


def _render(t, field: str, p: str, values: Mapping[str, Any]) -> str:
    if "$" not in p:
        return p
    fmt, used = _as_format(p)
    if used <= values.keys():   # every variable a value (the common case): no regex callback
        return fmt.format_map(values)

    def fill(m: re.Match) -> str:
        if m.group(1):
            return "$"
        var = m.group(2) or m.group(3)
        if var in values:
            return str(values[var])
        if var in os.environ and var not in RUNTIME_ENV:
            return os.environ[var]
        raise TemplateError(f"task {t.name!r}: {field} path {p!r} uses ${var}, which is not in the task's kwargs, "
                            f"the run's params or the environment (known values: {', '.join(sorted(values)) or 'none'})")

    return _PLACEHOLDER.sub(fill, p)


# A path that ``normpath`` and ``expanduser`` would change: ``~``, ``.``/``..`` parts, ``//``, a final ``/``.
_UNCLEAN = re.compile(r"^~|(?:^|/)\.\.?(?:/|$)|//|/$")
# The same, searched once in the paths joined by newlines: a match in one path is a match there (^ and $
# also match at the newlines); a newline inside a path can only add a match, which takes the slow path.
_UNCLEAN_LINES = re.compile(_UNCLEAN.pattern, re.MULTILINE)


def _abs(cwd: str, p: str) -> str:
    """``p`` made absolute against ``cwd`` (an absolute, normalised directory) and normalised."""
    if _UNCLEAN.search(p) is None:   # the common case, without normpath's cost
        return p if p[:1] == "/" else f"{cwd}/{p}" if cwd != "/" else "/" + p
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(p)))


def _parent(path: str) -> str:
    """The directory of an absolute normalised path ("/" for a top-level one)."""
    return path[: path.rindex("/")] or "/"



def _show(path: str, workdir: str) -> str:
    """A path as a person would write it: relative to the workdir when it is under it."""
    return _rel(path, workdir)
