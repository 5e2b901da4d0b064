"""Child-process side of an isolated Python task: ``python -m molexp.run.isolated CALL_FILE VALUE_FILE``.

Loads ``(func, kwargs, name, attempt, workdir)`` (cloudpickle), calls it, and writes ``(True, value)`` or
``(False, error text with traceback)`` to VALUE_FILE (``sys.exit()`` in the function included). The exit code
is 0 either way; any other ending (a signal, the memory watchdog, ``os._exit``) is reported by the parent from
the exit status.
"""

import sys
import traceback

import cloudpickle


def main(call_file: str, value_file: str) -> None:
    from molexp.run.spec import CurrentTask, _current

    with open(call_file, "rb") as f:
        func, kwargs, name, attempt, workdir = cloudpickle.load(f)
    _current.set(CurrentTask(name, attempt, workdir))
    try:
        outcome = (True, func(**kwargs))
    except Exception as e:
        outcome = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    except BaseException as e:  # sys.exit(3), KeyboardInterrupt raised by the function: the task's failure
        outcome = (False, f"{e!r} raised by the task\n{traceback.format_exc()}")
    data = cloudpickle.dumps(outcome)
    with open(value_file + ".tmp", "wb") as f:
        f.write(data)
    import os

    os.replace(value_file + ".tmp", value_file)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
