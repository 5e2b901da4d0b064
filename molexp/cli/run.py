"""``molexp run``: run an experiment file, with the signals that stop it cleanly and a table at the end."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from ..backends.cluster import make_cluster
from ..errors import ValidationError
from .load import _check_params, _params, checkpoint_dir, cluster_spec, load
from .output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, _print, _say

# the signals that stop `molexp run` cleanly, and its exit code for each (128 + the signal's number)
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}




def run(args, signals: Signals) -> int:
    """``molexp run FILE``: the table at the end; a successful run's last line says where its logs and
    checkpoint are."""
    from ..executors import ExperimentExecutor, RunInterrupted

    work = load(args.file)
    params = _params(args.param)
    _check_params(work, params, args.allow_unused_params)
    options: dict[str, Any] = {"progress": not (args.no_progress or args.quiet)}
    if args.workers is not None:
        options["max_workers"] = args.workers
    if args.keep_going:
        options["fault_tolerance"] = "continue"
    if args.retries is not None:
        options["retry_attempts"] = args.retries
    if not args.no_checkpoint:
        options["checkpoint_dir"] = checkpoint_dir(args.checkpoint_dir, work, create=not args.dry_run)
        options["auto_resume"] = args.resume
    elif args.resume:
        raise ValidationError("--resume needs a checkpoint: drop --no-checkpoint")
    if args.force and not args.resume:
        raise ValidationError("--force re-runs up-to-date tasks of a resumed run: add --resume (without it, "
                              "every task runs anyway)")
    if args.dry_run:   # no cluster is started and nothing is written
        plan = ExperimentExecutor(work, **options).plan(params, targets=args.target or None,
                                                         force=args.force or None)
        print(plan.table())
        return EXIT_OK
    spec = cluster_spec(work, args)
    if spec:
        _quiet_dask_client()
    target = make_cluster(spec) if spec else None
    address, cluster = (target, None) if isinstance(target, str) else (None, target)
    signals.install()   # again: importing dask-jobqueue may have replaced the SIGINT handler
    clean, interrupted = False, None
    try:
        with ExperimentExecutor(work, address=address, cluster=cluster, **options) as executor:
            # executor.run(), with the run handed to the signal handlers in between, so that a signal becomes
            # an event of the run instead of a KeyboardInterrupt at an arbitrary line.
            with executor._session(work, params, None, targets=args.target or None,
                                   force=args.force or None) as session:
                signals.attach(session)
                try:
                    results = executor._finish(session.results())
                finally:
                    signals.detach()
        clean = True
    except RunInterrupted as e:
        interrupted = e
    finally:
        if cluster is not None:
            cluster.close()
        if not clean:   # stopped by a signal or an error: no process of a task may outlive the command
            kill_task_processes()
    if interrupted is not None:
        _print(interrupted.results.table())
        _say(f"molexp: interrupted by {signals.name or 'SIGINT'}; running tasks were terminated")
        return signals.exit_code or EXIT_INTERRUPTED
    table = results.table()
    if results.ok:   # the last line says where to look next
        paths = [p for r in results.values() for p in (r.stdout_path, r.stderr_path) if p]
        where = [f"logs in {_shown(os.path.dirname(paths[0]))}"] if paths else []
        if "checkpoint_dir" in options:
            where.append(f"checkpoint in {_shown(options['checkpoint_dir'])}")
        if where:
            table += "; " + ", ".join(where)
    if args.quiet:
        table = table.splitlines()[-1]
    _print(table)
    for name in results.failed:
        r = results[name]
        _print(f"\n--- {name} failed ({r.failure}): {r.error.strip().splitlines()[-1] if r.error else ''}")
        if r.stderr:
            _print(r.stderr)
        if r.stderr_path:
            _print(f"(full log: {r.stderr_path})")
    return EXIT_OK if results.ok else EXIT_FAILED


def _shown(path: str | os.PathLike) -> str:
    """``path`` relative to the current directory when it is under it (what a user would type)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _quiet_dask_client() -> None:
    """A lost scheduler is molexp's one-line cluster error (exit 3) with the table: the client's own logs of
    it (its reconnection attempts, the tracebacks of closing a dead connection) would only say it again, as
    ~40 lines. Set after importing distributed, which configures its loggers when imported."""
    import distributed  # noqa: F401

    for name in ("distributed.client", "distributed.utils", "distributed.core", "distributed.comm",
                 "distributed.batched"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class Signals:
    """SIGINT, SIGTERM and SIGHUP during ``molexp run``.

    Before the run starts, the first one raises ``KeyboardInterrupt`` (nothing has started; later ones are
    ignored, so cleaning up cannot be cut short). While the run goes on, each becomes an ``Interrupt``
    event of the run's queue: the driver stops the run (running tasks get SIGTERM, then SIGKILL after the kill
    grace) and the table is printed; after a second one, the task processes are SIGKILLed within
    ``ESCALATED_GRACE`` seconds. After the run, they are only recorded. The first signal decides the exit
    code (128 + its number).
    """

    def __init__(self):
        self.first: int | None = None
        self.count = 0
        self._queue = None
        self._after = False
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        return signal.Signals(self.first).name if self.first is not None else None

    @property
    def exit_code(self) -> int | None:
        return STOP_SIGNALS.get(self.first) if self.first is not None else None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def attach(self, session) -> None:
        """From now on signals are events of the run ``session``; one that came before is one now."""
        self._queue = session
        if self.first is not None:
            session.interrupt(self.name, _escalate if self.count > 1 else None)

    def detach(self) -> None:
        self._queue = None
        self._after = True

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum
        queue = self._queue
        if queue is not None:
            # session.interrupt is a SimpleQueue.put, which is reentrant: safe in a handler. The driver calls
            # `escalate` once it has set the run's stop flag, so no task starts after the kill.
            queue.interrupt(self.name, _escalate if self.count > 1 else None)
        elif not self._after and self.count == 1:
            raise KeyboardInterrupt


# After a second signal: how long running commands keep their SIGTERM grace before they are SIGKILLed. The
# runtime notices the stop flag within 0.1 s and sends SIGTERM; a command it is terminating that dies of
# SIGKILL is reported as terminated by molexp (interrupted while running), as after the full grace.
ESCALATED_GRACE = 0.5


def _escalate() -> None:
    """Called by the driver (the stop flag is set): SIGKILL the task processes shortly, from a thread."""
    import threading

    timer = threading.Timer(ESCALATED_GRACE, kill_task_processes)
    timer.daemon = True
    timer.start()


def _ignore_stop_signals() -> None:
    """At exit: Python resets handlers written in Python to the default (death by the signal) while it
    finalizes, but leaves "ignore" alone."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def kill_task_processes() -> int:
    """SIGKILL the process group of every task command this process (or a worker it started) runs: the
    session leaders among its descendants (molexp starts each command in a session of its own). Returns how
    many groups were signalled."""
    import psutil

    n = 0
    try:
        descendants = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for p in descendants:
        try:
            if os.getsid(p.pid) == p.pid:
                os.killpg(p.pid, signal.SIGKILL)
                n += 1
        except (ProcessLookupError, PermissionError):
            pass
    return n


