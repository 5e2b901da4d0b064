"""Checkpoint and resume for a run: task fingerprints, and the journal seen from the executor.

A task's fingerprint hashes its type, its rendered commands (or its function's source and call arguments),
its cwd and env, and its dependencies' fingerprints. On resume a task recorded as completed with the same
fingerprint is not run again: it ends ``cached`` with its stored result (and return value). A changed task
gets a new fingerprint, and so does everything downstream of it, so they all run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from .errors import CheckpointError
from .journal import NO_VALUE, Journal, _json_str, find_checkpoint_dir
from .result import TaskResult, TaskStatus
from .runtime import TaskSpec

log = logging.getLogger("molexp")


def fingerprints(order: list[str], specs: Mapping[str, TaskSpec]) -> dict[str, str]:
    """name -> hex fingerprint, for tasks in topological ``order``."""
    out: dict[str, str] = {}
    sources: dict[int, str] = {}
    for name in order:
        s = specs[name]
        ident: dict[str, Any] = {"kind": s.kind, "cwd": s.cwd, "env": s.env, "deps": [out[d] for d in s.deps]}
        if s.kind == "shell":
            ident["commands"] = list(s.commands)
        else:
            key = id(s.func)
            if key not in sources:
                sources[key] = s.task._source()
            ident["func"] = sources[key]
            ident["kwargs"] = s.call_kwargs
        text = json.dumps(ident, sort_keys=True, default=repr)
        out[name] = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return out


def _float(v) -> str:
    # time.time() and rusage figures are finite; anything else (NaN) is left out rather than written as non-JSON
    return repr(float(v)) if -1e300 < v < 1e300 else "null"


def result_json(r: TaskResult) -> str:
    """The journal's JSON text for ``r``: what ``to_record()`` holds, without what ``TaskResult.from_record``
    rebuilds (empty fields, the duration, a single attempt that is the result itself), built directly from the
    fields. It is the per-task hot path of a checkpointed run: ~3x smaller and ~2x cheaper than encoding
    ``to_record()``."""
    s = _json_str
    out = [f'{{"name":{s(r.name)},"status":"{r.status.value}"']
    if r.returncodes:
        out.append(f',"returncodes":[{",".join(map(str, map(int, r.returncodes)))}]')
    if r.stdout:
        out.append(f',"stdout":{s(r.stdout)}')
    if r.stderr:
        out.append(f',"stderr":{s(r.stderr)}')
    if r.stdout_path is not None:
        out.append(f',"stdout_path":{s(r.stdout_path)}')
    if r.stderr_path is not None:
        out.append(f',"stderr_path":{s(r.stderr_path)}')
    if r.start is not None:
        out.append(f',"start":{_float(r.start)}')
    if r.end is not None:
        out.append(f',"end":{_float(r.end)}')
    if r.attempts:
        out.append(f',"attempts":{int(r.attempts)}')
    for key in ("worker", "failure", "error", "reason", "command"):
        v = getattr(r, key)
        if v is not None:
            out.append(f',"{key}":{s(v)}')
    if r.peak_memory is not None:
        out.append(f',"peak_memory":{int(r.peak_memory)}')
    if r.cpu_time is not None:
        out.append(f',"cpu_time":{_float(r.cpu_time)}')
    log = r.attempt_log
    if log:
        a = log[0]
        if not (len(log) == 1 and r.attempts == 1 and a.start == r.start and a.end == r.end
                and a.failure == r.failure and a.error == r.error):
            out.append(f',"attempt_log":{json.dumps([vars(a) for a in log], ensure_ascii=True)}')
    out.append("}")
    return "".join(out)


class Checkpoint:
    """The executor's side of a checkpoint directory: what to reuse, and recording what happens."""

    def __init__(self, directory, experiment: str, interval: int):
        self.journal = Journal.open(find_checkpoint_dir(directory).resolve(), experiment=experiment,
                                    snapshot_interval=interval)
        self.fingerprints: dict[str, str] = {}

    @property
    def path(self):
        return self.journal.path

    def prepare(self, order: list[str], specs: Mapping[str, TaskSpec], *, resume: bool) -> dict[str, TaskResult]:
        """Fingerprint the run's tasks; with ``resume``, the results of tasks completed before with an
        unchanged fingerprint (and unchanged upstream), as ``cached`` results."""
        self.fingerprints = fingerprints(order, specs)
        if not resume:
            return {}
        done = self.journal.completed()
        cached: dict[str, TaskResult] = {}
        for name in order:
            rec = done.get(name)
            if rec is None or rec["fingerprint"] != self.fingerprints[name]:
                continue
            if any(d not in cached for d in specs[name].deps):
                continue  # an upstream task runs again, so this one must too
            value = None
            if rec.get("has_value"):
                try:
                    value = self.journal.load_value(name)
                except (CheckpointError, KeyError) as e:
                    log.warning("molexp: the stored value of %r cannot be read (%s); running it again", name, e)
                    continue
            result = TaskResult.from_record(rec["result"], value)
            result.status = TaskStatus.CACHED
            cached[name] = result
        return cached

    def record(self, result: TaskResult, kind: str | None) -> None:
        """Journal one final outcome (cached ones are in the journal already)."""
        if result.status is TaskStatus.CACHED:
            return
        fp = self.fingerprints.get(result.name, "")
        keep_value = kind == "python" and result.status is TaskStatus.COMPLETED
        self.journal.record(result.name, fp, result.status.value, result_json(result),
                            value=result.value if keep_value else NO_VALUE)

    def close(self) -> None:
        self.journal.close()
