"""Compile a validated ``TaskGraph`` into a Dask graph: one ``run_task`` node per task.

Keys are ``"<group>-<8 hex>-<task name>"``. The group (the name's leading letters: ``sim`` for ``sim_001``,
``energy`` for ``energy-3``) comes first because Dask groups tasks by a key's first word: one task group per
family of tasks, not one per task, which keeps a cluster's scheduler fast (per-task groups cost up to 2x on
distributed). The hex (the run's id) makes keys unique to the run, so two runs sharing a cluster never share
results; the full task name stays readable in the dashboard. Tasks reused from a checkpoint enter the graph
as data (their ``TaskResult``), so their dependents start at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.task_spec import DataNode, GraphNode, TaskRef
from dask.task_spec import Task as DaskTask

from ..state import durations
from .config import ExecutionConfig
from .order import order_matters, places, ranks
from ..state.files import TaskFiles
from ..gc_pause import gc_paused
from ..model.graph import TaskGraph
from ..state.result import TaskResult
from .runtime import run_task
from .spec import RunContext, TaskSpec
from ..errors import TaskDefinitionError
from ..model.task import LocalTask, PythonTask, Task

log = logging.getLogger("molexp")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]")
_SAFE = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]*")


@dataclass
class Compiled:
    """A compiled run: ``keys`` (task name -> Dask key, in topological order), ``specs`` (the tasks that run),
    ``reused`` (tasks reused from a checkpoint: their results enter the graph as data), the run context and
    its key; ``priorities`` (key -> its place in the run's order of ready tasks, higher first, all distinct:
    ``run.order``), always set.

    The Dask tasks themselves (``dask.task_spec.Task``) are made by ``task``/``tasks`` when a backend hands
    them to Dask (the local backend a slice at a time, the cluster backend as inputs finish), and ``graph()``
    gives the whole run as one ``HighLevelGraph``."""

    keys: dict[str, str]
    specs: dict[str, TaskSpec]
    ctx: RunContext
    ctx_key: str
    reused: dict[str, TaskResult] = field(default_factory=dict)
    priorities: dict[str, float] | None = None
    durations_path: str | None = None     # where the run's task durations are recorded (at its end)
    # task name -> seconds its last completed run took, from earlier runs of the experiment (durations.json
    # as it was when this run was compiled; empty when there are no records)
    known_durations: dict[str, float] | None = None
    order_matters: bool = True   # tasks of different priorities can be ready at once (run/order.py)
    log_lock: int | None = None           # the lock held on the shared log directory (see _log_dir)

    def release(self) -> None:
        """Release the log directory's lock (the run is over)."""
        if self.log_lock is not None:
            os.close(self.log_lock)
            self.log_lock = None

    def reuse(self, cached: Mapping[str, TaskResult]) -> None:
        """Tasks reused from a checkpoint enter the graph as data (their result): they do not run."""
        for name, result in cached.items():
            self.reused[name] = result
            self.specs.pop(name, None)

    def task(self, name: str, ctx_ref: TaskRef | None = None) -> GraphNode:
        """Task ``name`` as Dask runs it: ``run_task(spec, ctx, *dependency results)`` (data if reused)."""
        key = self.keys[name]
        spec = self.specs.get(name)
        if spec is None:
            return DataNode(key, self.reused[name])
        keys = self.keys
        return DaskTask(key, run_task, spec, ctx_ref or TaskRef(self.ctx_key), *[TaskRef(keys[d]) for d in spec.deps])

    def tasks(self, names: Iterable[str]) -> dict[str, GraphNode]:
        """Key -> Dask task of ``names``, with the run context's data node."""
        ref = TaskRef(self.ctx_key)
        dsk: dict[str, GraphNode] = {self.ctx_key: DataNode(self.ctx_key, self.ctx)}
        task = self.task
        for name in names:
            node = task(name, ref)
            dsk[node.key] = node
        return dsk

    def graph(self) -> HighLevelGraph:
        """The whole run as one ``HighLevelGraph`` (one layer; it passes ``HighLevelGraph.validate()``)."""
        layer = f"molexp-{self.ctx.run_id}"
        return HighLevelGraph({layer: MaterializedLayer(self.tasks(self.keys))}, {layer: set()})

    def delayed(self) -> dict[str, Delayed]:
        """One ``dask.delayed`` object per task (sharing one graph), by task name."""
        graph = self.graph()
        (layer,) = graph.layers
        return {name: Delayed(key, graph, layer=layer) for name, key in self.keys.items()}


_GROUP = re.compile(r"[A-Za-z]+")


_LONGEST = 120   # characters of a name kept in a file name (a file name has at most 255 bytes)


def log_paths(log_dir: str, name: str) -> tuple[str, str]:
    """Per-task stdout/stderr log files (names made safe for any task name, and short enough)."""
    if len(name) <= _LONGEST and _SAFE.fullmatch(name):
        return f"{log_dir}/{name}.out", f"{log_dir}/{name}.err"
    safe = _UNSAFE.sub("_", name)[:_LONGEST] + "-" + hashlib.blake2b(name.encode(), digest_size=3).hexdigest()
    base = f"{log_dir}/{safe}"
    return base + ".out", base + ".err"


def safe_name(name: str) -> str:
    """An experiment's name as one directory name: no separator, never ``.`` or ``..``, not too long."""
    safe = _UNSAFE.sub("_", name)
    if len(safe) > _LONGEST or safe != name:
        safe = safe[:_LONGEST]
    if not safe.strip("."):
        safe = safe.replace(".", "_") or "_"
    return safe


def _log_dir(ctx: RunContext, config: ExecutionConfig, run_dir: str) -> tuple[str, int | None]:
    """(where this run writes its task logs, the descriptor of the lock it holds there or None). A checkpointed
    run's logs live in its checkpoint directory (its lock is the journal's), so runs with different checkpoints
    never share log files; otherwise the experiment's ``logs`` directory, locked for the run, or this run's own
    ``runs/<run id>/logs`` when another live run holds that lock."""
    if config.checkpoint_dir is not None:
        from ..state.journal import find_checkpoint_dir

        return str(find_checkpoint_dir(config.checkpoint_dir).resolve() / "logs"), None
    shared = os.path.join(run_dir, "logs")
    os.makedirs(shared, exist_ok=True)
    fd = os.open(os.path.join(shared, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return os.path.join(run_dir, "runs", ctx.run_id, "logs"), None
    return shared, fd


def compile_graph(graph: TaskGraph, ctx: RunContext, config: ExecutionConfig,
                  files: Mapping[str, TaskFiles] | None = None, *, dry: bool = False) -> Compiled:
    """Validate, render templates and build the Dask graph. Raises before anything runs. ``files`` are the
    tasks' resolved files (``files.resolve``); ``dry`` makes no directory (``plan()``)."""
    with gc_paused():
        return _compile(graph, ctx, config, files or {}, dry)


def _compile(graph: TaskGraph, ctx: RunContext, config: ExecutionConfig, files: Mapping[str, TaskFiles],
             dry: bool) -> Compiled:
    order = graph.topological_order()
    workdir = ctx.workdir
    run_dir = os.path.join(workdir, ".molexp", safe_name(ctx.experiment))
    log_dir, log_lock = os.path.join(run_dir, "logs"), None
    params = ctx.params
    environ = os.environ

    ctx_key = f"molexp-context-{ctx.run_id}"
    keys: dict[str, str] = {}
    specs: dict[str, TaskSpec] = {}
    made_log_dir = False
    tasks = graph.tasks
    run8 = ctx.run_id[:8]
    family = _GROUP.match
    try:
        for name in order:
            t = tasks[name]
            g = family(name)
            key = f"{g.group(0) if g else 'task'}-{run8}-{name}"   # see the module docstring
            keys[name] = key
            if not made_log_dir and not dry and (isinstance(t, LocalTask) or getattr(t, "isolated", False)):
                log_dir, log_lock = _log_dir(ctx, config, run_dir)   # the first task that writes logs
                os.makedirs(log_dir, exist_ok=True)
                made_log_dir = True
            spec = _spec(t, ctx, config, params, environ, workdir, log_dir, files.get(name))
            specs[name] = spec
    except BaseException:
        if log_lock is not None:   # bad input: the run never starts
            os.close(log_lock)
        raise
    # The order of ready tasks on both schedulers: see run/order.py.
    path = os.path.join(run_dir, durations.FILENAME)
    known = durations.load(path)
    user = {n: tasks[n].priority for n in order if tasks[n].priority is not None} \
        if config.priority_scheduling else None
    rank = ranks(order, graph.dependents(), known, user)
    priorities = places(order, rank, keys)
    matters = order_matters(order, lambda n: tasks[n].deps, rank)
    return Compiled(keys, specs, ctx, ctx_key, priorities=priorities, durations_path=path, known_durations=known,
                    order_matters=matters, log_lock=log_lock)


def _spec(t: Task, ctx: RunContext, config: ExecutionConfig, params: Mapping[str, Any], environ: Mapping,
          workdir: str, log_dir: str, f: TaskFiles | None) -> TaskSpec:
    cwd = os.path.join(workdir, t.cwd) if t.cwd is not None else workdir
    retries = t.retries if t.retries is not None else config.retry_attempts
    timeout = t.timeout if t.timeout is not None else config.task_timeout
    memory = t.resources.get("memory") if t.resources else None
    if memory is not None:
        from dask.utils import parse_bytes

        memory = parse_bytes(memory)
    else:
        memory = config.max_memory_per_task
    cores = t.resources.get("cores", 1) if t.resources else 1
    if isinstance(t, LocalTask):
        out, err = log_paths(log_dir, t.name)
        commands = tuple(t.render(params, environ, files=f.values if f else None)) \
            if "$" in "".join(t.commands) else tuple(t.commands)
        return TaskSpec(name=t.name, kind="shell", task=t, deps=tuple(t.deps), commands=commands, cwd=cwd,
                        env=t.env or None, timeout=timeout, retries=retries, memory_limit=memory,
                        condition=t.condition, stdout_path=out, stderr_path=err, cores=cores,
                        outputs=f.outputs if f is not None else ())
    if isinstance(t, PythonTask):
        names, varkw = t.accepts()
        call = dict(t.kwargs)
        for k, v in params.items():
            if k in names or (k in call):
                call[k] = v
        if f is not None:
            call.update((k, v) for k, v in f.call.items() if k in names)
        dep_kwargs = ()
        if t.deps:
            dep_kwargs = tuple((d, arg or d) for d in t.deps for arg in [_argument_for(d, names)] if arg or varkw)
        if not t.isolated and (timeout or memory):
            log.warning("molexp: task %r runs in a worker thread, where its %s cannot be enforced; give it "
                        "isolated=True to run it in a child process", t.name,
                        " and ".join(w for w, v in (("timeout", timeout), ("memory limit", memory)) if v))
        out, err = log_paths(log_dir, t.name) if t.isolated else (None, None)
        return TaskSpec(name=t.name, kind="python", task=t, deps=tuple(t.deps), func=t.func, call_kwargs=call,
                        dep_kwargs=dep_kwargs, cwd=cwd, env=t.env or None, timeout=timeout, retries=retries,
                        memory_limit=memory, condition=t.condition, stdout_path=out, stderr_path=err,
                        cores=cores, isolated=t.isolated, outputs=f.outputs if f is not None else ())
    raise TaskDefinitionError(f"task {t.name!r} is a plain {type(t).__name__}, which has nothing to run: make it "
                              "a LocalTask (shell commands) or a PythonTask (a function)")


def _argument_for(dep: str, names: frozenset[str]) -> str | None:
    """The parameter that receives dependency ``dep``'s value: its name, or for a swept copy
    (``simulate[temperature=300]``) the original task's name, when the function has such a parameter."""
    if dep in names:
        return dep
    if dep.endswith("]") and "[" in dep:
        base = dep.split("[", 1)[0]
        if base in names:
            return base
    return None
