"""Reading what the command line names: the experiment file, ``--param`` values, where to run, and the
checkpoint directory of a run."""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

from ..errors import MolexpError, ValidationError
from ..model.experiment import Experiment
from ..model.graph import TaskGraph
from ..state.result import _first_line


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
    from ..model.params import _uses

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
    from ..model.graph import _did_you_mean

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
    from ..model.task import _PLACEHOLDER, RUNTIME_ENV, LocalTask, PythonTask
    from ..model.files import groups

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
    from ..run.compile import safe_name

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
        from ..state.journal import _KNOWN_FILES

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


