"""Looking at a checkpoint: ``molexp status``, ``show``, ``logs`` and ``report``.

Each reads the checkpoint directory without its lock, so it works while a run is going. CHECKPOINT may also
be the experiment file, meaning its default checkpoint (``<workdir>/.molexp/<experiment>/checkpoint``).
"""

from __future__ import annotations

import json
import os
import pprint
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ..state.result import TaskResult, _first_line
from .load import default_checkpoint_dir, load
from .output import EXIT_OK
from ..state.live import RUNNING_FILE


def checkpoint_of(given: str) -> str:
    """The checkpoint directory CHECKPOINT names: itself, or an experiment file's default checkpoint."""
    p = Path(given)
    if p.is_file() and p.suffix in (".yaml", ".yml", ".py"):
        return default_checkpoint_dir(load(given))
    return given


def read(given: str) -> dict:
    """``read_state`` of the checkpoint CHECKPOINT names, plus ``"running"`` (the tasks the live run says are
    running now; [] when no run holds the checkpoint, None when one does but its running file cannot be read)
    and ``"total"`` (the live run's number of tasks, or None)."""
    from ..state.journal import read_state

    directory = checkpoint_of(given)
    try:
        state = read_state(directory)
    except FileNotFoundError:
        raise ValidationError(f"no checkpoint in {directory} (expected the directory of a run's journal, e.g. "
                              ".molexp/<experiment>/checkpoint, or the experiment file)") from None
    state["running"], state["total"] = [], None
    holder = state.get("holder") or {}
    if holder.get("alive"):
        try:
            live = json.loads((Path(directory) / RUNNING_FILE).read_text())
        except (OSError, ValueError):
            live = None
        if isinstance(live, dict) and live.get("pid") == holder.get("pid"):
            state["running"], state["total"] = list(live.get("running") or []), live.get("total")
        else:   # a run by an older molexp, or its file is unreadable: outcomes only
            state["running"] = None
    return state


def status(args) -> int:
    """``molexp status CHECKPOINT [--failed | --running] [--json]``."""
    state = read(args.checkpoint_dir)
    records, running = state["records"], state["running"] or []
    holder = state.get("holder") or {}
    if args.json:
        print(json.dumps(_as_json(state), indent=2, default=str))
        return EXIT_OK
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state["counts"].items())) or "none yet"
    live = ""
    if holder.get("alive") and state["running"] is None:
        live = f" (a run is going: pid {holder.get('pid')}; what runs now is not known)"
    elif holder.get("alive"):
        total = f" of {state['total']}" if state["total"] is not None else ""
        live = f" (a run is going: pid {holder.get('pid')}, {len(running)} running, {len(records)}{total} recorded)"
    print(f"experiment {state['experiment']}: {len(records)} tasks recorded: {counts}{live}")
    if args.running:
        if not holder.get("alive"):
            print("no run is going: nothing is running")
        for name in running:
            print(f"  {name}  running")
        return EXIT_OK
    shown = {n: rec for n, rec in records.items() if not args.failed or rec["status"] == "failed"}
    width = max(map(len, shown), default=4)
    if shown:
        print(f"  {'task'.ljust(width)}  {'status'.ljust(9)}  tries  {'time'.rjust(8)}  detail")
    for name, rec in shown.items():
        r = rec["result"]
        detail = (f"{r.get('failure')}: {_first_line(r.get('error'))}" if rec["status"] == "failed"
                  else r.get("reason") or "")
        took = _duration(r)
        print(f"  {name.ljust(width)}  {rec['status'].ljust(9)}  {str(r.get('attempts') or '').rjust(5)}  "
              f"{took.rjust(8)}  {detail}".rstrip())
    for name in running if not args.failed else ():
        if name not in records:
            print(f"  {name.ljust(width)}  running")
    for name, rec in shown.items():
        if rec["status"] == "failed":
            r = rec["result"]
            last = (r.get("error") or "").strip().splitlines()
            print(f"\n--- {name} failed ({r.get('failure')}): {last[-1] if last else ''}")
            if r.get("stderr"):
                print(r["stderr"])
            if r.get("stderr_path"):
                print(f"(full log: {r['stderr_path']})")
    return EXIT_OK


def _duration(r: dict) -> str:
    start, end = r.get("start"), r.get("end")
    return f"{end - start:.2f}s" if isinstance(start, (int, float)) and isinstance(end, (int, float)) else ""


def _as_json(state: dict) -> dict:
    holder = state.get("holder") or {}
    return {
        "experiment": state["experiment"], "directory": state["directory"],
        "recorded": len(state["records"]), "counts": state["counts"],
        "run": {"pid": holder.get("pid"), "host": holder.get("host"), "alive": holder.get("alive"),
                "total": state["total"], "running": state["running"]} if holder else None,
        "tasks": {n: {"status": rec["status"], "has_value": rec["has_value"], "time": rec["time"], **rec["result"]}
                  for n, rec in state["records"].items()},
    }


def _record(state: dict, task: str) -> dict:
    records = state["records"]
    if task not in records:
        from ..model.graph import _did_you_mean

        if task in (state["running"] or ()):
            raise ValidationError(f"task {task!r} is running now: no outcome recorded yet")
        raise ValidationError(f"no task {task!r} in the checkpoint {state['directory']} (experiment "
                              f"{state['experiment']}, {len(records)} tasks recorded){_did_you_mean(task, records)}")
    return records[task]


def show(args) -> int:
    """``molexp show CHECKPOINT TASK``: everything recorded about one task, and a Python task's value."""
    state = read(args.checkpoint_dir)
    rec = _record(state, args.task)
    r = TaskResult.from_record({"name": args.task, **rec["result"], "status": rec["status"]})
    print(f"task:      {r.name}")
    print(f"status:    {r.status.value}" + (f" ({r.reason})" if r.reason else ""))
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.start)) if r.start else ""
    took = f", {r.duration:.2f}s" if r.duration is not None else ""
    if when:
        print(f"ran:       {when}{took}" + (f" on {r.worker}" if r.worker else ""))
    print(f"attempts:  {r.attempts}")
    if len(r.attempt_log) > 1 or (r.attempt_log and r.attempt_log[0].failure):
        for a in r.attempt_log:
            print(f"  attempt {a.number}: " + (f"{a.failure}: {_first_line(a.error)}" if a.failure else "ok"))
    if r.command:
        print(f"command:   {r.command}")
    if r.returncodes:
        print(f"exit codes: {' '.join(map(str, r.returncodes))}")
    if r.failure or r.error:
        print(f"failure:   {r.failure}")
        print("error:\n" + _indent(r.error or ""))
    for label, path, tail in (("stdout", r.stdout_path, r.stdout), ("stderr", r.stderr_path, r.stderr)):
        if path or tail:
            print(f"{label}:    {path or '(no log file)'}" + (" (missing)" if path and not os.path.exists(path) else ""))
            if tail:
                print(_indent(tail.rstrip("\n")))
    if rec["has_value"]:
        print("value:\n" + _indent(pprint.pformat(_load_value(state["directory"], args.task), width=100)))
    return EXIT_OK


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _load_value(directory: str, task: str) -> Any:
    """The stored return value of ``task`` (``journal.read_value``: no lock taken, so it works during a run)."""
    from ..errors import CheckpointError
    from ..state.journal import read_value

    try:
        return read_value(directory, task)
    except KeyError:
        raise CheckpointError(f"task {task!r} has no readable stored value in {directory}", directory) from None


def logs(args) -> int:
    """``molexp logs CHECKPOINT TASK [--stderr]``: the whole log file, paged on a terminal."""
    state = read(args.checkpoint_dir)
    r = _record(state, args.task)["result"]
    which = "stderr" if args.stderr else "stdout"
    path = r.get(f"{which}_path")
    if not path:
        if r.get(which):   # a tail was recorded: the file was not kept (keep_logs="failed")
            raise ValidationError(f"task {args.task!r} has no {which} log file: it was not kept (option "
                                  f"keep_logs='failed' keeps only the logs of tasks that did not complete); its "
                                  f"last lines: molexp show {shlex.quote(args.checkpoint_dir)} "
                                  f"{shlex.quote(args.task)}")
        if r.get("cpu_time") is not None:   # its processes ran and wrote nothing there: an empty log, no file
            print(f"molexp: task {args.task!r} wrote nothing to its {which} (an empty log leaves no file)",
                  file=sys.stderr)
            return EXIT_OK
        raise ValidationError(f"task {args.task!r} has no {which} log file (a Python task writes one only with "
                              "isolated=True; its value: molexp show)")
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise ValidationError(f"task {args.task!r}: cannot read its {which} log {path}: {e.strerror}") from None
    page(text)
    return EXIT_OK


def page(data: bytes) -> None:
    """Write ``data`` to stdout; through a pager when stdout is a terminal, as git does (``$MOLEXP_PAGER``,
    else ``$PAGER``, else ``less -FRX``: a short text is printed and the pager exits)."""
    pager = os.environ.get("MOLEXP_PAGER", os.environ.get("PAGER", "less -FRX")).strip()
    if sys.stdout.isatty() and pager and pager != "cat":
        argv = shlex.split(pager)
        if shutil.which(argv[0]):
            try:
                subprocess.run(argv, input=data, check=False)
                return
            except OSError:
                pass
    sys.stdout.flush()
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:   # `molexp logs ... | head`
        pass


def report(args) -> int:
    """``molexp report CHECKPOINT [-o report.html] [--file FILE]``."""
    from ..views.report import write_report

    graph = None
    if args.file:
        from ..state.files import with_file_deps

        graph = with_file_deps(load(args.file))
    try:
        path = write_report(checkpoint_of(args.checkpoint_dir), args.output, graph=graph)
    except OSError as e:  # no checkpoint there (FileNotFoundError naming it), or the output cannot be written
        raise ValidationError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None
    print(f"wrote {path}")
    return EXIT_OK
