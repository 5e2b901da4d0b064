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
