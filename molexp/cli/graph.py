"""``molexp graph`` (an experiment's tasks as layers of text, Graphviz dot, Mermaid or SVG) and ``molexp clean``
(remove an experiment's ``.molexp`` state)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..errors import ValidationError
from .load import load
from .output import EXIT_FAILED, EXIT_OK


def graph(args) -> int:
    """``molexp graph FILE [--format text|dot|mermaid|svg] [-o OUTPUT]``."""
    from ..state.files import with_file_deps

    g = with_file_deps(load(args.file))
    if args.format == "text":
        text = "\n".join(f"layer {i}: {', '.join(layer)}" for i, layer in enumerate(g.layers()))
    else:
        from ..views import visualize

        g.validate()
        make = {"dot": visualize.graph_dot, "mermaid": visualize.graph_mermaid, "svg": visualize.graph_svg}
        text = make[args.format](g).rstrip("\n")
    if args.output:
        try:
            Path(args.output).write_text(text + "\n")
        except OSError as e:
            raise ValidationError(f"--output {args.output}: cannot write it: {e.strerror}") from None
        print(f"wrote {args.output}")
    else:
        print(text)
    return EXIT_OK


def clean(args) -> int:
    """``molexp clean FILE [--yes]``: remove ``<workdir>/.molexp/<experiment>`` (checkpoint, logs, values)
    after a confirmation. Refused while a run holds the checkpoint; files the tasks wrote are left alone."""
    from ..run.compile import safe_name
    from ..state.journal import read_state

    work = load(args.file)
    name = getattr(work, "name", None) or "workflow"
    state = Path(getattr(work, "workdir", ".")) / ".molexp" / safe_name(name)
    rel = os.path.relpath(state)
    state = Path(rel) if not rel.startswith("..") else state.resolve()   # as the user would type it
    if not state.exists():
        print(f"nothing to clean: {state} does not exist")
        return EXIT_OK
    checkpoint = state / "checkpoint"
    try:
        holder = read_state(checkpoint).get("holder") or {} if checkpoint.is_dir() else {}
    except (OSError, ValueError):   # no journal there, or an unreadable one: removing it is what was asked
        holder = {}
    if holder.get("alive"):
        raise ValidationError(f"a run is going on {checkpoint} (pid {holder.get('pid')}): stop it before "
                              "cleaning")
    files = sum(len(f) for _, _, f in os.walk(state))
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValidationError(f"molexp clean would remove {state} ({files} files): confirm with --yes "
                                  "(no terminal to ask on)")
        answer = input(f"remove {state} ({files} files: checkpoint and logs of {name!r})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return EXIT_FAILED
    try:
        shutil.rmtree(state)
    except OSError as e:
        raise ValidationError(f"cannot remove {state}: {e.strerror} ({e.filename})") from None
    print(f"removed {state} ({files} files)")
    return EXIT_OK
