"""What "up to date" means, and why each task runs or is reused.

A task's *fingerprint* hashes its definition part by part: its type, rendered commands (or its function's
source and arguments, hashed by content with ``dask.base.tokenize``), cwd, env, declared files and its
dependencies' fingerprints. On resume a task is reused (``cached``) only when all of these hold:

- its last record completed, with the same fingerprint;
- no dependency runs again;
- each input's content hash is the one it last ran with;
- each output it wrote is still there with the content hash it had when written.

Otherwise it runs, and ``reason`` says which of these failed first (``command changed``, ``upstream 'map'
runs again``, ``input data/A.fastq changed``, ``output plots/q.svg missing``...). Arguments that cannot be
hashed deterministically (an open file, a lock, a generator) make a task run every time rather than be
reused on a guess. Hashes come from ``filehash.HashCache``: a file is read once per change.

``decide`` is shared by the run (``Checkpoint.prepare``) and by ``plan()``, so a plan names exactly what the
next run runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .filehash import HashCache
from .files import TaskFiles, _show
from .result import TaskResult, TaskStatus

COMPLETED = frozenset({"completed", "cached"})
_NONE: dict = {}   # (no inputs or outputs recorded; also "not known yet" below)
_DONE = TaskStatus.COMPLETED   # (a member looked up on its Enum class costs 0.24 us, a global 0.02)

_PART_REASONS = {"kind": "task type changed", "commands": "command changed", "function": "function changed",
                 "arguments": "arguments changed", "cwd": "working directory changed",
                 "env": "environment changed", "inputs": "declared inputs changed",
                 "outputs": "declared outputs changed", "deps": "dependencies changed"}


class Uncacheable(str):
    """A fingerprint that matches nothing: why the task's definition cannot be hashed deterministically."""


_BLAKE8 = hashlib.blake2b(digest_size=8).copy   # (a copy of a made hasher: half the cost of making one, 0.4 us)


def _h(text: str) -> str:
    h = _BLAKE8()
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


_JSON_PLAIN = re.compile(r'[ !#-\[\]-~]*')   # printable ASCII but " and \: json.dumps leaves it as it is


def _json_list(items) -> str:
    """``json.dumps(list(items))`` for strings, without its cost in the common case (the same text)."""
    if len(items) == 1:   # one declared file: no generator (10,000 tasks, two lists each: -10 ms)
        if _JSON_PLAIN.fullmatch(items[0]):
            return '["' + items[0] + '"]'
    elif all(_JSON_PLAIN.fullmatch(x) for x in items):
        return '["' + '", "'.join(items) + '"]' if items else "[]"
    return json.dumps(list(items))


def _simple_list(items) -> str:
    """``json.dumps(list(items))`` for strings JSON writes as they are (checked by the caller)."""
    return '["' + '", "'.join(items) + '"]' if items else "[]"


def fingerprints(order: list[str], specs: Mapping[str, Any],
                 files: Mapping[str, TaskFiles] | None = None) -> dict[str, str]:
    """name -> fingerprint (``part=hash;...;all=hash``), for tasks in topological ``order``; an
    ``Uncacheable`` text for a task whose arguments cannot be hashed by content."""
    from dask.base import tokenize
    from dask.tokenize import TokenizationError

    out: dict[str, str] = {}
    sources: dict[int, str] = {}
    files = files or {}
    # The same text hashes the same: tasks share a cwd (usually all of them) and "no dependency" (roots);
    # remembering those two skips two of the four to six hashes of a task (10,000 tasks: -12 ms).
    same: dict[str, str] = {}
    no_deps = _h("")
    for name in order:
        s = specs[name]
        if s.kind == "shell":
            parts = [f"kind=shell;commands={_h(_json_list(s.commands))}"]
        else:
            parts = [f"kind={s.kind}"]
            key = id(s.func)
            if key not in sources:
                sources[key] = _h(s.task._source())
            parts.append(f"function={sources[key]}")
            if s.call_kwargs:
                try:
                    parts.append(f"arguments={tokenize(s.call_kwargs, ensure_deterministic=True)[:16]}")
                except TokenizationError as e:
                    out[name] = Uncacheable(f"its arguments cannot be hashed by content ({_first(e)}), so it is "
                                            "never reused")
                    continue
        cwd = same.get(s.cwd)
        if cwd is None:
            cwd = same[s.cwd] = _h(s.cwd)
        parts.append(f"cwd={cwd}")
        if s.env:
            parts.append(f"env={_h(json.dumps(s.env, sort_keys=True))}")
        f = files.get(name)
        if f is not None:
            if f.declared is None:   # simple paths (``files._simple``): text JSON leaves as it is
                ins, outs = s.task.inputs, s.task.outputs
                parts.append(f'inputs={_h(_simple_list(ins))};outputs={_h(_simple_list(outs))}')
            else:
                ins, outs = f.declared
                parts.append(f"inputs={_h(_json_list(ins))};outputs={_h(_json_list(outs))}")
        if s.deps:
            ups = [out[d] for d in s.deps]
            if any(isinstance(u, Uncacheable) for u in ups):
                out[name] = Uncacheable("an upstream task is never reused")
                continue
            parts.append(f"deps={_h(chr(10).join(ups))}")
        else:
            parts.append(f"deps={no_deps}")
        text = ";".join(parts)
        out[name] = f"{text};all={_h(text)}"
    return out


def _first(e: Exception) -> str:
    return str(e).split(". ")[0]


def _parts(fp: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in fp.split(";") if "=" in p)


def _changed(old: str, new: str) -> str:
    a, b = _parts(old), _parts(new)
    if "all" not in a:
        return "definition changed (recorded by an older molexp)"
    for part, why in _PART_REASONS.items():
        if a.get(part) != b.get(part):
            return why
    return "definition changed"


@dataclass(frozen=True)
class PlanEntry:
    """What a run would do with one task: ``action`` is ``"run"``, ``"cached"`` or ``"skip"``; ``reason``
    says why."""

    action: str
    reason: str


class Plan(Mapping):
    """task name -> ``PlanEntry``, in the graph's order, from ``executor.plan()``; ``str(plan)`` is a table.
    ``to_run``/``cached``/``skipped`` list names by action."""

    def __init__(self, entries: Mapping[str, PlanEntry]):
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> PlanEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _names(self, action: str) -> list[str]:
        return [n for n, e in self._entries.items() if e.action == action]

    @property
    def to_run(self) -> list[str]:
        """Names of the tasks the run would run."""
        return self._names("run")

    @property
    def cached(self) -> list[str]:
        """Names of the tasks the run would reuse."""
        return self._names("cached")

    @property
    def skipped(self) -> list[str]:
        """Names of the tasks outside the run's targets."""
        return self._names("skip")

    def table(self) -> str:
        """One line per task (name, action, reason) and a count."""
        width = max((len(n) for n in self._entries), default=4)
        lines = [f"{'task'.ljust(width)}  action  reason"]
        lines += [f"{n.ljust(width)}  {e.action.ljust(6)}  {e.reason}" for n, e in self._entries.items()]
        lines.append(f"{len(self.to_run)} to run, {len(self.cached)} cached, {len(self.skipped)} skipped "
                     "(dry run: nothing was run)")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return f"<Plan {len(self.to_run)} to run, {len(self.cached)} cached, {len(self.skipped)} skipped>"


def decide(order: list[str], deps: Mapping[str, Any], fps: Mapping[str, str], files: Mapping[str, TaskFiles],
           records: Mapping[str, dict], cache: HashCache, workdir: str, *, force=frozenset(),
           reuse: Callable[[str, dict], TaskResult | str] | None = None, known: Mapping[str, str | None] | None = None
           ) -> tuple[dict[str, PlanEntry], dict[str, TaskResult]]:
    """(entry per task, results to reuse) for a resumed run. ``records`` are the journal's latest records
    (``Journal.records()`` shape); ``reuse(name, record)`` makes the cached result, or returns why it cannot
    (a stored value that cannot be read). ``known``: hashes of source files taken just before (not read again)."""
    entries: dict[str, PlanEntry] = {}
    cached: dict[str, TaskResult] = {}
    for name in order:
        why = _why_run(name, deps[name], fps[name], files.get(name), records.get(name), cache, workdir, force,
                       entries, known or {})
        if why is None and reuse is not None:
            made = reuse(name, records[name])
            if isinstance(made, str):
                why = made
            else:
                cached[name] = made
        entries[name] = PlanEntry("run", why) if why else PlanEntry("cached", "up to date")
    return entries, cached


def _why_run(name, deps, fp, f, rec, cache, workdir, force, entries, known) -> str | None:
    if name in force:
        return "forced"
    if rec is None:
        return "not run before"
    if rec["status"] not in COMPLETED:
        return f"{rec['status']} last time"
    if isinstance(fp, Uncacheable):
        return str(fp)
    changed = _changed(rec["fingerprint"], fp) if rec["fingerprint"] != fp else None
    if changed is not None and changed != _PART_REASONS["deps"]:
        return changed
    for d in deps:   # an upstream definition that changed makes the upstream run: say that
        if entries[d].action == "run":
            return f"upstream {d!r} runs again"
    if changed is not None:
        return changed
    if f is None:
        return None
    result = rec["result"]
    # The common case first: every input and output has the hash it was recorded with (no reason to find).
    old_in, old_out = result.get("inputs") or _NONE, result.get("outputs") or _NONE
    ins, outs = f.inputs, f.outputs
    if len(old_in) == len(ins):
        now_of, hash_of = known.get, cache.get
        for p in ins:
            now = now_of(p, _NONE)
            if now is _NONE:
                now = hash_of(p)
            if now is None or old_in.get(p) != now:
                break
        else:
            for p in outs:
                now = hash_of(p)
                if now is None or old_out.get(p) != now:
                    break
            else:
                return None
    return _files_changed(f, old_in, old_out, cache, workdir, known)


def _files_changed(f, old_in, old_out, cache, workdir, known) -> str | None:
    """Why a task whose definition is unchanged runs because of its files (the first reason found)."""
    for p in f.inputs:
        was = old_in.get(p)
        if was is None:
            return f"input {_show(p, workdir)} is new"
        now = known[p] if p in known else cache.get(p)
        if now is None:
            return f"input {_show(p, workdir)} is missing"
        if now != was:
            return f"input {_show(p, workdir)} changed"
    gone = set(old_in).difference(f.inputs) if len(old_in) != len(f.inputs) else ()
    if gone:
        return f"input {_show(min(gone), workdir)} is no longer an input"
    for p in f.outputs:
        was = old_out.get(p)
        if was is None:
            return f"output {_show(p, workdir)} was not recorded"
        now = cache.get(p)
        if now is None:
            return f"output {_show(p, workdir)} is missing"
        if now != was:
            return f"output {_show(p, workdir)} changed since it was written"
    return None


class FileRecorder:
    """The driver's side of file tracking in a checkpointed run: the content hashes of the inputs each task
    ran with (source files hashed before the run starts, files made by upstream tasks as their producer
    reported them) and the hash cache, fed by what workers report."""

    def __init__(self, files: Mapping[str, TaskFiles], producers: Mapping[str, str], cache: HashCache,
                 sources: Mapping[str, str | None] | None = None):
        self.files, self.cache = files, cache
        self._made: dict[str, str] = {}
        self._reused: list = []   # results reused from the checkpoint, their outputs not yet in ``_made``
        # source file -> its hash before the run started (``Resolved.sources``: ``resolve`` hashed them)
        if sources is None:
            sources, get = {}, cache.get
            for f in files.values():
                for p in f.inputs:
                    if p not in sources and p not in producers:
                        sources[p] = get(p)
        self.sources = sources

    def reused(self, results) -> None:
        """Results reused from the checkpoint: what they wrote, with the hashes they recorded, is what their
        dependents read (taken in when a task ends: a run where everything is reused never needs them)."""
        self._reused.extend(results)

    def on_final(self, result: TaskResult) -> None:
        """Complete ``result`` (its input hashes) and learn the hashes of what it wrote."""
        made = self._made
        if self._reused:
            for r in self._reused:
                if r.outputs:
                    made.update(r.outputs)
            self._reused = []
        if result.file_stats:
            self.cache.learn(result.file_stats)
            result.file_stats = None
        if result.outputs:
            made.update(result.outputs)
        if result.status is not _DONE:   # (``.value`` of an enum is a Python property: 1 us)
            return
        f = self.files.get(result.name)
        if f is not None and f.inputs:
            result.inputs = {p: h for p in f.inputs
                             if (h := made.get(p) or self.sources.get(p) or self.cache.get(p)) is not None}

    def save(self, directory) -> None:
        """Save the hash cache when it learned something: the entries of this run's files, and of any other
        file that still exists (a run of some targets keeps the hashes of the other tasks' files)."""
        import os

        cache = self.cache
        if not cache.fresh and cache.loaded:
            return   # the file on disk holds these entries (those of files gone are dropped at the next save)
        paths = set()
        for f in self.files.values():
            paths.update(f.inputs)
            paths.update(f.outputs)
        cache.save(directory, [p for p in cache.entries if p in paths or os.path.lexists(p)])
