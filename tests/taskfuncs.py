"""Importable functions for Python tasks in tests (YAML stores them as 'taskfuncs:name')."""

import os
import time


def make_numbers(n=3):
    return list(range(n))


def total(make_numbers, scale=1):
    return sum(make_numbers) * scale


def pause(seconds=0.2):
    time.sleep(seconds)
    return os.getpid()


def boom():
    raise RuntimeError("boom from a python task")


def always(task, context):
    return True


def kill_own_process():
    """Kills the process running it (a Dask worker): a task that keeps killing its workers."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def not_importable_on_workers():
    return 1


def add_inputs(start=0, **upstream):
    """1 + the sum of the dependencies' values (or 1 + start for a task without any)."""
    return 1 + (sum(upstream.values()) if upstream else start)


def boom_any(**_):
    raise RuntimeError("boom")


def blob_is_big(task, context):
    return len(context["blob"]) > 100_000 and len(context["note"]) > 100_000


def thread_names():
    import threading

    return sorted(t.name for t in threading.enumerate())


def cancel_events(dask_scheduler=None):
    return [str(n) for n in dask_scheduler.extensions["events"]._events if str(n).startswith("molexp-cancel")]


def make_generator():
    """A value nothing can pickle."""
    yield 1


def identity(x):
    return x


def hold_memory(mb=300, seconds=2.0):
    """Hold ``mb`` MB in this (worker) process for ``seconds``, then free it."""
    import time

    block = bytearray(mb * 2**20)
    block[::4096] = b"x" * len(block[::4096])   # touch every page: resident, not just reserved
    time.sleep(seconds)
    return len(block)
