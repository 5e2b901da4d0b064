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
from .journal import NO_VALUE, Journal, find_checkpoint_dir
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
        self.journal.record(result.name, fp, result.status.value, result.to_record(),
                            value=result.value if keep_value else NO_VALUE)

    def close(self) -> None:
        self.journal.close()
