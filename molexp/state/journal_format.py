"""The journal's on-disk format: file names, what a record holds, how records and snapshots are encoded
and validated. The files and why they are what they are: ``molexp.state.journal``'s docstring.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import zlib
from collections.abc import Iterable

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


CHECKSUM_KEY = "checksum"
_RECORDS_START = b'\n "records": {'


def _snapshot_bytes(state: dict, entries: Iterable[str]) -> bytes:
    """JSON, one task per line (readable, grep-able), from each record's cached text (``_entry_text``): a
    snapshot every N records must not re-encode every record each time (``indent=`` would be pure Python, ~10x
    slower).

    The head's last key, ``"checksum": [crc32, size]``, is the CRC-32 of every byte of the file but that
    line, and the file's size: ``snapshot_head`` trusts the head without parsing the records (8 MB for 10,000
    tasks) only when both match, so a torn, cut or edited snapshot is always parsed and checked in full."""
    head = "".join(f" {_json_str(k)}: {_ENCODER.encode(v)},\n" for k, v in state.items())
    before = f"{{\n{head}".encode("ascii")
    body = f' "records": {{{",".join(entries)}\n }}\n}}\n'.encode("ascii")
    crc = zlib.crc32(body, zlib.crc32(before))
    # The size is written last and counts its own digits: find the width that fits.
    width = 1
    while True:
        line = f' "{CHECKSUM_KEY}": [{crc}, {len(before) + len(body) + _line_len(crc, width)}],\n'
        if len(line) == _line_len(crc, width):
            return b"".join((before, line.encode("ascii"), body))
        width += 1


def _line_len(crc: int, width: int) -> int:
    return len(f' "{CHECKSUM_KEY}": [{crc}, ],\n') + width


def snapshot_head(data: bytes) -> dict | None:
    """The head of a snapshot (every key but ``records``) when its checksum and size match ``data``: the
    snapshot is then exactly as molexp wrote it, and its records need not be parsed. None when anything does
    not match (no checksum: an older molexp; a torn, cut or edited file): the caller parses it in full."""
    i = data.find(_RECORDS_START) + 1
    if i <= 0:
        return None
    j = data.rfind(b"\n", 0, i - 1) + 1
    prefix = b' "' + CHECKSUM_KEY.encode() + b'": ['
    line = data[j:i]
    if not (line.startswith(prefix) and line.endswith(b"],\n")):
        return None
    try:
        crc, size = (int(x) for x in line[len(prefix):-3].split(b", "))
    except ValueError:
        return None
    if size != len(data):
        return None
    view = memoryview(data)
    if zlib.crc32(view[i:], zlib.crc32(view[:j])) != crc:
        return None
    try:
        head = json.loads(data[:j].rstrip(b",\n") + b"\n}")
    except ValueError:
        return None
    return head if isinstance(head, dict) else None
