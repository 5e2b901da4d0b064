"""Durable record of every task outcome of a run, kept in a checkpoint directory.

Files in the directory
----------------------
``journal.jsonl``
    The append-only log and the source of truth. Line 1 is a header::

        {"molexp_journal": 1, "experiment": "...", "created": "2026-05-09T07:35:25+00:00", "pid": 123, "host": "..."}

    then one JSON object per line per task outcome::

        {"name": "...", "fingerprint": "...", "status": "completed", "result": {...}, "value": "x-1a2b...-9f.pkl" | null,
         "time": 1715239325.123}

    Later lines for a name supersede earlier ones. A line is written by ONE ``write(2)`` on an ``O_APPEND`` descriptor.
``values/``
    One cloudpickle file per stored Python return value, named ``<sanitized prefix>-<sha256(name)[:16]>-<random>.pkl``
    so that any task name (slashes, newlines, ``..``) maps to a safe, unique file name. Each is written to a temporary
    file and ``os.replace``-d into place *before* the log line that refers to it, so a line never names a file that
    was not completely written. A value superseded by a later record of the same task is deleted.
``workflow_state.json``
    A consolidated snapshot (experiment, time, latest record per task, counts by status) for humans and
    ``molexp status``; written atomically (temporary file + fsync + ``os.replace``) every ``snapshot_interval`` records
    and at ``close()`` (unless it is current: a journal opened and closed without a record, as by a resume that
    reuses every task, leaves it as it was). A snapshot rewrites every record, so on large runs they are spaced
    further apart: writing them takes at most 2% of the run's time (the log has every outcome the moment it
    happens either way). Its head ends with ``"checksum": [crc32, size]``, the CRC-32 of every other byte of the
    file and its size. On open it is cross-checked (a log with fewer records than the snapshot says it had is
    reported as truncated), but the log wins: with a log, a snapshot whose checksum and size match is read by
    its head only (parsing 10,000 records took ~0.1 s of a resume); one that does not match (cut, edited,
    damaged, or from an older molexp) is parsed and validated in full, and written again at ``close()``. If the
    log is missing, the snapshot's records seed a new log; a snapshot that then does not match its checksum is
    refused rather than trusted.
``journal.lock``
    Held with ``fcntl.flock(LOCK_EX | LOCK_NB)`` while a ``Journal`` is open; holds the holder's pid and host as JSON.
    The kernel drops a flock when its process dies, so a ``kill -9``-ed run leaves no stale lock to clean up.

Why JSON lines + O_APPEND rather than SQLite or pickle
-----------------------------------------------------
* Durable against a crash of the process: once ``write(2)`` returns, the bytes are in the kernel's page cache and
  survive ``kill -9``, an OOM kill or a Python segfault. No fsync per record (that costs ~ms on a real disk and would
  dominate short tasks); ``close()`` fsyncs. A power loss or kernel crash can therefore lose the last records
  written since the last snapshot/close - such tasks are simply run again on resume.
* Cheap: one ``json.dumps`` and one syscall per record (measured ~15-25 us per record; an fsync per record
  would cost ~10x that, and a snapshot every 100 records adds ~60 us per record amortised at 1,000 tasks), no
  transaction, no journal-of-the-journal, no extra dependency, no page-level locking quirks on network file systems.
* Safe to read: JSON cannot run code on load, whereas unpickling a state file runs arbitrary code. Only the
  ``values/`` files are pickles, loaded on demand by ``load_value`` for the tasks whose values are needed.
* Readable and repairable by hand (``tail -f``, ``jq``), and another process can read it lock-free
  (``read_state``) while a run appends.
* Crash-tolerant format: a crash mid-write can only tear the LAST line. Reading ignores an unterminated last line
  that is not a complete record. Before appending again, ``open`` terminates it and writes a marker line
  ``{"molexp_torn": {"offset": <byte offset>, "length": <bytes>}}`` naming exactly the torn bytes, so the torn
  fragment, now in the middle of the file, is still recognised as torn and not as corruption. Any other invalid
  line raises ``CheckpointError``.

A file that fails validation (not our format, garbage in the middle, wrong header, another experiment's) is
never deleted, truncated or overwritten: ``CheckpointError`` names it, and the user moves it away.

The Journal is used from one thread; it is not thread-safe. A process forked while a Journal is open closes its
inherited descriptors in the child (without unlocking), so a forked worker never keeps the lock alive.

Modules
-------
``journal`` (this one) is the writer, ``Journal``; ``journal_format`` the format (names, records, encoding,
snapshot text); ``journal_io`` durable writes, the lock and value file names; ``journal_read`` reading a
directory (``read_state``, ``find_checkpoint_dir``). The names others use are importable from here.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time
import weakref
from collections.abc import Iterable

import cloudpickle

from ..errors import CheckpointError, ConfigError
from .journal_format import (COMPLETED_STATUSES, JOURNAL_NAME, NO_VALUE, SNAPSHOT_NAME, VALUES_DIR,
                             _check_record_args, _counts, _dumps_line, _encode, _entry_text, _json_str, _now_iso,
                             _public, _snapshot_bytes)
from .journal_io import _acquire_lock, _atomic_write, _release_lock, _value_filename, _write_all
from .journal_read import _load, find_checkpoint_dir, load_value_file, read_state, read_value  # noqa: F401

# Names other modules import from here (molexp.cli, molexp.state.checkpoint, old pickles of NO_VALUE).
from .journal_format import FORMAT_VERSION, LOCK_NAME, _KNOWN_FILES, _NoValue  # noqa: F401, E402

__all__ = [
    "Journal",
    "NO_VALUE",
    "COMPLETED_STATUSES",
    "JOURNAL_NAME",
    "SNAPSHOT_NAME",
    "LOCK_NAME",
    "VALUES_DIR",
    "read_state",
    "read_value",
    "find_checkpoint_dir",
]

# At most this share of a run's time goes to writing periodic snapshots (see Journal.snapshot).
_SNAPSHOT_SHARE = 0.02

_LIVE: "weakref.WeakSet[Journal]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for journal in list(_LIVE):
        journal._abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------- Journal

class Journal:
    """Durable record of task outcomes in a checkpoint directory.

    Use ``Journal.open(directory, experiment=...)`` (also a context manager). See the module docstring for the
    on-disk format and why it is JSON lines on an ``O_APPEND`` file: each ``record`` is one ``write(2)``, so
    everything recorded survives a ``kill -9`` of the driver; ``close`` fsyncs. One thread only.
    """

    path: pathlib.Path

    def __init__(self, *args, **kwargs):
        raise TypeError("use Journal.open(directory, experiment=...)")

    @classmethod
    def open(cls, directory: str | os.PathLike, *, experiment: str, snapshot_interval: int = 100) -> "Journal":
        """Create the directory if needed, take the lock, read any existing records.

        Raises ``CheckpointLocked`` (naming the directory and the holder's pid) if another live process holds
        the directory, and ``CheckpointError`` (naming the file) for a corrupt file or another experiment's. A
        lock left by a dead process is taken over. Files that fail validation are left byte-for-byte unchanged.
        ``snapshot_interval=0`` writes the snapshot only at ``close()``.
        """
        if not isinstance(experiment, str) or not experiment:
            raise ConfigError(f"experiment must be a non-empty string, got {experiment!r}")
        if isinstance(snapshot_interval, bool) or not isinstance(snapshot_interval, int) or snapshot_interval < 0:
            raise ConfigError(f"snapshot_interval must be an integer >= 0, got {snapshot_interval!r}")
        path = pathlib.Path(directory).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise CheckpointError(f"checkpoint directory {path} exists and is not a directory", str(path)) from None
        lock_fd = _acquire_lock(path)
        self = cls.__new__(cls)
        self.path = path
        self.experiment = experiment
        self.snapshot_interval = snapshot_interval
        self._lock_fd = lock_fd
        self._log_fd = -1
        self._closed = False
        try:
            self._start()
        except BaseException:
            if self._log_fd >= 0:
                os.close(self._log_fd)
            _release_lock(lock_fd)
            self._closed = True
            raise
        _LIVE.add(self)
        return self

    def _start(self) -> None:
        loaded = _load(self.path, self.experiment)
        self._records: dict[str, dict] = loaded.records
        # name -> the record's text in the snapshot, kept from when it was recorded. The records read from disk
        # get theirs at the first snapshot (``_snapshot_entries``), not here: a resume that records nothing
        # writes no snapshot, and encoding 10,000 records took ~0.1 s of its ~0.6 s.
        self._entries: dict[str, str] = {}
        self._unencoded = bool(self._records)
        # The snapshot on disk already says what the log says (same experiment, written after as many records)
        # and nothing was recorded since: close() need not write it again (8 MB for 10,000 records).
        snap = loaded.snapshot
        # Only an intact one (its checksum matches): an edited or damaged snapshot is written again.
        self._snapshot_current = (loaded.log_exists and snap is not None and loaded.snapshot_intact
                                  and snap["experiment"] == self.experiment and snap["n_records"] == loaded.n_records)
        self._counts: dict[str, int] = _counts(self._records)
        self._next_snapshot = 0.0           # time.monotonic() before which no periodic snapshot is written
        self._since_snapshot = 0
        self._values_dir = self.path / VALUES_DIR
        log_path = self.path / JOURNAL_NAME
        self._log_path = log_path
        if not loaded.log_exists:
            header = {"molexp_journal": FORMAT_VERSION, "experiment": self.experiment, "created": _now_iso(),
                      "pid": os.getpid(), "host": socket.gethostname()}
            lines = [_dumps_line(header)]
            # Records seeded from a snapshot (the log was missing) are written back so the log stays the truth.
            lines += [_dumps_line({"name": name, **rec}) for name, rec in self._records.items()]
            _atomic_write(log_path, b"".join(lines), fsync=True)
            self._n_records = len(self._records)
            self._log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            if loaded.snapshot is not None:
                self.snapshot()   # its n_records must match the new log, or the next open reports truncation
            return
        self._n_records = loaded.n_records
        self._log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if loaded.torn is not None:
            # Terminate the torn line and name it in a marker, so that it is not taken for corruption later.
            offset, length = loaded.torn
            marker = {"molexp_torn": {"offset": offset, "length": length}, "time": time.time()}
            _write_all(self._log_fd, b"\n" + _dumps_line(marker))
            os.fsync(self._log_fd)
        elif not loaded.ends_with_newline:
            _write_all(self._log_fd, b"\n")     # a complete record lacking only its newline
            os.fsync(self._log_fd)

    # ----------------------------------------------------------------------------------------- writing

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"journal {self.path} is closed")

    def record(self, name: str, fingerprint: str, status: str, result: dict, value: object = NO_VALUE, *,
               pickled: bool = False) -> None:
        """Append one task outcome; durable against a crash of this process when it returns.

        ``result`` must be JSON-serialisable (``TypeError`` otherwise, and nothing is written), or already the
        JSON text of an object (the executor's hot path: ``checkpoint.result_json``; written as it is). If
        ``value`` is given, it is cloudpickled into ``values/`` (atomically) before the log line naming it
        (``pickled=True``: ``value`` is those bytes already).
        """
        if self._closed:
            raise ValueError(f"journal {self.path} is closed")
        if type(name) is not str or type(fingerprint) is not str or type(status) is not str or not status \
                or type(result) is not str:
            _check_record_args(name, fingerprint, status, result)
        if type(result) is str:
            result_json = result
        else:
            try:
                result_json = _encode(result)        # fail before anything is written
            except (TypeError, ValueError, RecursionError) as exc:
                raise TypeError(f"result of task {name!r} is not JSON-serialisable: {exc}") from None
        now = time.time()
        if value is NO_VALUE:
            value_file = None
            value_json = "null"
        else:
            value_file = _value_filename(name)
            value_json = _json_str(value_file)
            payload = value if pickled else cloudpickle.dumps(value)
            self._values_dir.mkdir(exist_ok=True)
            _atomic_write(self._values_dir / value_file, payload, fsync=False)
        # The result is encoded once: the log line and this record's entry in the snapshot share the text.
        fields = (f'"fingerprint":{_json_str(fingerprint)},"status":{_json_str(status)},"result":{result_json},'
                  f'"value":{value_json},"time":{now!r}}}')
        name_json = _json_str(name)
        line = f'{{"name":{name_json},{fields}\n'.encode("ascii")
        try:
            n = os.write(self._log_fd, line)
            if n != len(line):
                _write_all(self._log_fd, line[n:])
        except BaseException:
            if value_file is not None:
                try:
                    os.unlink(self._values_dir / value_file)
                except OSError:
                    pass
            raise
        records = self._records
        previous = records.get(name)
        # the caller's result is plain JSON data (lists, dicts) as a reader sees it, or its text (decoded on demand)
        records[name] = {"fingerprint": fingerprint, "status": status, "result": result, "value": value_file,
                         "time": now}
        self._entries[name] = f"\n  {name_json}: {{{fields}"
        self._snapshot_current = False
        self._n_records += 1
        counts = self._counts
        counts[status] = counts.get(status, 0) + 1
        if previous is not None:
            counts[previous["status"]] -= 1
            if previous["value"] and previous["value"] != value_file:
                try:
                    os.unlink(self._values_dir / previous["value"])
                except OSError:
                    pass
        self._since_snapshot += 1
        if self._since_snapshot >= self.snapshot_interval > 0 and time.monotonic() >= self._next_snapshot:
            self.snapshot(durable=False)

    def _snapshot_entries(self) -> Iterable[str]:
        """Each record's text in the snapshot, in the order of the records (encoding those read from disk)."""
        if self._unencoded:
            entries = self._entries
            self._entries = {name: entries.get(name) or _entry_text(name, rec) for name, rec in self._records.items()}
            self._unencoded = False
        return self._entries.values()

    def snapshot(self, durable: bool = True) -> None:
        """Write ``workflow_state.json`` (experiment, time, latest record per task, counts by status) atomically."""
        self._check_open()
        state = {
            "molexp_state": FORMAT_VERSION,
            "experiment": self.experiment,
            "written": _now_iso(),
            "time": time.time(),
            "journal": JOURNAL_NAME,
            "n_records": self._n_records,
            "counts": {k: v for k, v in sorted(self._counts.items()) if v},
        }
        began = time.monotonic()
        data = _snapshot_bytes(state, self._snapshot_entries())
        # Atomic replace survives a crash of this process; the fsync (power loss) is left to close().
        _atomic_write(self.path / SNAPSHOT_NAME, data, fsync=durable)
        self._since_snapshot = 0
        # A snapshot rewrites every record, so on a large run one every N outcomes would cost O(n^2): the next
        # one waits until writing snapshots has taken at most _SNAPSHOT_SHARE of the time since this one began.
        ended = time.monotonic()
        self._next_snapshot = ended + (ended - began) * (1 / _SNAPSHOT_SHARE - 1)

    # ----------------------------------------------------------------------------------------- reading

    def completed(self) -> dict[str, dict]:
        """Latest record per task whose status is 'completed' or 'cached':
        ``{name: {"fingerprint", "status", "result", "has_value", "time"}}``."""
        return {name: _public(rec) for name, rec in self._records.items() if rec["status"] in COMPLETED_STATUSES}

    def records(self, *, copy: bool = True) -> dict[str, dict]:
        """Latest record per task name, any status (same shape as ``completed()``). ``copy=False`` shares
        the results' lists and dicts with the journal (cheaper on large runs; do not modify them)."""
        if copy:
            return {name: _public(rec) for name, rec in self._records.items()}
        return {name: {"fingerprint": rec["fingerprint"], "status": rec["status"],
                       "result": json.loads(r) if isinstance(r := rec["result"], str) else r,
                       "has_value": rec["value"] is not None, "time": rec["time"]}
                for name, rec in self._records.items()}

    def load_value(self, name: str) -> object:
        """Load the stored return value of task ``name`` from this directory's ``values/`` folder.

        ``KeyError`` if the task has no record or its latest record has no value; ``CheckpointError`` naming the
        file if the file is missing or cannot be unpickled.
        """
        rec = self._records.get(name)
        if rec is None:
            raise KeyError(f"no record of task {name!r} in {self.path}")
        if rec["value"] is None:
            raise KeyError(f"the latest record of task {name!r} in {self.path} has no stored value")
        return load_value_file(self._values_dir / rec["value"], name)   # a plain file name: validated on read

    # ----------------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Snapshot (unless the one on disk is current: nothing recorded since it), fsync the log, release the
        lock. Idempotent."""
        if self._closed:
            return
        try:
            if not self._snapshot_current:
                self.snapshot()
            os.fsync(self._log_fd)
        finally:
            self._closed = True
            _LIVE.discard(self)
            try:
                os.close(self._log_fd)
            finally:
                _release_lock(self._lock_fd)

    def _abandon(self) -> None:
        """Close the descriptors without snapshot or unlock (after fork in the child; on garbage collection)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for fd in (self._log_fd, self._lock_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self):
        self._abandon()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._records)} tasks"
        return f"<Journal {str(self.path)!r} experiment={self.experiment!r} {state}>"
