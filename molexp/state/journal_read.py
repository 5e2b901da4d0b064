"""Reading a checkpoint directory: the snapshot and the log validated and cross-checked (``_load``, for
``Journal.open``), the lock-free, read-only view of ``molexp status`` (``read_state``), and stored values
(``read_value``, ``load_value_file``).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import socket

from ..errors import CheckpointError
from .journal_format import (_FILE_SUFFIXES, _HINT, _KNOWN_FILES, _VALUE_RE, FORMAT_VERSION, JOURNAL_NAME,
                             LOCK_NAME, SNAPSHOT_NAME, VALUES_DIR, CHECKSUM_KEY, _counts, _internal, _public,
                             _record_problem, snapshot_head)
from .journal_io import _pid_alive, _read_holder

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
        self.snapshot: dict | None = None   # its head only (no "records") when the log exists and it is intact
        self.snapshot_intact = False       # the snapshot's checksum and size match: it is as molexp wrote it


def _read_snapshot(path: pathlib.Path, data: bytes | None, *, records: bool, out: _Loaded) -> dict | None:
    """The snapshot in ``data`` (its bytes, None if there is none), checked. Without ``records`` (the log
    exists and is the truth) a snapshot whose checksum and size match is trusted as written and only its head
    is read; anything else is parsed and validated in full (``CheckpointError`` when it is not valid)."""
    if data is None:
        return None
    if not records:
        head = snapshot_head(data)
        if head is not None:
            _check_snapshot_head(path, head)
            out.snapshot_intact = True
            return head
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"snapshot {path} is not valid JSON ({exc}); {_HINT}", str(path)) from None
    _check_snapshot_head(path, obj)
    recs = obj.get("records")
    if not isinstance(recs, dict):
        raise CheckpointError(f"snapshot {path} lacks 'records' (object) or 'n_records' (integer); {_HINT}", str(path))
    for name, rec in recs.items():
        problem = _record_problem({"name": name, **rec}) if isinstance(rec, dict) else "not an object"
        if problem:
            raise CheckpointError(f"snapshot {path}: record {name!r}: {problem}; {_HINT}", str(path))
    out.snapshot_intact = snapshot_head(data) is not None
    if records and not out.snapshot_intact and CHECKSUM_KEY in obj:
        # The only source of the records, and not what molexp wrote (cut, edited, bits flipped): not trusted.
        raise CheckpointError(f"snapshot {path} does not match its checksum (it was modified or is corrupt) and "
                              f"there is no journal to check it against; {_HINT}", str(path))
    return obj


def _check_snapshot_head(path: pathlib.Path, obj) -> None:
    if not isinstance(obj, dict) or "molexp_state" not in obj:
        raise CheckpointError(f"snapshot {path} is not a molexp workflow state (no 'molexp_state' key); {_HINT}",
                              str(path))
    if obj["molexp_state"] != FORMAT_VERSION or isinstance(obj["molexp_state"], bool):
        raise CheckpointError(f"snapshot {path} has format version {obj['molexp_state']!r}, this molexp reads "
                              f"version {FORMAT_VERSION}; {_HINT}", str(path))
    if not isinstance(obj.get("experiment"), str):
        raise CheckpointError(f"snapshot {path} has no experiment name; {_HINT}", str(path))
    n_records = obj.get("n_records")
    if not isinstance(n_records, int) or isinstance(n_records, bool):
        raise CheckpointError(f"snapshot {path} lacks 'records' (object) or 'n_records' (integer); {_HINT}", str(path))


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
    try:
        snap_data: bytes | None = snap_path.read_bytes()
    except FileNotFoundError:
        snap_data = None
    _read_log(log_path, experiment, out)
    # With a log (the truth), an intact snapshot's records are not parsed: ~0.1 s for 10,000 tasks.
    snapshot = _read_snapshot(snap_path, snap_data, records=not out.log_exists, out=out)
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


def load_value_file(file: pathlib.Path, task: str) -> object:
    """The value stored in ``file`` (a ``values/`` pickle) for ``task``; ``CheckpointError`` naming the file when
    it is missing, a link, or cannot be unpickled. Reading a pickle runs code: only a checkpoint's own
    ``values/`` files are read (the callers check the name against the record)."""
    import cloudpickle

    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CheckpointError(f"value file {file} of task {task!r} cannot be opened ({exc.strerror}); the task "
                              f"must be run again", str(file)) from None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
        return cloudpickle.loads(data)
    except Exception as exc:
        raise CheckpointError(f"value file {file} of task {task!r} is unreadable ({type(exc).__name__}: "
                              f"{exc}); the task must be run again", str(file)) from None


def read_value(directory: str | os.PathLike, task: str) -> object:
    """The stored return value of ``task`` in the checkpoint at ``directory`` (as ``molexp show`` prints it).
    Takes no lock, so it works during a run. ``KeyError`` when the task has no record or its latest record has
    no stored value; ``CheckpointError`` when the value file is unreadable."""
    path = find_checkpoint_dir(directory)
    rec = _load(path, None).records.get(task)
    if rec is None:
        raise KeyError(f"no record of task {task!r} in {path}")
    name = rec.get("value")
    if name is None:
        raise KeyError(f"the latest record of task {task!r} in {path} has no stored value")
    if not (isinstance(name, str) and _VALUE_RE.match(name)):
        raise CheckpointError(f"the record of task {task!r} in {path} names no plain value file: {name!r:.80}",
                              str(path))
    return load_value_file(path / VALUES_DIR / name, task)
