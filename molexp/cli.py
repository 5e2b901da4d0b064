"""The ``molexp`` command: ``run`` an experiment file, ``status``/``report`` of a checkpoint, ``graph``.

Exit codes: 0 every task completed; 1 a task failed or was skipped; 2 bad input (nothing ran);
3 the Dask cluster failed; 130 interrupted (Ctrl-C or SIGTERM; running tasks were terminated).
"""

from __future__ import annotations

import argparse
import logging
import runpy
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from .cluster import JOBQUEUE, make_cluster
from .errors import ClusterError, MolexpError, ValidationError
from .experiment import Experiment
from .graph import TaskGraph
from .result import _first_line

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CLUSTER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def load(path: str) -> Experiment | TaskGraph:
    """Load ``experiment.yaml`` or ``workflow.py`` (a file that defines ``experiment``)."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"no such experiment file: {path}")
    if p.suffix in (".yaml", ".yml"):
        return Experiment.from_yaml(p)
    if p.suffix == ".py":
        sys.path.insert(0, str(p.resolve().parent))
        ns = runpy.run_path(str(p), run_name="__molexp_workflow__")
        work = ns.get("experiment")
        if not isinstance(work, (Experiment, TaskGraph)):
            found = type(work).__name__ if "experiment" in ns else "nothing"
            raise ValidationError(f"{path} must define `experiment` (an Experiment or TaskGraph); found {found}")
        return work
    raise ValidationError(f"{path}: expected an experiment .yaml/.yml file or a workflow .py file")


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value) if value else ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molexp", description="Run experiments of shell and Python tasks on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment file (experiment.yaml or workflow.py)")
    run.add_argument("file")
    run.add_argument("--workers", type=int, default=None, help="local worker threads (default: CPU count)")
    run.add_argument("--param", "-p", action="append", type=_param, default=[], metavar="KEY=VALUE",
                     help="override a parameter (repeatable); values are read as YAML scalars")
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

    status = sub.add_parser("status", help="what a checkpoint directory recorded (works while a run is going)")
    status.add_argument("checkpoint_dir")

    report = sub.add_parser("report", help="write a checkpoint directory's run as one HTML file (opens offline)")
    report.add_argument("checkpoint_dir")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    report.add_argument("--file", help="the experiment file (experiment.yaml or workflow.py): adds the task graph")

    graph = sub.add_parser("graph", help="show an experiment's tasks layer by layer")
    graph.add_argument("file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molexp`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "graph":
            return _graph(args)
        if args.command == "status":
            return _status(args)
        if args.command == "report":
            return _report(args)
    except ValidationError as e:
        print(f"molexp: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except ClusterError as e:
        print(f"molexp: cluster error: {e}", file=sys.stderr)
        return EXIT_CLUSTER
    except MolexpError as e:
        print(f"molexp: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INPUT


def _run(args) -> int:
    from .executors import ExperimentExecutor, RunInterrupted

    work = load(args.file)
    options: dict[str, Any] = {"progress": not args.no_progress}
    if args.workers is not None:
        options["max_workers"] = args.workers
    if args.keep_going:
        options["fault_tolerance"] = "continue"
    if args.retries is not None:
        options["retry_attempts"] = args.retries
    if not args.no_checkpoint:
        options["checkpoint_dir"] = args.checkpoint_dir or default_checkpoint_dir(work)
        options["auto_resume"] = args.resume
    elif args.resume:
        raise ValidationError("--resume needs a checkpoint: drop --no-checkpoint")
    if args.force and not args.resume:
        raise ValidationError("--force re-runs up-to-date tasks of a resumed run: add --resume (without it, "
                              "every task runs anyway)")
    if args.dry_run:   # no cluster is started and nothing is written
        plan = ExperimentExecutor(work, **options).plan(dict(args.param), targets=args.target or None,
                                                         force=args.force or None)
        print(plan.table())
        return EXIT_OK
    spec = cluster_spec(work, args)
    target = make_cluster(spec) if spec else None
    address, cluster = (target, None) if isinstance(target, str) else (None, target)
    # SIGTERM (a batch system ending the job, `kill`) cleans up like Ctrl-C: running tasks are terminated.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with ExperimentExecutor(work, address=address, cluster=cluster, **options) as executor:
            results = executor.run(params=dict(args.param), targets=args.target or None,
                                   force=args.force or None)
    except RunInterrupted as e:
        print(e.results.table())
        print("molexp: interrupted; running tasks were terminated", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if cluster is not None:
            cluster.close()
    print(results.table())
    for name in results.failed:
        r = results[name]
        print(f"\n--- {name} failed ({r.failure}): {r.error.strip().splitlines()[-1] if r.error else ''}")
        if r.stderr:
            print(r.stderr)
        if r.stderr_path:
            print(f"(full log: {r.stderr_path})")
    return EXIT_OK if results.ok else EXIT_FAILED


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
    """Where `molexp run` journals by default: <workdir>/.molexp/<experiment>/checkpoint."""
    if isinstance(work, Experiment):
        return str(Path(work.workdir) / ".molexp" / work.name / "checkpoint")
    return str(Path(".molexp") / getattr(work, "name", "workflow") / "checkpoint")


def _status(args) -> int:
    from .journal import read_state

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
    from .report import write_report

    graph = None
    if args.file:
        from .files import with_file_deps

        graph = with_file_deps(load(args.file))
    try:
        path = write_report(args.checkpoint_dir, args.output, graph=graph)
    except OSError as e:  # no checkpoint there (FileNotFoundError naming it), or the output cannot be written
        raise ValidationError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None
    print(f"wrote {path}")
    return EXIT_OK


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _graph(args) -> int:
    from .files import with_file_deps

    graph = with_file_deps(load(args.file))
    for i, layer in enumerate(graph.layers()):
        print(f"layer {i}: {', '.join(layer)}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
