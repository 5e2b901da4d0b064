"""What the worker does with a task's declared outputs (``molexp.state.files`` resolves them): ``clear``
removes the old ones before an attempt (and makes their parent directories), ``missing`` lists those an
attempt did not write, and ``discard`` removes them after a failed attempt, so nothing half-written looks
finished."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable


def clear(paths: Iterable[str]) -> None:
    """Before an attempt: remove the task's old outputs (a file, a link or a directory) and make the parent
    directories, so what the attempt leaves is what it wrote."""
    for p in paths:
        _remove(p)
        parent = os.path.dirname(p)
        if parent:
            os.makedirs(parent, exist_ok=True)


def missing(paths: Iterable[str]) -> list[str]:
    """The outputs that do not exist."""
    return [p for p in paths if not os.path.lexists(p)]


def discard(paths: Iterable[str]) -> None:
    """After a failed attempt: remove whatever it wrote of its outputs."""
    for p in paths:
        _remove(p)


def _remove(p: str) -> None:
    try:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    except FileNotFoundError:
        pass


def _rel(path: str, base: str) -> str:
    """``path`` relative to ``base`` when it is under it, else as it is."""
    return os.path.relpath(path, base) if path.startswith(base + os.sep) else path
