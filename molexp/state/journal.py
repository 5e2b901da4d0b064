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
    and at ``close()``. A snapshot rewrites every record, so on large runs they are spaced further apart: writing
    them takes at most 2% of the run's time (the log has every outcome the moment it happens either way). On open
    it is validated and cross-checked (a log with fewer records than the snapshot says it had is reported as
    truncated), but the log wins. If the log is missing, the snapshot's records seed a new log.
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
"""

from __future__ import annotations

import copy
import datetime
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import re
import socket
import time
import weakref
from collections.abc import Iterable

import cloudpickle

from ..errors import CheckpointError, CheckpointLocked, ConfigError

__all__ = [
    "Journal",
    "NO_VALUE",
    "COMPLETED_STATUSES",
    "JOURNAL_NAME",
    "SNAPSHOT_NAME",
    "LOCK_NAME",
    "VALUES_DIR",
    "read_state",
    "find_checkpoint_dir",
]

FORMAT_VERSION = 1
JOURNAL_NAME = "journal.jsonl"
SNAPSHOT_NAME = "workflow_state.json"
LOCK_NAME = "journal.lock"
VALUES_DIR = "values"
COMPLETED_STATUSES = frozenset({"completed", "cached"})

_VALUE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.pkl$")
_SANITIZE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_HINT = "molexp leaves it untouched: move it away, or point checkpoint_dir elsewhere"
# Names and suffixes that make a NON-existing path count as "a file inside the checkpoint directory".
_KNOWN_FILES = frozenset({JOURNAL_NAME, SNAPSHOT_NAME, LOCK_NAME, "workflow_state.pkl"})
_FILE_SUFFIXES = frozenset({".pkl", ".pickle", ".json", ".jsonl", ".lock", ".db", ".sqlite", ".sqlite3", ".log",
                            ".txt", ".yaml", ".yml", ".toml"})


class _NoValue:
    """Sentinel: ``record`` was given no return value (distinct from a task that returned ``None``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __reduce__(self):
        return (_NoValue, ())


NO_VALUE = _NoValue()


# --------------------------------------------------------------------------------------------- helpers

def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _atomic_write(path: pathlib.Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        _fsync_dir(path.parent)


# At most this share of a run's time goes to writing periodic snapshots (see Journal.snapshot).
_SNAPSHOT_SHARE = 0.02
# ensure_ascii: a line is pure ASCII, and json escapes every control character, so there is no raw newline inside.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=True)
_DECODER = json.JSONDecoder()
_json_str = json.encoder.encode_basestring_ascii   # a str as a JSON string literal (C, pure ASCII)


def _no_json(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# The C encoder behind _ENCODER, made once (JSONEncoder.encode builds one per call): the journal's hot path.
_c_encode = json.encoder.c_make_encoder(None, _no_json, _json_str, None, ":", ",", False, False, True) \
    if json.encoder.c_make_encoder is not None else None


def _encode(obj) -> str:
    if _c_encode is None:
        return _ENCODER.encode(obj)
    return "".join(_c_encode(obj, 0))


def _dumps_line(obj: dict) -> bytes:
    return _ENCODER.encode(obj).encode("ascii") + b"\n"


def _value_filename(name: str) -> str:
    prefix = _SANITIZE_RE.sub("_", name)[:40].strip("._-") or "task"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix}-{digest}-{os.urandom(4).hex()}.pkl"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _public(rec: dict) -> dict:
    return {
        "fingerprint": rec["fingerprint"],
        "status": rec["status"],
        "result": json.loads(rec["result"]) if isinstance(rec["result"], str) else copy.deepcopy(rec["result"]),
        "has_value": rec["value"] is not None,
        "time": rec["time"],
    }


def _check_record_args(name, fingerprint, status, result) -> None:
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    if not isinstance(fingerprint, str):
        raise TypeError(f"fingerprint of task {name!r} must be a str, got {type(fingerprint).__name__}")
    if not isinstance(status, str) or not status:
        raise TypeError(f"status of task {name!r} must be a non-empty str, got {status!r}")
    if not isinstance(result, (dict, str)):
        raise TypeError(f"result of task {name!r} must be a dict, got {type(result).__name__}")
    if isinstance(result, str) and not result.startswith("{"):
        raise TypeError(f"result of task {name!r} must be a dict or the JSON text of one, got {result!r:.80}")


def _counts(records: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in records.values():
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    return dict(sorted(counts.items()))


def _record_problem(obj) -> str | None:
    """Why ``obj`` is not a valid record (None if it is one)."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key, kind in (("name", str), ("fingerprint", str), ("status", str), ("result", dict)):
        if not isinstance(obj.get(key), kind):
            return f"field {key!r} must be a {kind.__name__}, got {obj.get(key)!r:.80}"
    if not obj["status"]:
        return "field 'status' is empty"
    value = obj.get("value")
    if value is not None and not (isinstance(value, str) and _VALUE_RE.match(value)):
        return f"field 'value' must be null or a plain *.pkl file name inside {VALUES_DIR}/, got {value!r:.80}"
    if not _is_number(obj.get("time")):
        return f"field 'time' must be a number, got {obj.get('time')!r:.80}"
    return None


def _internal(obj: dict) -> dict:
    return {
        "fingerprint": obj["fingerprint"],
        "status": obj["status"],
        "result": obj["result"],
        "value": obj.get("value"),
        "time": obj["time"],
    }


def _entry_text(name: str, rec: dict) -> str:
    """One record's line in the snapshot's "records" object (name: record)."""
    return f"\n  {_json_str(name)}: {_ENCODER.encode(rec)}"


def _snapshot_bytes(state: dict, entries: Iterable[str]) -> bytes:
    """JSON, one task per line (readable, grep-able), from each record's cached text (``_entry_text``): a
    snapshot every N records must not re-encode every record each time (``indent=`` would be pure Python, ~10x
    slower)."""
    head = "".join(f" {_json_str(k)}: {_ENCODER.encode(v)},\n" for k, v in state.items())
    return f'{{\n{head} "records": {{{",".join(entries)}\n }}\n}}\n'.encode("ascii")


# --------------------------------------------------------------------------------------------- reading

_INVALID = object()   # "this line is not JSON"


class _Loaded:
    """What was found in a checkpoint directory."""

    def __init__(self):
        self.experiment: str | None = None
        self.records: dict[str, dict] = {}
        self.n_records = 0               # complete record lines in the log
        self.log_exists = False
        self.log_size = 0
        self.ends_with_newline = True
        self.torn: tuple[int, int] | None = None   # (offset, length) of an unterminated, incomplete last line
        self.snapshot: dict | None = None


def _read_snapshot(path: pathlib.Path, experiment: str | None) -> dict | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"snapshot {path} is not valid JSON ({exc}); {_HINT}", str(path)) from None
    if not isinstance(obj, dict) or "molexp_state" not in obj:
        raise CheckpointError(f"snapshot {path} is not a molexp workflow state (no 'molexp_state' key); {_HINT}",
                              str(path))
    if obj["molexp_state"] != FORMAT_VERSION or isinstance(obj["molexp_state"], bool):
        raise CheckpointError(f"snapshot {path} has format version {obj['molexp_state']!r}, this molexp reads "
                              f"version {FORMAT_VERSION}; {_HINT}", str(path))
    if not isinstance(obj.get("experiment"), str):
        raise CheckpointError(f"snapshot {path} has no experiment name; {_HINT}", str(path))
    if experiment is not None and obj["experiment"] != experiment:
        raise CheckpointError(f"snapshot {path} belongs to experiment {obj['experiment']!r}, not {experiment!r}; "
                              f"{_HINT}", str(path))
    records = obj.get("records")
    n_records = obj.get("n_records")
    if not isinstance(records, dict) or not isinstance(n_records, int) or isinstance(n_records, bool):
        raise CheckpointError(f"snapshot {path} lacks 'records' (object) or 'n_records' (integer); {_HINT}", str(path))
    for name, rec in records.items():
        problem = _record_problem({"name": name, **rec}) if isinstance(rec, dict) else "not an object"
        if problem:
            raise CheckpointError(f"snapshot {path}: record {name!r}: {problem}; {_HINT}", str(path))
    return obj


def _read_log(path: pathlib.Path, experiment: str | None, out: _Loaded) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    out.log_exists = True
    out.log_size = len(data)
    where = f"journal {path}"
    if not data:
        raise CheckpointError(f"{where} is empty: not a molexp journal (molexp writes the header atomically); "
                              f"{_HINT}", str(path))
    lines = data.split(b"\n")
    tail = lines.pop()            # b"" when the file ends with a newline
    out.ends_with_newline = tail == b""
    if not lines:
        raise CheckpointError(f"{where} has no complete header line: not a molexp journal; {_HINT}", str(path))

    try:
        header = json.loads(lines[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or "molexp_journal" not in header:
        raise CheckpointError(f"{where}: line 1 is not a molexp journal header; {_HINT}", str(path))
    if header["molexp_journal"] != FORMAT_VERSION or isinstance(header["molexp_journal"], bool):
        raise CheckpointError(f"{where} has format version {header['molexp_journal']!r}, this molexp reads version "
                              f"{FORMAT_VERSION}; {_HINT}", str(path))
    if not isinstance(header.get("experiment"), str):
        raise CheckpointError(f"{where}: header has no experiment name; {_HINT}", str(path))
    if experiment is not None and header["experiment"] != experiment:
        raise CheckpointError(f"{where} belongs to experiment {header['experiment']!r}, not {experiment!r}; {_HINT}",
                              str(path))
    out.experiment = header["experiment"]

    offset = len(lines[0]) + 1
    pending: tuple[int, int, int] | None = None     # (line number, offset, length) of an invalid line
    for lineno, raw in enumerate(lines[1:], start=2):
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            obj = _INVALID
        if pending is not None:
            marker = obj.get("molexp_torn") if isinstance(obj, dict) else None
            if not (isinstance(marker, dict) and marker.get("offset") == pending[1]
                    and marker.get("length") == pending[2]):
                raise CheckpointError(f"{where}: line {pending[0]} is not valid JSON (garbage in the middle of the "
                                      f"log); {_HINT}", str(path))
            pending = None
        elif obj is _INVALID:
            pending = (lineno, offset, len(raw))
        elif isinstance(obj, dict) and "molexp_torn" in obj:
            raise CheckpointError(f"{where}: line {lineno} is a torn-line marker with no torn line before it; "
                                  f"{_HINT}", str(path))
        else:
            problem = _record_problem(obj)
            if problem:
                raise CheckpointError(f"{where}: line {lineno} is not a valid record: {problem}; {_HINT}", str(path))
            out.records[obj["name"]] = _internal(obj)
            out.n_records += 1
        offset += len(raw) + 1
    if pending is not None:
        raise CheckpointError(f"{where}: line {pending[0]} is not valid JSON (garbage in the middle of the log); "
                              f"{_HINT}", str(path))

    if tail:
        # Unterminated last line: a crash mid-write. Keep it only if it is a complete record.
        try:
            obj = json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            obj = _INVALID
        if obj is not _INVALID and isinstance(obj, dict) and _record_problem(obj) is None:
            out.records[obj["name"]] = _internal(obj)
            out.n_records += 1
        else:
            out.torn = (offset, len(tail))


def _load(directory: pathlib.Path, experiment: str | None) -> _Loaded:
    out = _Loaded()
    snap_path = directory / SNAPSHOT_NAME
    log_path = directory / JOURNAL_NAME
    # The snapshot is read first: the log only grows, so a concurrent writer cannot make the log look shorter.
    # The log is checked for the experiment first, so a foreign checkpoint is reported by its source of truth.
    snapshot = _read_snapshot(snap_path, None)
    _read_log(log_path, experiment, out)
    out.snapshot = snapshot
    if snapshot is not None:
        if experiment is not None and snapshot["experiment"] != experiment:
            raise CheckpointError(f"snapshot {snap_path} belongs to experiment {snapshot['experiment']!r}, not "
                                  f"{experiment!r}; {_HINT}", str(snap_path))
        if out.log_exists:
            if snapshot["experiment"] != out.experiment:
                raise CheckpointError(f"snapshot {snap_path} belongs to experiment {snapshot['experiment']!r} but the "
                                      f"journal {log_path} to {out.experiment!r}; {_HINT}", str(snap_path))
            if out.n_records < snapshot["n_records"]:
                raise CheckpointError(
                    f"journal {log_path} holds {out.n_records} records but the snapshot {snap_path} was written "
                    f"after {snapshot['n_records']}: the journal was truncated or replaced; {_HINT} (or move the "
                    f"snapshot away to trust the journal as it is)", str(log_path))
        else:
            out.experiment = snapshot["experiment"]
            out.records = {name: _internal({"name": name, **rec}) for name, rec in snapshot["records"].items()}
    return out


# --------------------------------------------------------------------------------------------- lock

def _read_holder(lock_path: pathlib.Path) -> dict | None:
    try:
        obj = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(directory: pathlib.Path) -> int:
    lock_path = directory / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        holder = None
        for _ in range(20):   # the holder writes its pid right after locking: give it a moment
            holder = _read_holder(lock_path)
            if holder and "pid" in holder:
                break
            time.sleep(0.01)
        if holder and "pid" in holder:
            who = f"pid {holder['pid']} on host {holder.get('host', '?')}"
            if holder.get("since"):
                who += f" since {holder['since']}"
        else:
            who = "a process whose pid is unknown"
        err = CheckpointLocked(f"checkpoint directory {directory} is locked by another live run ({who}; lock file "
                               f"{lock_path}); wait for it to finish or use another checkpoint_dir", str(directory))
        err.holder = holder
        raise err from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release_lock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)      # clear the holder info while still holding the lock
    except OSError:
        pass
    try:
        # Unlock explicitly: a copy of the descriptor in a forked child would otherwise keep the lock.
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        # name -> the record's text in the snapshot, kept from when it was recorded
        self._entries: dict[str, str] = {name: _entry_text(name, rec) for name, rec in self._records.items()}
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
        data = _snapshot_bytes(state, self._entries.values())
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
        file = self._values_dir / rec["value"]    # a plain file name: validated on read
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise CheckpointError(f"value file {file} of task {name!r} cannot be opened ({exc.strerror}); the task "
                                  f"must be run again", str(file)) from None
        try:
            with os.fdopen(fd, "rb") as fh:
                data = fh.read()
            return cloudpickle.loads(data)
        except Exception as exc:
            raise CheckpointError(f"value file {file} of task {name!r} is unreadable ({type(exc).__name__}: "
                                  f"{exc}); the task must be run again", str(file)) from None

    # ----------------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Snapshot, fsync the log, release the lock. Idempotent."""
        if self._closed:
            return
        try:
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


# --------------------------------------------------------------------------------------------- module functions

def read_state(directory: str | os.PathLike) -> dict:
    """Read-only view of a checkpoint directory, for ``molexp status``. Takes no lock; works during a run.

    Returns ``{"directory", "experiment", "records" (latest per task, shape of ``Journal.records()``), "counts"
    (by status), "n_records", "snapshot_time" (or None), "holder" (lock file info with "alive": bool|None, or
    None)}``. ``CheckpointError`` on corrupt or inconsistent files; ``FileNotFoundError`` if the directory holds
    neither a journal nor a snapshot. A torn last line (a run writing right now, or a crash) is ignored.
    """
    path = pathlib.Path(directory).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(errno.ENOENT, "checkpoint directory does not exist", str(path))
    loaded = _load(path, None)
    if not loaded.log_exists and loaded.snapshot is None:
        raise FileNotFoundError(errno.ENOENT, f"no molexp checkpoint ({JOURNAL_NAME} or {SNAPSHOT_NAME}) in",
                                str(path))
    holder = _read_holder(path / LOCK_NAME)
    if holder is not None:
        pid = holder.get("pid")
        alive = None
        if isinstance(pid, int) and holder.get("host") == socket.gethostname():
            alive = _pid_alive(pid)
        holder = {**holder, "alive": alive}
    return {
        "directory": str(path),
        "experiment": loaded.experiment,
        "records": {name: _public(rec) for name, rec in loaded.records.items()},
        "counts": _counts(loaded.records),
        "n_records": loaded.n_records if loaded.log_exists else loaded.snapshot["n_records"],
        "snapshot_time": loaded.snapshot.get("time") if loaded.snapshot else None,
        "holder": holder,
    }


def find_checkpoint_dir(path: str | os.PathLike) -> pathlib.Path:
    """Map ``path`` - the checkpoint directory itself, or any file path inside it, existing or not - to the directory.

    * an existing directory -> itself;
    * an existing non-directory -> its parent;
    * a non-existing path -> its parent if its name is a checkpoint file name (``workflow_state.pkl``,
      ``journal.jsonl``, ...), has a file suffix (``.pkl``, ``.json``, ...), or its parent already holds a journal;
      otherwise the path itself (a directory still to be created).

    So ``find_checkpoint_dir("checkpoints/workflow_state.pkl")`` is ``checkpoints``.
    """
    p = pathlib.Path(path).expanduser()
    if p.is_dir():
        return p
    if os.path.lexists(p):
        return p.parent
    if p.name in _KNOWN_FILES or p.suffix.lower() in _FILE_SUFFIXES or (p.parent / JOURNAL_NAME).is_file():
        return p.parent
    return p
