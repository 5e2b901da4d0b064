"""Content hashes of files, read once per change.

A file's hash is its SHA-256 (hex, 32 characters); a directory's combines its files'. ``HashCache`` remembers, per path, the file's stat signature (size, mtime, ctime, inode) with its hash, and
reads the file again only when the signature changed: a 10 GB input is read once, not on every resume, and
``touch`` costs one read and changes nothing (the content is the same). The cache of a checkpoint lives in
its directory (``file_hashes.bin``); a missing or unreadable cache only means files are read again.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import pathlib
import stat
import sys
from collections.abc import Iterable

FILENAME = "file_hashes.bin"
# Version 3: this header, then the entries dict in Python's ``marshal`` format (read back as tuples, in a third of
# the time JSON took: 20,000 entries 7 ms against 16), written and read by the same Python version only (another
# one reads the files again, once). Versions 1 and 2 were JSON, in ``file_hashes.json``, and are still read.
_HEADER = f"molexp-file-hashes 3 {sys.implementation.cache_tag}\n".encode()
_LEGACY = "file_hashes.json"
_CHUNK = 1 << 20

Signature = tuple  # (size, mtime_ns, ctime_ns, inode)


def signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _read_digest(path: str, counter: list | None = None) -> str:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            if counter is not None:
                counter[0] += n
    return h.hexdigest()[:32]


def _stable(path: str, counter: list | None = None) -> tuple[str, Signature | None]:
    """(hash, signature) of a regular file; the signature is None if the file changed while it was read
    (the hash is then not cached)."""
    before = signature(os.stat(path))
    digest = _read_digest(path, counter)
    after = signature(os.stat(path))
    return digest, (before if before == after else None)


def _combine(entries: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, digest in entries:
        h.update(f"{rel}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return "dir:" + h.hexdigest()[:28]


def _walk(path: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files)]
    return out


def hash_outputs(paths: Iterable[str]) -> tuple[dict[str, str], dict[str, tuple]]:
    """On the worker, after a task succeeded: ({path: hash}, {file: cache entry}) of its outputs, for
    the journal and for the driver's cache (so that the next resume need not read them)."""
    cache = HashCache()
    hashes = {p: cache.get(p) for p in paths}
    return {p: h for p, h in hashes.items() if h is not None}, dict(cache.fresh)


def _from_columns(dirs: dict) -> dict[str, tuple]:
    """The entries of a version-2 file: directory -> [names, hashes, sizes, mtimes, ctimes, inodes] (a malformed
    directory is left out: its files are read again)."""
    entries: dict[str, tuple] = {}
    for d, cols in dirs.items():
        if cols.__class__ is not list or len(cols) != 6 or len({len(c) for c in cols}) != 1:
            continue
        names, hashes, sizes, mtimes, ctimes, inodes = cols
        top = d + "/"
        entries.update(zip([top + n for n in names], zip(sizes, mtimes, ctimes, inodes, hashes)))
    return entries


class HashCache:
    """path -> ``(size, mtime_ns, ctime_ns, inode, hash)`` (the file's signature and content hash), loaded
    from and saved to a checkpoint directory (``FILENAME``; a malformed entry only means the file is read again).
    ``bytes_read`` counts what hashing read; ``fresh`` holds the entries learned since it was loaded.

    Entries are tuples, not the lists JSON gives: the cyclic garbage collector stops tracking a tuple of
    numbers and text the first time it sees it, whereas it goes through lists in every collection of an older
    generation. Measured: converting 20,000 entries costs 2.6 ms; a collection over a resume-sized heap costs
    4.5 ms more with them as lists; a resume of 10,000 tasks runs no full collection and one of generation 1,
    so this about breaks even there and wins on longer runs."""

    def __init__(self, entries: dict[str, tuple] | None = None):
        self.entries: dict[str, tuple] = entries or {}
        self.fresh: dict[str, tuple] = {}
        self.loaded = entries is not None   # read from a file (which then holds these entries)
        self._counter = [0]

    @property
    def bytes_read(self) -> int:
        return self._counter[0]

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "HashCache":
        """The cache saved in ``directory`` (empty when there is none, or it cannot be read)."""
        directory = pathlib.Path(directory)
        try:
            data = (directory / FILENAME).read_bytes()
        except OSError:
            return cls._load_legacy(directory)
        if not data.startswith(_HEADER):
            return cls()   # another Python's (or damaged): files are read again
        try:
            entries = marshal.loads(memoryview(data)[len(_HEADER):])
        except (ValueError, EOFError, TypeError):
            return cls()
        return cls(entries) if entries.__class__ is dict else cls()

    @classmethod
    def _load_legacy(cls, directory: pathlib.Path) -> "HashCache":
        try:
            data = json.loads((directory / _LEGACY).read_text())
            version = data.get("molexp_file_hashes")
            if version == 2:
                entries = _from_columns(data["dirs"])
            elif version == 1:   # one [size, mtime, ctime, inode, hash] list per path
                entries = {p: tuple(e) for p, e in data["files"].items() if e.__class__ is list}
            else:
                entries = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()
        cache = cls(entries)
        cache.loaded = False   # FILENAME does not hold them yet: saved at the end of the run
        return cache

    def save(self, directory: str | os.PathLike, keep: Iterable[str] | None = None) -> None:
        """Write the cache (only the paths in ``keep`` when given) atomically into ``directory``."""
        paths = self.entries if keep is None else keep
        entries = {p: e for p in paths if (e := self.entries.get(p)).__class__ is tuple and len(e) == 5}
        directory = pathlib.Path(directory)
        path = directory / FILENAME
        tmp = path.with_name(f".{FILENAME}.tmp-{os.getpid()}")
        tmp.write_bytes(_HEADER + marshal.dumps(entries))
        os.replace(tmp, path)
        try:
            os.unlink(directory / _LEGACY)   # (an older molexp's, now read into this one)
        except FileNotFoundError:
            pass

    def learn(self, stats: dict[str, tuple]) -> None:
        """Entries measured elsewhere (a worker's ``hash_outputs``)."""
        stats = {p: tuple(e) for p, e in stats.items()}
        self.entries.update(stats)
        self.fresh.update(stats)

    def get(self, path: str, st: os.stat_result | None = None) -> str | None:
        """The current content hash of ``path`` (a file or a directory), or None if it does not exist.
        ``st``: its ``os.stat`` taken just before, when the caller has it."""
        if st is None:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
        if stat.S_ISDIR(st.st_mode):
            return _combine((os.path.relpath(f, path), self._file(f, None) or "") for f in _walk(path))
        known = self.entries.get(path)   # _file's test inline, without making a signature: the resume's hot path
        if known.__class__ is tuple and len(known) == 5 and known[0] == st.st_size and known[1] == st.st_mtime_ns \
                and known[2] == st.st_ctime_ns and known[3] == st.st_ino and known[4].__class__ is str:
            return known[4]
        return self._file(path, signature(st))

    def _file(self, path: str, sig: Signature | None) -> str | None:
        if sig is None:
            try:
                sig = signature(os.stat(path))
            except OSError:
                return None
        known = self.entries.get(path)
        if known.__class__ is tuple and len(known) == 5 and known[:4] == sig and known[4].__class__ is str:
            return known[4]
        try:
            digest, stable = _stable(path, self._counter)
        except FileNotFoundError:
            return None
        if stable is not None:
            self.entries[path] = self.fresh[path] = (*stable, digest)
        return digest
