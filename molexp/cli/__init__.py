"""The ``molexp`` command: ``run`` an experiment file; ``status``, ``show``, ``logs`` and ``report`` of a
checkpoint; ``graph`` and ``clean`` of an experiment file. ``python -m molexp`` is the same command.

Exit codes: 0 every task completed; 1 a task failed or was skipped; 2 bad input (nothing ran); 3 the Dask
cluster failed; 4 the checkpoint is locked by another run (nothing ran); 5 the checkpoint cannot be read or
written (the table shows what finished); 70 an internal error of molexp; 129 / 130 / 143 stopped by SIGHUP /
SIGINT (Ctrl-C) / SIGTERM (running tasks were terminated, the table shows what finished).

One module per concept: ``load`` (the experiment file, ``--param``, where to run, the checkpoint directory),
``run``, ``inspect`` (status, show, logs, report), ``graph`` (graph, clean), ``output`` (printing, exit codes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..backends.cluster import JOBQUEUE
from ..errors import CheckpointError, CheckpointLocked, ClusterError, MolexpError, ValidationError
from .load import checkpoint_dir, cluster_spec, default_checkpoint_dir, load  # noqa: F401  (public helpers)
from .output import (EXIT_CHECKPOINT, EXIT_CLUSTER, EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL,  # noqa: F401
                     EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_OK, _internal_error, _one_line, _print, _say)
from .run import STOP_SIGNALS, Signals, _ignore_stop_signals, kill_task_processes  # noqa: F401

__all__ = ["main"]

FILE_HELP = "the experiment file: experiment.yaml, or workflow.py (a Python file that defines `experiment`)"
CHECKPOINT_HELP = ("a checkpoint directory (default of `molexp run`: <workdir>/.molexp/<experiment>/checkpoint), "
                   "or the experiment file whose default checkpoint to read")


def _version() -> str:
    from .. import __version__

    return f"molexp {__version__} (Python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molexp", description="Run experiments of shell and Python tasks on Dask.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    loud = common.add_mutually_exclusive_group()
    loud.add_argument("--verbose", "-v", action="store_true",
                      help="more detail: molexp's log messages, and on an internal error the traceback "
                           "(also: MOLEXP_DEBUG=1)")
    loud.add_argument("--quiet", "-q", action="store_true",
                      help="less output: no progress bar and no table; errors and the last line only")

    run = sub.add_parser("run", parents=[common], help="run an experiment file (experiment.yaml or workflow.py)")
    run.add_argument("file", help=FILE_HELP)
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

    status = sub.add_parser("status", parents=[common],
                            help="what a checkpoint recorded, task by task (works while a run is going)")
    status.add_argument("checkpoint_dir", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    only = status.add_mutually_exclusive_group()
    only.add_argument("--failed", action="store_true", help="only the tasks that failed")
    only.add_argument("--running", action="store_true", help="only the tasks running now (during a `molexp run`)")
    status.add_argument("--json", action="store_true", help="print the state as JSON, for scripts")

    show = sub.add_parser("show", parents=[common], help="one task of a checkpoint: status, reason, attempts, "
                          "error, logs, and a Python task's value")
    show.add_argument("checkpoint_dir", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    show.add_argument("task", metavar="TASK", help="the task's name, as in `molexp status`")

    logs = sub.add_parser("logs", parents=[common], help="a task's whole log (stdout; --stderr for stderr), "
                          "paged on a terminal")
    logs.add_argument("checkpoint_dir", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    logs.add_argument("task", metavar="TASK", help="the task's name, as in `molexp status`")
    logs.add_argument("--stderr", "-e", action="store_true", help="the task's stderr log instead of its stdout")

    report = sub.add_parser("report", parents=[common],
                            help="write a checkpoint directory's run as one HTML file (opens offline)")
    report.add_argument("checkpoint_dir", metavar="CHECKPOINT", help=CHECKPOINT_HELP)
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    report.add_argument("--file", help="the experiment file (experiment.yaml or workflow.py): adds the task graph")

    graph = sub.add_parser("graph", parents=[common], help="show an experiment's tasks: layers of text, Graphviz "
                           "dot, Mermaid or SVG")
    graph.add_argument("file", help=FILE_HELP)
    graph.add_argument("--format", "-F", choices=["text", "dot", "mermaid", "svg"], default="text",
                       help="text: the tasks layer by layer (default); dot: Graphviz (`| dot -Tpng > g.png`); "
                            "mermaid: for Markdown; svg: a picture (no Graphviz needed)")
    graph.add_argument("-o", "--output", help="write to this file instead of printing")

    clean = sub.add_parser("clean", parents=[common], help="remove an experiment's molexp state (<workdir>/.molexp/"
                           "<experiment>: checkpoint and logs), after a confirmation")
    clean.add_argument("file", help=FILE_HELP)
    clean.add_argument("--yes", "-y", action="store_true", help="do not ask for a confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molexp`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.verbose:
        logging.getLogger("molexp").setLevel(logging.DEBUG)
    debug = args.verbose or os.environ.get("MOLEXP_DEBUG", "") not in ("", "0")
    signals = Signals()
    if args.command == "run":
        signals.install()
    try:
        return _dispatch(args, signals)
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


def _dispatch(args, signals: Signals) -> int:
    if args.command == "run":
        from .run import run

        return run(args, signals)
    if args.command in ("graph", "clean"):
        from . import graph

        return graph.graph(args) if args.command == "graph" else graph.clean(args)
    from . import inspect

    return {"status": inspect.status, "show": inspect.show, "logs": inspect.logs,
            "report": inspect.report}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
