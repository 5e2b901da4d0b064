"""Tests of molexp.state.journal with real files and real processes (no mocks)."""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import molexp.state.journal as journal_module

from molexp.errors import CheckpointError, CheckpointLocked
from molexp.state.journal import (
    JOURNAL_NAME,
    LOCK_NAME,
    SNAPSHOT_NAME,
    VALUES_DIR,
    Journal,
    find_checkpoint_dir,
    read_state,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


class Payload:
    """A custom class defined in the test module; its instances must round-trip through load_value."""

    def __init__(self, label, items):
        self.label = label
        self.items = items

    def __eq__(self, other):
        return isinstance(other, Payload) and (self.label, self.items) == (other.label, other.items)


# ----------------------------------------------------------------------------------------- helpers

CHILD = textwrap.dedent(
    """
    import sys, time
    from molexp.state.journal import Journal
    directory, n = sys.argv[1], int(sys.argv[2])
    j = Journal.open(directory, experiment="exp", snapshot_interval=1000)
    for i in range(n):
        if i % 2 == 0:
            j.record(f"task-{i}", f"fp-{i}", "completed", {"rc": 0, "i": i}, {"i": i, "sq": i * i})
        else:
            j.record(f"task-{i}", f"fp-{i}", "failed" if i % 3 == 0 else "completed", {"rc": i % 3})
    print("ready", flush=True)
    time.sleep(120)
    """
)


def start_child(directory, n):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"child did not start: {line!r} {proc.stderr.read()}")
    return proc


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def file_states(directory):
    """Bytes and mtime of every file under ``directory`` except the lock file."""
    out = {}
    for p in sorted(pathlib.Path(directory).rglob("*")):
        if p.is_file() and p.name != LOCK_NAME:
            st = p.stat()
            out[str(p)] = (p.read_bytes(), st.st_mtime_ns, st.st_size)
    return out


def lock_is_free(directory):
    fd = os.open(pathlib.Path(directory) / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def make_journal(directory, n=3, experiment="exp"):
    with Journal.open(directory, experiment=experiment) as j:
        for i in range(n):
            j.record(f"t{i}", f"fp{i}", "completed", {"rc": 0, "i": i})


# ----------------------------------------------------------------------------------------- basics

def test_record_and_reopen_keeps_everything(tmp_path):
    d = tmp_path / "ckpt" / "nested"
    with Journal.open(d, experiment="exp") as j:
        assert j.path == d
        j.record("a", "fa", "completed", {"rc": 0, "log": "/x/a.log", "t": [1.5, 2.5]})
        j.record("b", "fb", "cached", {"rc": 0}, value=[1, 2, 3])
        j.record("c", "fc", "failed", {"rc": 2, "error": "boom\nline two"})
        j.record("d", "fd", "completed", {}, value=None)   # a task that returned None still has a value
    assert (d / JOURNAL_NAME).is_file() and (d / SNAPSHOT_NAME).is_file()
    with Journal.open(d, experiment="exp") as j:
        recs = j.records()
        assert set(recs) == {"a", "b", "c", "d"}
        assert recs["a"]["result"] == {"rc": 0, "log": "/x/a.log", "t": [1.5, 2.5]}
        assert recs["a"]["fingerprint"] == "fa" and recs["a"]["has_value"] is False
        assert recs["c"] == {**recs["c"], "status": "failed", "result": {"rc": 2, "error": "boom\nline two"}}
        comp = j.completed()
        assert set(comp) == {"a", "b", "d"}
        assert comp["b"]["status"] == "cached" and comp["b"]["has_value"] is True
        assert j.load_value("b") == [1, 2, 3]
        assert comp["d"]["has_value"] is True and j.load_value("d") is None
        with pytest.raises(KeyError):
            j.load_value("a")
        with pytest.raises(KeyError):
            j.load_value("nope")
        # returned dicts are copies: mutating them does not change the journal
        comp["a"]["result"]["rc"] = 99
        assert j.completed()["a"]["result"]["rc"] == 0
    lines = (d / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(lines[0])["molexp_journal"] == 1 and json.loads(lines[0])["experiment"] == "exp"
    assert len(lines) == 5


def test_superseding_records(tmp_path):
    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("x", "f1", "completed", {"n": 1}, value="first")
        j.record("y", "g1", "failed", {"n": 1})
        assert set(j.completed()) == {"x"}
        j.record("x", "f2", "failed", {"n": 2})          # a later failure removes x from completed()
        j.record("y", "g2", "completed", {"n": 2}, value="second")
        assert set(j.completed()) == {"y"}
        assert j.records()["x"]["status"] == "failed" and j.records()["x"]["has_value"] is False
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.completed()) == {"y"}
        assert j.completed()["y"]["fingerprint"] == "g2"
        assert j.records()["x"] == {**j.records()["x"], "fingerprint": "f2", "status": "failed", "result": {"n": 2}}
        assert j.load_value("y") == "second"
        j.record("x", "f3", "completed", {"n": 3}, value="third")
    with Journal.open(tmp_path, experiment="exp") as j:
        assert j.completed()["x"]["fingerprint"] == "f3" and j.load_value("x") == "third"
    # the superseded value file of x ("first") was removed; only the live ones remain
    assert len(list((tmp_path / VALUES_DIR).glob("*.pkl"))) == 2


def test_value_round_trip_custom_class_and_odd_names(tmp_path):
    nested = {"a": [1, 2, {"b": (3, 4)}], "s": {"x", "y"}, "bytes": b"\x00\xff", "none": None}
    odd = "../../etc/passwd\n\x00 ü/..\\ spaces " + "z" * 300
    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("nested", "f", "completed", {}, value=nested)
        j.record("custom", "f", "completed", {}, value=Payload("p", [1, 2]))
        j.record(odd, "f", "completed", {"odd": True}, value=Payload(odd, []))
    with Journal.open(tmp_path, experiment="exp") as j:
        assert j.load_value("nested") == nested
        got = j.load_value("custom")
        assert type(got) is Payload and got == Payload("p", [1, 2])
        assert j.load_value(odd) == Payload(odd, [])
        assert j.completed()[odd]["result"] == {"odd": True}
    files = list((tmp_path / VALUES_DIR).iterdir())
    assert len(files) == 3
    for f in files:   # every value file is a plain, safe name directly inside values/
        assert f.parent == tmp_path / VALUES_DIR and f.suffix == ".pkl"
        assert len(f.name) < 100 and "/" not in f.name and not f.name.startswith(".")
    assert not (tmp_path.parent / "etc").exists()


def test_value_file_missing_or_tampered_raises_checkpoint_error(tmp_path):
    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("v", "f", "completed", {}, value={"k": 1})
        j.record("w", "f", "completed", {}, value={"k": 2})
    (vfile,) = [p for p in (tmp_path / VALUES_DIR).iterdir() if p.name.startswith("v-")]
    vfile.unlink()
    (wfile,) = list((tmp_path / VALUES_DIR).iterdir())
    wfile.write_bytes(b"not a pickle")
    with Journal.open(tmp_path, experiment="exp") as j:
        with pytest.raises(CheckpointError) as ei:
            j.load_value("v")
        assert ei.value.path == str(vfile) and str(vfile) in str(ei.value)
        with pytest.raises(CheckpointError) as ei:
            j.load_value("w")
        assert ei.value.path == str(wfile)
    # a log line pointing a value outside values/ is rejected as corrupt, not followed
    log = tmp_path / JOURNAL_NAME
    line = {"name": "evil", "fingerprint": "f", "status": "completed", "result": {}, "value": "../../x.pkl",
            "time": 1.0}
    with open(log, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    with pytest.raises(CheckpointError) as ei:
        Journal.open(tmp_path, experiment="exp")
    assert ei.value.path == str(log)


def test_unserialisable_result_writes_nothing(tmp_path):
    with Journal.open(tmp_path, experiment="exp") as j:
        before = (tmp_path / JOURNAL_NAME).read_bytes()
        with pytest.raises(TypeError):
            j.record("a", "f", "completed", {"obj": object()}, value=[1])
        assert (tmp_path / JOURNAL_NAME).read_bytes() == before
        assert not (tmp_path / VALUES_DIR).exists() or not list((tmp_path / VALUES_DIR).iterdir())
        assert j.records() == {}


# ----------------------------------------------------------------------------------------- processes, lock

def test_kill9_loses_nothing_and_lock_is_taken_over(tmp_path):
    n = 50
    proc = start_child(tmp_path, n)
    try:
        with pytest.raises(CheckpointLocked):
            Journal.open(tmp_path, experiment="exp")
    finally:
        kill9(proc)
    assert proc.returncode == -signal.SIGKILL
    # the child never snapshotted (interval 1000) nor closed: everything must come from the log
    assert not (tmp_path / SNAPSHOT_NAME).exists()
    with Journal.open(tmp_path, experiment="exp") as j:
        recs = j.records()
        assert len(recs) == n
        for i in range(n):
            assert recs[f"task-{i}"]["fingerprint"] == f"fp-{i}"
        for i in range(0, n, 2):
            assert j.load_value(f"task-{i}") == {"i": i, "sq": i * i}
        expected_failed = {f"task-{i}" for i in range(n) if i % 2 and i % 3 == 0}
        assert set(recs) - set(j.completed()) == expected_failed
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
        assert not lock_is_free(tmp_path)
    assert lock_is_free(tmp_path)


def test_second_open_while_live_process_holds_lock(tmp_path):
    proc = start_child(tmp_path, 3)
    try:
        before = file_states(tmp_path)
        with pytest.raises(CheckpointLocked) as ei:
            Journal.open(tmp_path, experiment="exp")
        msg = str(ei.value)
        assert f"pid {proc.pid}" in msg and str(tmp_path) in msg
        assert ei.value.path == str(tmp_path)
        assert isinstance(ei.value, CheckpointError)
        assert ei.value.holder["pid"] == proc.pid
        assert file_states(tmp_path) == before          # the failed open changed nothing
        assert proc.poll() is None
    finally:
        kill9(proc)


def test_same_process_second_open_is_locked_and_close_releases(tmp_path):
    j = Journal.open(tmp_path, experiment="exp")
    with pytest.raises(CheckpointLocked) as ei:
        Journal.open(tmp_path, experiment="exp")
    assert f"pid {os.getpid()}" in str(ei.value)
    j.close()
    j.close()   # idempotent
    with pytest.raises(ValueError):
        j.record("a", "f", "completed", {})
    assert (tmp_path / LOCK_NAME).read_text() == ""    # holder info cleared on release
    Journal.open(tmp_path, experiment="exp").close()


def test_forked_child_does_not_keep_the_lock(tmp_path):
    j = Journal.open(tmp_path, experiment="exp")
    j.record("a", "f", "completed", {})
    pid = os.fork()
    if pid == 0:   # child: outlive the parent's close(); must not hold the lock nor write anything
        try:
            time.sleep(3)
        finally:
            os._exit(0)
    try:
        j.close()
        t0 = time.monotonic()
        with Journal.open(tmp_path, experiment="exp") as j2:   # would raise CheckpointLocked if the child held it
            assert set(j2.records()) == {"a"}
        assert time.monotonic() - t0 < 2.5
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# ----------------------------------------------------------------------------------------- torn and corrupt files

def test_torn_last_line_is_tolerated_and_next_record_readable(tmp_path):
    make_journal(tmp_path, 2)
    log = tmp_path / JOURNAL_NAME
    torn = b'{"name":"t9","fingerprint":"fp9","status":"compl'
    with open(log, "ab") as fh:
        fh.write(torn)
    state = read_state(tmp_path)                   # the lock-free reader tolerates it too, and changes nothing
    assert set(state["records"]) == {"t0", "t1"}
    assert log.read_bytes().endswith(torn)
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.records()) == {"t0", "t1"}
        j.record("after", "fa", "completed", {"ok": True})
    raw = log.read_bytes()
    assert torn + b"\n" in raw                       # the torn bytes are kept, terminated, not glued onto
    assert raw.splitlines()[-1].startswith(b'{"name":"after"')
    for _ in range(2):                               # stable across reopenings
        with Journal.open(tmp_path, experiment="exp") as j:
            assert set(j.records()) == {"t0", "t1", "after"}
            assert j.completed()["after"]["result"] == {"ok": True}
    # a second crash leaving another torn line later is handled the same way
    with open(log, "ab") as fh:
        fh.write(b'{"name":')
    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("later", "fl", "completed", {})
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.records()) == {"t0", "t1", "after", "later"}


def test_complete_last_record_without_newline_is_kept(tmp_path):
    make_journal(tmp_path, 1)
    log = tmp_path / JOURNAL_NAME
    line = {"name": "z", "fingerprint": "fz", "status": "completed", "result": {}, "value": None, "time": 1.0}
    with open(log, "ab") as fh:
        fh.write(json.dumps(line).encode())
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.completed()) == {"t0", "z"}
        j.record("y", "fy", "completed", {})
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.completed()) == {"t0", "z", "y"}


def _assert_rejected(directory, experiment, bad_file, corrupt=True):
    before = file_states(directory)
    with pytest.raises(CheckpointError) as ei:
        Journal.open(directory, experiment=experiment)
    assert not isinstance(ei.value, CheckpointLocked)
    assert ei.value.path == str(bad_file)
    assert str(bad_file) in str(ei.value)
    assert file_states(directory) == before           # bytes and mtimes unchanged, nothing added or removed
    assert lock_is_free(directory)                    # the lock was released on the error path
    if corrupt:
        with pytest.raises(CheckpointError):          # and read_state rejects it the same way
            read_state(directory)
    else:                                             # a foreign checkpoint is readable by read_state
        assert read_state(directory)["experiment"] != experiment
    return ei.value


def test_garbage_in_the_middle_raises_and_leaves_file_unchanged(tmp_path):
    make_journal(tmp_path, 3)
    log = tmp_path / JOURNAL_NAME
    lines = log.read_bytes().splitlines(keepends=True)
    lines.insert(2, b"this is not json\n")
    log.write_bytes(b"".join(lines))
    err = _assert_rejected(tmp_path, "exp", log)
    assert "line 3" in str(err)


def test_truncated_record_in_the_middle_raises(tmp_path):
    make_journal(tmp_path, 3)
    log = tmp_path / JOURNAL_NAME
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:20] + b"\n"                  # torn, but not the last line and no marker names it
    log.write_bytes(b"".join(lines))
    _assert_rejected(tmp_path, "exp", log)


def test_valid_json_but_not_a_record_raises(tmp_path):
    make_journal(tmp_path, 2)
    log = tmp_path / JOURNAL_NAME
    with open(log, "ab") as fh:
        fh.write(b'{"name": "q", "status": 3}\n')
    _assert_rejected(tmp_path, "exp", log)


@pytest.mark.parametrize("header", [b'{"something": 1}\n', b'{"molexp_journal": 7, "experiment": "exp"}\n',
                                    b"PK\x03\x04binary\n", b""])
def test_wrong_header_raises_and_leaves_file_unchanged(tmp_path, header):
    make_journal(tmp_path, 2)
    log = tmp_path / JOURNAL_NAME
    (tmp_path / SNAPSHOT_NAME).unlink()
    body = log.read_bytes().split(b"\n", 1)[1]
    log.write_bytes(header + body if header else b"")
    _assert_rejected(tmp_path, "exp", log)


def test_other_experiments_journal_raises(tmp_path):
    make_journal(tmp_path, 2, experiment="alpha")
    err = _assert_rejected(tmp_path, "beta", tmp_path / JOURNAL_NAME, corrupt=False)
    assert "'alpha'" in str(err) and "'beta'" in str(err)
    with Journal.open(tmp_path, experiment="alpha") as j:    # still fine for its own experiment
        assert len(j.records()) == 2


def test_other_experiments_snapshot_raises(tmp_path):
    make_journal(tmp_path, 2, experiment="alpha")
    os.rename(tmp_path / JOURNAL_NAME, tmp_path / "moved-away.jsonl")
    _assert_rejected(tmp_path, "beta", tmp_path / SNAPSHOT_NAME, corrupt=False)


def test_corrupt_snapshot_raises(tmp_path):
    make_journal(tmp_path, 2)
    snap = tmp_path / SNAPSHOT_NAME
    snap.write_bytes(snap.read_bytes()[:-40])
    _assert_rejected(tmp_path, "exp", snap)


def test_intact_snapshot_is_trusted_by_its_head_without_parsing_its_records(tmp_path):
    """With a log, a snapshot whose checksum and size match is read by its head only (its records are not
    parsed), and a journal closed without a record leaves it byte for byte."""
    from molexp.state.journal_read import _load

    make_journal(tmp_path, 4)
    snap = tmp_path / SNAPSHOT_NAME
    data = snap.read_bytes()
    crc, size = json.loads(data)["checksum"]
    assert size == len(data)
    loaded = _load(tmp_path, "exp")
    assert loaded.snapshot_intact and "records" not in loaded.snapshot and loaded.snapshot["n_records"] == 4
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.records()) == {"t0", "t1", "t2", "t3"}
    assert snap.read_bytes() == data


@pytest.mark.parametrize("edit", ["record", "head", "no checksum", "checksum"])
def test_snapshot_checksum_mismatch_is_parsed_in_full_and_rewritten(tmp_path, edit):
    """A snapshot that is still valid JSON but not what molexp wrote (a record or its head edited, an older
    molexp's without a checksum, a wrong checksum) is parsed and checked in full, the log's records win, and
    close() writes it again, intact."""
    from molexp.state.journal_read import _load

    make_journal(tmp_path, 3)
    snap = tmp_path / SNAPSHOT_NAME
    data = snap.read_bytes()
    if edit == "record":      # same length: only the checksum tells
        bad = data.replace(b'"status":"completed"', b'"status":"cached!!!"', 1)
    elif edit == "head":
        bad = data.replace(b'"experiment": "exp"', b'"experiment": "exp", "note": 1', 1)
    elif edit == "no checksum":
        bad = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b' "checksum"'))
    else:
        crc, size = json.loads(data)["checksum"]
        bad = data.replace(f"[{crc}, {size}]".encode(), f"[{(crc + 1) % 2**32}, {size}]".encode())
    assert bad != data
    snap.write_bytes(bad)
    loaded = _load(tmp_path, "exp")
    assert not loaded.snapshot_intact and "records" in loaded.snapshot      # parsed and validated in full
    assert {n: r["status"] for n, r in loaded.records.items()} == {f"t{i}": "completed" for i in range(3)}
    with Journal.open(tmp_path, experiment="exp") as j:                       # truthful: the log's records
        assert {n: r["status"] for n, r in j.records().items()} == {f"t{i}": "completed" for i in range(3)}
    again = _load(tmp_path, "exp")
    assert again.snapshot_intact and json.loads(snap.read_bytes())["records"]["t0"]["status"] == "completed"


def test_snapshot_damaged_in_place_is_rejected(tmp_path):
    """A byte of the records overwritten (same size, no longer JSON): the checksum does not match, the full
    parse finds it, and the checkpoint is refused as before, untouched."""
    make_journal(tmp_path, 3)
    snap = tmp_path / SNAPSHOT_NAME
    data = bytearray(snap.read_bytes())
    data[data.index(b'"t1"') + 3] = ord("x")     # '"t1x' : the string is no longer closed
    snap.write_bytes(bytes(data))
    _assert_rejected(tmp_path, "exp", snap)


def test_edited_snapshot_without_a_log_is_not_trusted(tmp_path):
    """With no log, the snapshot is the only source of records: one that does not match its checksum is
    refused (naming it), never used to call a task done."""
    make_journal(tmp_path, 3)
    os.rename(tmp_path / JOURNAL_NAME, tmp_path / "lost.jsonl")
    snap = tmp_path / SNAPSHOT_NAME
    snap.write_bytes(snap.read_bytes().replace(b'"fingerprint":"fp1"', b'"fingerprint":"fp9"', 1))
    err = _assert_rejected(tmp_path, "exp", snap)
    assert "checksum" in str(err)


def test_truncated_log_detected_against_snapshot(tmp_path):
    make_journal(tmp_path, 5)
    log = tmp_path / JOURNAL_NAME
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]))               # header + 2 of 5 records, cut at a line boundary
    err = _assert_rejected(tmp_path, "exp", log)
    assert "truncated" in str(err)


def test_missing_log_is_rebuilt_from_snapshot(tmp_path):
    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("a", "f1", "completed", {}, value=1)
        j.record("a", "f2", "completed", {}, value=2)   # superseded lines: snapshot n_records 3 > its 2 tasks
        j.record("b", "g", "failed", {})
    os.rename(tmp_path / JOURNAL_NAME, tmp_path / "lost.jsonl")
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.records()) == {"a", "b"} and j.load_value("a") == 2
    with Journal.open(tmp_path, experiment="exp") as j:  # the rebuilt log and the snapshot agree
        assert set(j.completed()) == {"a"}


def test_directory_path_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckpointError):
        Journal.open(f, experiment="exp")
    assert f.read_text() == "x"


# ----------------------------------------------------------------------------------------- snapshots

def test_snapshot_every_n_records_and_at_close(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "_SNAPSHOT_SHARE", 1.0)  # no spacing: exactly every N records
    snap = tmp_path / SNAPSHOT_NAME
    j = Journal.open(tmp_path, experiment="exp", snapshot_interval=3)
    j.record("a", "f", "completed", {})
    j.record("b", "f", "failed", {})
    assert not snap.exists()
    j.record("c", "f", "cached", {})
    s = json.loads(snap.read_text())
    assert s["experiment"] == "exp" and s["n_records"] == 3
    assert s["counts"] == {"cached": 1, "completed": 1, "failed": 1}
    assert set(s["records"]) == {"a", "b", "c"}
    for name in "defg":
        j.record(name, "f", "completed", {})
    s = json.loads(snap.read_text())
    assert s["n_records"] == 6 and "g" not in s["records"]
    j.close()
    s = json.loads(snap.read_text())
    assert s["n_records"] == 7 and s["counts"] == {"cached": 1, "completed": 5, "failed": 1}
    assert s["records"]["b"]["status"] == "failed" and isinstance(s["time"], float)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_snapshots_are_spaced_so_they_cost_a_small_share_of_the_run(tmp_path, monkeypatch):
    """Each snapshot rewrites every record: written after every record, n records would cost O(n^2)."""
    snap = tmp_path / SNAPSHOT_NAME
    written = []
    real = journal_module._atomic_write

    def counting(path, data, **kw):
        if path.name == SNAPSHOT_NAME:
            written.append(json.loads(data)["n_records"])
        real(path, data, **kw)

    monkeypatch.setattr(journal_module, "_atomic_write", counting)
    j = Journal.open(tmp_path, experiment="exp", snapshot_interval=1)
    big = {"stdout": "x" * 2000}
    for i in range(2000):
        j.record(f"t{i}", "f", "completed", big)
    assert written[0] == 1            # the first one is on time
    assert 2 <= len(written) < 400    # later ones are spaced out, not one per record
    j.close()
    assert json.loads(snap.read_bytes())["n_records"] == 2000   # and close() always writes the last one


def test_close_keeps_a_current_snapshot_and_rewrites_a_stale_or_missing_one(tmp_path):
    """A journal opened and closed without a record (a resume that reuses every task) leaves a current snapshot
    as it is; a stale or missing one is written again; one record makes close() write it, the records read from
    disk keeping their order and content."""
    snap = tmp_path / SNAPSHOT_NAME
    with Journal.open(tmp_path, experiment="exp") as j:
        for name in "abc":
            j.record(name, "f", "completed", {"rc": 0, "name": name}, value=name.upper())
    before, stat_before = snap.read_bytes(), snap.stat()
    time.sleep(0.01)
    with Journal.open(tmp_path, experiment="exp") as j:
        assert set(j.records()) == {"a", "b", "c"}
    assert snap.read_bytes() == before and snap.stat().st_mtime_ns == stat_before.st_mtime_ns

    stale = json.loads(before)
    stale["n_records"] = 2
    stale["records"].pop("c")
    snap.write_text(json.dumps(stale))   # as a periodic snapshot written before the last record
    with Journal.open(tmp_path, experiment="exp"):
        pass
    rewritten = json.loads(snap.read_bytes())
    assert rewritten["n_records"] == 3 and set(rewritten["records"]) == set("abc")
    snap.unlink()
    with Journal.open(tmp_path, experiment="exp"):
        pass
    again = json.loads(snap.read_bytes())
    assert again == json.loads(before) | {"written": again["written"], "time": again["time"],
                                          "checksum": again["checksum"]}   # (the checksum covers the time)

    with Journal.open(tmp_path, experiment="exp") as j:
        j.record("b", "g", "failed", {"rc": 1})
        j.record("d", "f", "completed", {"rc": 0}, value="D")
    s = json.loads(snap.read_bytes())
    assert list(s["records"]) == ["a", "b", "c", "d"] and s["n_records"] == 5
    assert s["records"]["b"]["status"] == "failed" and s["counts"] == {"completed": 3, "failed": 1}
    old = json.loads(before)["records"]
    assert s["records"]["a"] == old["a"] and s["records"]["c"] == old["c"]
    state = read_state(tmp_path)
    assert {n: r["result"] for n, r in state["records"].items()} == {n: r["result"] for n, r in s["records"].items()}
    with Journal.open(tmp_path, experiment="exp") as j:
        assert j.load_value("a") == "A" and j.load_value("d") == "D"


# ----------------------------------------------------------------------------------------- read_state, paths

def test_read_state_while_another_process_holds_the_lock(tmp_path):
    proc = start_child(tmp_path, 10)
    try:
        before = file_states(tmp_path)
        state = read_state(tmp_path)
        assert state["experiment"] == "exp"
        assert len(state["records"]) == 10 and state["n_records"] == 10
        assert sum(state["counts"].values()) == 10 and state["counts"]["failed"] == 2   # task-3, task-9
        assert state["holder"]["pid"] == proc.pid and state["holder"]["alive"] is True
        assert file_states(tmp_path) == before
        assert not lock_is_free(tmp_path)       # the child still holds it
        with pytest.raises(CheckpointLocked):
            Journal.open(tmp_path, experiment="exp")
    finally:
        kill9(proc)
    assert read_state(tmp_path)["holder"]["alive"] is False   # stale info of a dead holder


def test_read_state_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        read_state(tmp_path)
    make_journal(tmp_path / "alpha", 1, experiment="alpha")
    (tmp_path / "mix").mkdir()
    os.rename(tmp_path / "alpha" / SNAPSHOT_NAME, tmp_path / "mix" / SNAPSHOT_NAME)
    make_journal(tmp_path / "beta", 1, experiment="beta")
    os.rename(tmp_path / "beta" / JOURNAL_NAME, tmp_path / "mix" / JOURNAL_NAME)
    with pytest.raises(CheckpointError) as ei:
        read_state(tmp_path / "mix")
    assert ei.value.path == str(tmp_path / "mix" / SNAPSHOT_NAME)


def test_find_checkpoint_dir(tmp_path):
    d = tmp_path / "checkpoints"
    make_journal(d, 1)
    assert find_checkpoint_dir(d) == d
    assert find_checkpoint_dir(str(d)) == d
    assert find_checkpoint_dir(d / JOURNAL_NAME) == d                 # existing file
    assert find_checkpoint_dir(d / "workflow_state.pkl") == d         # the user guide's non-existing file
    assert find_checkpoint_dir(d / "anything-else") == d              # parent holds a journal
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert find_checkpoint_dir(fresh / "workflow_state.pkl") == fresh  # non-existing file in an existing empty dir
    assert find_checkpoint_dir(fresh / "state.json") == fresh
    assert find_checkpoint_dir(tmp_path / "new-dir") == tmp_path / "new-dir"   # a directory still to be created
    assert find_checkpoint_dir(tmp_path / "new" / "workflow_state.pkl") == tmp_path / "new"


# ----------------------------------------------------------------------------------------- measurement

def test_measure_record_cost(tmp_path, capsys):
    """Not a timing assertion: prints the per-record cost of 1,000 records without values."""
    n = 1000
    results = {}
    for interval in (0, 100):
        d = tmp_path / f"i{interval}"
        with Journal.open(d, experiment="exp", snapshot_interval=interval) as j:
            t0 = time.perf_counter()
            for i in range(n):
                j.record(f"task-{i}", "f" * 64, "completed", {"rc": 0, "start": 1.0, "end": 2.0, "log": f"/l/{i}"})
            results[interval] = (time.perf_counter() - t0) / n
        assert len(read_state(d)["records"]) == n
    with capsys.disabled():
        print(f"\n[journal] per-record cost, {n} records, no values: "
              f"{results[0] * 1e6:.1f} us (no snapshots), {results[100] * 1e6:.1f} us (snapshot every 100)")
