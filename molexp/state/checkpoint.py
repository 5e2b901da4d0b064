"""Checkpoint and resume for a run: the journal seen from the executor.

On resume a task that is up to date (``molexp.state.uptodate``: same definition, same input contents, its outputs
still as it wrote them) is not run again: it ends ``cached`` with its stored result (and return value).
Everything else runs, with the reason in its result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import cloudpickle

from . import uptodate
from ..errors import CheckpointError
from .filehash import HashCache
from .files import Resolved
from .journal import JOURNAL_NAME, NO_VALUE, Journal, _json_str, find_checkpoint_dir
from .result import FailureKind, TaskResult, TaskStatus
from ..run.runtime import TaskSpec

log = logging.getLogger("molexp")
_CACHED = TaskStatus.CACHED   # (a member looked up on its Enum class costs 0.24 us per cached task)


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
    for key in ("inputs", "outputs"):
        files = getattr(r, key)
        if files:
            out.append(f',"{key}":{json.dumps(files, ensure_ascii=True, separators=(",", ":"))}')
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
        self.plan: dict[str, uptodate.PlanEntry] = {}
        self.files: uptodate.FileRecorder | None = None

    @property
    def path(self):
        return self.journal.path

    def prepare(self, order: list[str], specs: Mapping[str, TaskSpec], resolved: Resolved, workdir: str,
                cache: HashCache | None = None, *, resume: bool, force=frozenset()) -> dict[str, TaskResult]:
        """Fingerprint the run's tasks; with ``resume``, the results of the tasks that are up to date
        (``uptodate.decide``), as ``cached`` results. ``cache``: the directory's file hashes, as read before
        ``resolve`` hashed the source inputs with it (read here when not given)."""
        self.fingerprints = uptodate.fingerprints(order, specs, resolved.files)
        hashed = cache is not None   # (``resolve`` hashed the source inputs with it: ``Resolved.sources``)
        if cache is None:
            cache = HashCache.load(self.path)
        if resolved.files:
            self.files = uptodate.FileRecorder(resolved.files, resolved.producers, cache,
                                               resolved.sources if hashed else None)
        if not resume:
            return {}
        self.plan, cached = uptodate.decide(order, {n: specs[n].deps for n in order}, self.fingerprints,
                                            resolved.files, self.journal.records(copy=False), cache, workdir,
                                            force=force, reuse=self._reuse,
                                            known=self.files.sources if self.files else None)
        if self.files is not None:
            self.files.reused(cached.values())
        return cached

    def _reuse(self, name: str, rec: dict) -> TaskResult | str:
        value = None
        if rec.get("has_value"):
            try:
                value = self.journal.load_value(name)
            except (CheckpointError, KeyError) as e:
                log.warning("molexp: the stored value of %r cannot be read (%s); running it again", name, e)
                return "its stored value cannot be read"
        try:
            result = TaskResult.from_record(rec["result"], value)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"journal {self.journal.path / JOURNAL_NAME}: the record of task {name!r} has a "
                                  f"malformed result ({type(e).__name__}: {e}); move the checkpoint away or resume "
                                  "without it", str(self.journal.path / JOURNAL_NAME)) from None
        result.status, result.reason = TaskStatus.CACHED, "up to date"
        return result

    def record(self, result: TaskResult, kind: str | None) -> None:
        """Journal one final outcome (cached ones are in the journal already), with its input hashes and
        why it ran."""
        if result.status is _CACHED:   # (what it wrote is known: FileRecorder.reused)
            return
        if self.files is not None:
            self.files.on_final(result)
        entry = self.plan.get(result.name)
        if entry is not None and result.reason is None and result.status is not TaskStatus.SKIPPED:
            result.reason = entry.reason
        fp = self.fingerprints.get(result.name, "")
        value = result.value if kind == "python" and result.status is TaskStatus.COMPLETED else NO_VALUE
        if value is not NO_VALUE:
            try:
                value = cloudpickle.dumps(value)
            except Exception as e:   # the task's failure: its value cannot be kept (a generator, a lock...)
                result.status, result.failure = TaskStatus.FAILED, FailureKind.EXCEPTION.value
                result.error = (f"the return value of task {result.name!r} cannot be stored in the checkpoint: "
                                f"{type(e).__name__}: {e}")
                value = NO_VALUE
        try:
            self.journal.record(result.name, fp, result.status.value, result_json(result), value=value,
                                pickled=True)
        except OSError as e:
            raise CheckpointError(f"cannot write the checkpoint {self.path}: {e.strerror or e} (the journal is "
                                  "intact up to the previous task; free space, then resume)", str(self.path)) from e

    def close(self) -> None:
        """Save the hash cache and close the journal (snapshot, fsync, unlock). A snapshot or cache that
        cannot be written (a full disk) is only logged: the journal holds every record, and the lock is
        released either way."""
        try:
            if self.files is not None:
                self.files.save(self.path)
        except OSError as e:
            log.warning("molexp: cannot save the file hash cache in %s (%s); files are hashed again next time",
                        self.path, e)
        try:
            self.journal.close()
        except OSError as e:
            log.warning("molexp: cannot write the snapshot of %s (%s); the journal has every record", self.path, e)
