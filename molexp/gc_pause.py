"""Pausing Python's cyclic garbage collector while molexp builds large, garbage-free structures.

For 100,000 tasks the collector would otherwise run full collections over a growing heap again and again:
measured (session 8, loaded machine) build 0.94 s paused vs 2.26 s not, compile 2.0 s vs 4.2 s. The collector
is process-wide, so the pause is shared and counted: the first pause to begin (in any thread) disables it if
it was enabled, the last to end enables it again, so runs preparing in two threads never turn it back on
under each other. It is used only around molexp's own code (graph building from a list, validation,
compilation, resume decisions), where no user code runs in the pausing thread; a user's generator passed to
``add_tasks`` runs with the collector as the user left it.

When the last pause ends, what was built meanwhile goes straight to the oldest generation (``gc.freeze()``
then ``gc.unfreeze()``: two list splices, no traversal). Otherwise the first young collections after the pause
would go through every object just built, twice, to find them all alive: a resume of 10,000 tasks spent
47-67 ms in the collector, 2 ms with the promotion (measured, session 10). What is garbage among the young
objects of that moment (cycles of the program's own) is then freed by the next full collection instead of a
young one. Skipped when something in the process froze objects itself (``gc.get_freeze_count() > 0``, e.g.
before a fork): ``unfreeze`` would undo that.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_restore = False   # whether the last pause to end enables the collector again


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for the duration (see the module docstring)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                if gc.get_freeze_count() == 0:   # (nobody froze objects on purpose: see the module docstring)
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
