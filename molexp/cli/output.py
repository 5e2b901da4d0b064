"""What the ``molexp`` command prints, and its exit codes."""

from __future__ import annotations

import os
import sys
import traceback

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CLUSTER, EXIT_LOCKED, EXIT_CHECKPOINT = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def _one_line(e: BaseException | str) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def _say(text: str) -> None:
    """A line on stderr, even when the terminal is gone (SIGHUP)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _print(text: str) -> None:
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        pass


def _internal_error(e: Exception, debug: bool) -> int:
    """A bug of molexp (or an error it does not expect): one line, and the traceback in a file."""
    text = "".join(traceback.format_exception(e))
    if debug:
        _say(text.rstrip("\n"))
        _say(f"molexp: internal error: {type(e).__name__}: {_one_line(e)}")
        return EXIT_INTERNAL
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix="molexp-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        where = f"the traceback is in {path}"
    except OSError as write_error:
        where = f"the traceback could not be written ({write_error.strerror}): run again with -v"
    _say(f"molexp: internal error: {type(e).__name__}: {_one_line(e)} ({where}; please report it)")
    return EXIT_INTERNAL


