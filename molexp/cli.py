"""The ``molexp`` command: ``run`` an experiment file, ``status``/``report`` of a checkpoint, ``graph``.

Exit codes: 0 every task completed; 1 a task failed or was skipped; 2 bad input (nothing ran); 3 the Dask
cluster failed; 4 the checkpoint is locked by another run (nothing ran); 5 the checkpoint cannot be read or
written (the table shows what finished); 70 an internal error of molexp; 129 / 130 / 143 stopped by SIGHUP /
SIGINT (Ctrl-C) / SIGTERM (running tasks were terminated, the table shows what finished).
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

from .backends.cluster import JOBQUEUE, make_cluster
from .errors import CheckpointError, CheckpointLocked, ClusterError, MolexpError, ValidationError
from .model.experiment import Experiment
from .model.graph import TaskGraph
from .state.result import _first_line

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CLUSTER, EXIT_LOCKED, EXIT_CHECKPOINT = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
# the signals that stop `molexp run` cleanly, and its exit code for each (128 + the signal's number)
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def load(path: str) -> Experiment | TaskGraph:
    """Load ``experiment.yaml`` or ``workflow.py`` (a file that defines ``experiment``)."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"no such experiment file: {path}")
    if p.suffix in (".yaml", ".yml"):
        return Experiment.from_yaml(p)
    if p.suffix == ".py":
        sys.path.insert(0, str(p.resolve().parent))
        ns = _run_workflow(p)
        work = ns.get("experiment")
        if not isinstance(work, (Experiment, TaskGraph)):
            found = type(work).__name__ if "experiment" in ns else "nothing"
            raise ValidationError(f"{path} must define `experiment` (an Experiment or TaskGraph); found {found}")
        return work
    raise ValidationError(f"{path}: expected an experiment .yaml/.yml file or a workflow .py file")


def _run_workflow(p: Path) -> dict:
    """Execute ``workflow.py``; any error while doing so is a ``ValidationError`` naming the file and line."""
    try:
        return runpy.run_path(str(p), run_name="__molexp_workflow__")
    except SyntaxError as e:   # in the file itself, or in a module it imports
        if e.filename and os.path.abspath(e.filename) == str(p.resolve()):
            where = f"{p}, line {e.lineno}"
        else:
            where = f"{p}: {e.filename}, line {e.lineno}" if e.filename else str(p)
        raise ValidationError(f"cannot load {where}: {type(e).__name__}: {e.msg}") from None
    except SystemExit as e:
        raise ValidationError(f"cannot load {p}{_where(e, p)}: it called sys.exit({e.code!r})") from None
    except KeyboardInterrupt:
        raise
    except Exception as e:
        what = str(e) if isinstance(e, MolexpError) else f"{type(e).__name__}: {e}"
        raise ValidationError(f"cannot load {p}{_where(e, p)}: {what}") from None


def _where(e: BaseException, p: Path) -> str:
    """", line N" of the last line of file ``p`` in the traceback of ``e`` (empty if none)."""
    target = str(p.resolve())
    line = None
    for frame, lineno in traceback.walk_tb(e.__traceback__):
        if os.path.abspath(frame.f_code.co_filename) == target:
            line = lineno
    return f", line {line}" if line is not None else ""


def _params(given: list[str]) -> dict[str, Any]:
    """The ``--param KEY=VALUE`` options as a dict; values are read as YAML."""
    out: dict[str, Any] = {}
    for text in given:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--param expects KEY=VALUE, got {text!r}")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or _first_line(str(e))
            raise ValidationError(f"--param {key}: the value {value!r} is not valid YAML ({problem}); to pass "
                                  f"it as text, quote it: --param \"{key}='{value}'\"") from None
    return out


def _check_params(work, given: dict[str, Any], allow_unused: bool) -> None:
    """A ``--param`` that no task uses and the experiment does not declare is a typo: refuse it (or, with
    ``--allow-unused-params``, warn)."""
    from .model.params import _uses

    graph = work.graph if isinstance(work, Experiment) else work
    left = set(given) - set(getattr(work, "params", None) or {})
    for t in graph:
        if not left:
            return
        left -= _uses(t, left)
    if not left:
        return
    known = sorted(_known_params(work))
    shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "") if known else "none"
    name = getattr(work, "name", "workflow")
    from .model.graph import _did_you_mean

    for key in sorted(left):
        msg = (f"--param {key}: no task of {name!r} uses a parameter {key!r}{_did_you_mean(key, known)} (shell "
               f"tasks use $name in a command or path, Python tasks take it as an argument; known parameters: "
               f"{shown})")
        if not allow_unused:
            raise ValidationError(msg + "; pass --allow-unused-params to run anyway")
        print(f"molexp: warning: {msg}", file=sys.stderr)


def _known_params(work) -> set[str]:
    """The parameters an experiment declares or its tasks use ($name in shell commands and file paths,
    arguments of Python functions other than their dependencies' values)."""
    from .state.files import groups
    from .model.task import _PLACEHOLDER, RUNTIME_ENV, LocalTask, PythonTask

    graph = work.graph if isinstance(work, Experiment) else work
    known = set(getattr(work, "params", None) or {})
    for t in graph:
        texts = [p for declared in (t.inputs, t.outputs) for _, ps in groups(declared) for p in ps]
        if isinstance(t, LocalTask):
            texts += t.commands
        known |= {m.group(2) or m.group(3) for text in texts for m in _PLACEHOLDER.finditer(text)} - {None}
        if isinstance(t, PythonTask):
            deps = set(t.deps) | {d.split("[", 1)[0] for d in t.deps}
            known |= set(t.accepts()[0]) - deps
        known -= set(t.env)
    return known - RUNTIME_ENV


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molexp", description="Run experiments of shell and Python tasks on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true",
                        help="on an internal error, print the traceback (also: MOLEXP_DEBUG=1)")

    run = sub.add_parser("run", parents=[common], help="run an experiment file (experiment.yaml or workflow.py)")
    run.add_argument("file")
    run.add_argument("--workers", type=int, default=None, help="local worker threads (default: CPU count)")
    run.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (repeatable); values are read as YAML scalars")
    run.add_argument("--allow-unused-params", action="store_true",
                     help="a --param that no task uses is a warning, not an error")
    run.add_argument("--address", help="run on the Dask scheduler at this address (tcp://host:8786)")
    hpc = run.add_argument_group("batch systems (dask-jobqueue; overrides the file's cluster: section)")
    hpc.add_argument("--cluster", choices=sorted(JOBQUEUE), help="start Dask workers as batch jobs")
    hpc.add_argument("--jobs", type=int, help="number of worker jobs (default 1)")
    hpc.add_argument("--cores", type=int, help="cores per job")
    hpc.add_argument("--memory", help="memory per job, e.g. 4GB")
    hpc.add_argument("--walltime", help="walltime per job, e.g. 01:00:00")
    hpc.add_argument("--queue", help="queue / partition")
    hpc.add_argument("--interface", help="network interface of the workers, e.g. ib0")
    hpc.add_argument("--adapt", metavar="MIN:MAX", help="adapt the number of jobs between MIN and MAX")
    hpc.add_argument("--start-timeout", metavar="DURATION", help="end with exit 3 when no worker joined by then "
                     "(e.g. 90s, 20m, 2h, none; default 5m)")
    run.add_argument("--continue", dest="keep_going", action="store_true",
                     help="fault_tolerance='continue': run everything whose dependencies succeeded")
    run.add_argument("--retries", type=int, default=None, help="retry failed tasks this many times")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--checkpoint-dir", help="journal every outcome here (default: "
                     "<workdir>/.molexp/<experiment>/checkpoint)")
    run.add_argument("--no-checkpoint", action="store_true", help="do not journal outcomes")
    run.add_argument("--resume", action="store_true",
                     help="reuse tasks that are up to date: unchanged definition, inputs and outputs")
    run.add_argument("--dry-run", "-n", action="store_true",
                     help="print what would run and why (with --resume: what is up to date), run nothing")
    run.add_argument("--target", "-t", action="append", default=[], metavar="NAME",
                     help="run only this task (or the task declaring this output) and what it needs (repeatable)")
    run.add_argument("--force", "-f", action="append", default=[], metavar="NAME",
                     help="with --resume, run this task and what depends on it even if up to date (repeatable)")

    status = sub.add_parser("status", parents=[common], help="what a checkpoint directory recorded (works while a run is going)")
    status.add_argument("checkpoint_dir")

    report = sub.add_parser("report", parents=[common], help="write a checkpoint directory's run as one HTML file (opens offline)")
    report.add_argument("checkpoint_dir")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    report.add_argument("--file", help="the experiment file (experiment.yaml or workflow.py): adds the task graph")

    graph = sub.add_parser("graph", parents=[common], help="show an experiment's tasks layer by layer")
    graph.add_argument("file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molexp`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    debug = args.verbose or os.environ.get("MOLEXP_DEBUG", "") not in ("", "0")
    signals = Signals()
    if args.command == "run":
        signals.install()
    try:
        if args.command == "run":
            return _run(args, signals)
        if args.command == "graph":
            return _graph(args)
        if args.command == "status":
            return _status(args)
        if args.command == "report":
            return _report(args)
    except KeyboardInterrupt:   # before any task started (Ctrl-C while loading, or without `molexp run`)
        _say(f"molexp: interrupted by {signals.name or 'SIGINT'}"
             + (" before any task started" if args.command == "run" else ""))
        return signals.exit_code or EXIT_INTERRUPTED
    except ValidationError as e:
        _say(f"molexp: error: {_one_line(e)}")
        return EXIT_INPUT
    except CheckpointLocked as e:
        _say(f"molexp: checkpoint locked: {_one_line(e)}")
        return EXIT_LOCKED
    except CheckpointError as e:
        if e.results is not None:
            _print(e.results.table())
        _say(f"molexp: checkpoint error: {_one_line(e)}")
        return EXIT_CHECKPOINT
    except ClusterError as e:
        if getattr(e, "results", None) is not None:   # lost mid-run: every task's outcome, said truly
            _print(e.results.table())
        _say(f"molexp: cluster error: {_one_line(e)}")
        return EXIT_CLUSTER
    except MolexpError as e:
        _say(f"molexp: error: {_one_line(e)}")
        return EXIT_FAILED
    except Exception as e:
        return _internal_error(e, debug)
    finally:
        if argv is not None:   # called from Python: give the caller its handlers back
            signals.restore()
        else:
            # The process is about to exit: a signal from now on is recorded, never a KeyboardInterrupt
            # traceback (or a death by SIGINT once Python has reset its handlers) after the table.
            signals.detach()
            import atexit

            atexit.register(_ignore_stop_signals)
    return EXIT_INPUT


def _run(args, signals: Signals) -> int:
    from .executors import ExperimentExecutor, RunInterrupted

    work = load(args.file)
    params = _params(args.param)
    _check_params(work, params, args.allow_unused_params)
    options: dict[str, Any] = {"progress": not args.no_progress}
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
    _print(results.table())
    for name in results.failed:
        r = results[name]
        _print(f"\n--- {name} failed ({r.failure}): {r.error.strip().splitlines()[-1] if r.error else ''}")
        if r.stderr:
            _print(r.stderr)
        if r.stderr_path:
            _print(f"(full log: {r.stderr_path})")
    return EXIT_OK if results.ok else EXIT_FAILED


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
    ignored, so cleaning up cannot be cut short). While the run goes on, each becomes an ``("interrupt", ...)``
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


def cluster_spec(work, args) -> dict:
    """Where to run: the file's ``cluster:`` section overridden by the command line's flags."""
    spec = dict(getattr(work, "cluster", None) or {})
    if args.address:
        return {"address": args.address}
    if args.cluster:
        spec = {k: v for k, v in spec.items() if k != "address"}
        spec["type"] = args.cluster
    for key in ("jobs", "cores", "memory", "walltime", "queue", "interface", "start_timeout"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.adapt:
        lo, sep, hi = args.adapt.partition(":")
        if not sep or not lo.isdigit() or not hi.isdigit():
            raise ValidationError(f"--adapt expects MIN:MAX job counts such as 0:10, got {args.adapt!r}")
        spec["adapt"] = {"minimum_jobs": int(lo), "maximum_jobs": int(hi)}
    if spec and "type" not in spec and "address" not in spec:
        raise ValidationError("batch-system flags need --cluster (slurm, pbs, sge, lsf, htcondor)")
    return spec


def default_checkpoint_dir(work) -> str:
    """Where `molexp run` journals by default: <workdir>/.molexp/<experiment>/checkpoint (the experiment's name
    made one safe directory name, as for its logs)."""
    from .run.compile import safe_name

    name = safe_name(getattr(work, "name", None) or "workflow")
    if isinstance(work, Experiment):
        return str(Path(work.workdir) / ".molexp" / name / "checkpoint")
    return str(Path(".molexp") / name / "checkpoint")


def checkpoint_dir(given: str | None, work, *, create: bool) -> str:
    """The checkpoint directory of a run (``--checkpoint-dir`` or the default), made when ``create``;
    ``ValidationError`` when it is a file or cannot be made."""
    what = f"--checkpoint-dir {given}" if given else "the default checkpoint directory"
    path = Path(given).expanduser() if given else Path(default_checkpoint_dir(work))
    if os.path.lexists(path) and not path.is_dir():
        from .state.journal import _KNOWN_FILES

        hint = f" (the checkpoint that holds it is {path.parent})" if path.name in _KNOWN_FILES else ""
        raise ValidationError(f"{what}: expected a directory, but {path} is a file{hint}")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValidationError(f"{what}: cannot create the directory {path}: {e.strerror}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValidationError(f"{what}: the directory {path} is not writable")
    return str(path)


def _status(args) -> int:
    from .state.journal import read_state

    try:
        state = read_state(args.checkpoint_dir)
    except FileNotFoundError:
        raise ValidationError(f"no checkpoint in {args.checkpoint_dir}") from None
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state["counts"].items()))
    holder = state.get("holder") or {}
    live = f" (a run is going: pid {holder.get('pid')})" if holder.get("alive") else ""
    print(f"experiment {state['experiment']}: {len(state['records'])} tasks recorded: {counts}{live}")
    records = state["records"]
    width = max(map(len, records), default=4)
    for name, rec in records.items():
        r = rec["result"]
        detail = (f"{r.get('failure')}: {_first_line(r.get('error'))}" if rec["status"] == "failed"
                  else r.get("reason") or "")
        print(f"  {name.ljust(width)}  {rec['status'].ljust(9)}  {detail}".rstrip())
    for name, rec in records.items():
        if rec["status"] == "failed":
            r = rec["result"]
            last = (r.get("error") or "").strip().splitlines()
            print(f"\n--- {name} failed ({r.get('failure')}): {last[-1] if last else ''}")
            if r.get("stderr"):
                print(r["stderr"])
            if r.get("stderr_path"):
                print(f"(full log: {r['stderr_path']})")
    return EXIT_OK


def _report(args) -> int:
    from .views.report import write_report

    graph = None
    if args.file:
        from .state.files import with_file_deps

        graph = with_file_deps(load(args.file))
    try:
        path = write_report(args.checkpoint_dir, args.output, graph=graph)
    except OSError as e:  # no checkpoint there (FileNotFoundError naming it), or the output cannot be written
        raise ValidationError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None
    print(f"wrote {path}")
    return EXIT_OK


def _graph(args) -> int:
    from .state.files import with_file_deps

    graph = with_file_deps(load(args.file))
    for i, layer in enumerate(graph.layers()):
        print(f"layer {i}: {', '.join(layer)}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
