"""The shape of the code, guarded: the public names, the import paths the docs show, no import cycle, small
modules, a compiled graph Dask accepts as valid, and no private name of Dask."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "molexp"

PUBLIC = {
    "AdaptiveExecutor", "Attempt", "BatchExecutor", "CartesianSampler", "CheckpointError", "CombinationSampler", "CheckpointLocked",
    "ClusterError", "ConfigError", "CurrentTask", "CycleError", "Decision", "ExecutionConfig", "ExecutionError",
    "Executor", "Experiment", "ExperimentExecutor", "FailureKind", "FileDeclarationError", "GraphError",
    "LocalTask", "LogUniform", "MemoryPolicy", "MolexpError", "Param", "ParamSet", "ParamSpace", "Plan",
    "PlanEntry", "PythonTask", "RandomSampler", "Results", "RunInterrupted", "ShellTask", "StreamExecutor",
    "SweepError", "Task", "TaskDefinitionError", "TaskGraph", "TaskPool", "TaskResult", "TaskStatus",
    "TemplateError", "Uniform", "ValidationError", "current_task", "group_results", "param_sets", "sweep", "task",
}


def test_the_public_names_are_exactly_these_and_each_has_a_docstring():
    import molexp

    assert PUBLIC <= set(molexp.__all__), sorted(PUBLIC - set(molexp.__all__))
    # names may be added (a new release), never removed or renamed silently
    for name in molexp.__all__:
        obj = getattr(molexp, name)
        assert (getattr(obj, "__doc__", None) or "").strip(), f"molexp.{name} has no docstring"


def _doc_files():
    return sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])


def test_every_import_path_the_docs_show_works():
    shown: set[tuple[str, str]] = set()
    for path in _doc_files():
        text = path.read_text()
        for module, names in re.findall(r"^\s*from (molexp[\w.]*) import \(?([\w, ]+)", text, re.M):
            shown.update((module, n.strip()) for n in names.split(",") if n.strip())
        # mkdocstrings: "::: molexp.journal" (a module or a name), then "members: [read_state, ...]" if any
        for target, members in re.findall(r"^::: (molexp[\w.]*)\n(?:[ \t]+(?:options:|members: \[([^\]]*)\])\n)*",
                                          text, re.M):
            if importlib.util.find_spec(target) if target.count(".") == 1 else False:
                shown.update((target, m.strip()) for m in members.split(",") if m.strip())
            else:
                module, _, attr = target.rpartition(".")
                shown.add((module, attr))
    # the scan works
    assert ("molexp.params", "sweep") in shown and ("molexp.journal", "read_state") in shown
    assert ("molexp", "ExperimentExecutor") in shown and ("molexp.executors.adaptive", "AdaptiveConfig") in shown
    for module, name in sorted(shown):
        mod = importlib.import_module(module)
        if name:
            assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}"), f"{module}.{name}"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """molexp modules that ``name`` imports, at module level or inside functions (not under TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):   # imports only for type checkers never run: not edges
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def test_molexp_has_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    graph.pop("molexp")  # the package's __init__ re-exports everything: it is the top, imported by nothing
    for edges in graph.values():
        edges.discard("molexp")
    # Tarjan's strongly connected components: a component of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_is_under_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these by concept: {long}"


def test_no_private_name_of_dask_is_used():
    """Dask's and distributed's underscore names change without notice; molexp uses their public API (the
    few behaviours it relies on beyond that are listed in docs/architecture.md)."""
    private = re.compile(r"\b(?:dask|distributed)(?:\.\w+)*\._\w+|from (?:dask|distributed)[\w.]* import [^\n]*\b_\w+")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in PACKAGE.rglob("*.py")
             for m in private.finditer(p.read_text())]
    assert not found, found


@pytest.mark.parametrize("reused", [False, True])
def test_the_compiled_graph_is_a_valid_high_level_graph_of_dask_tasks(tmp_path, reused):
    import queue

    import dask
    from dask.task_spec import DataNode, Task

    from molexp import Experiment, LocalTask, PythonTask, TaskResult, TaskStatus
    from molexp.backends.local import LocalCancel, LocalSink
    from molexp.run.compile import compile_graph
    from molexp.run.config import ExecutionConfig
    from molexp.run.spec import RunContext

    e = Experiment("valid", workdir=str(tmp_path))
    e.add_task(LocalTask("make", commands=["echo 3 > n.txt"]))
    e.add_task(PythonTask("double", lambda make=None: 6, deps=["make"]))
    e.add_task(PythonTask("add", lambda double=None: double + 1, deps=["double"]))
    ctx = RunContext(run_id="r1", experiment=e.name, workdir=str(tmp_path), sink=LocalSink(queue.SimpleQueue()),
                     cancel=LocalCancel())
    compiled = compile_graph(e.graph, ctx, ExecutionConfig())
    if reused:
        compiled.reuse({"make": TaskResult("make", TaskStatus.CACHED)})
    hlg = compiled.graph()
    hlg.validate()
    (layer,) = hlg.layers.values()
    nodes = dict(layer)
    assert isinstance(nodes[compiled.keys["add"]], Task)
    assert isinstance(nodes[compiled.keys["make"]], DataNode if reused else Task)
    assert nodes[compiled.keys["add"]].dependencies == {compiled.ctx_key, compiled.keys["double"]}
    (add,) = dask.compute(compiled.delayed()["add"], scheduler="sync")
    assert add.value == 7
    compiled.release()


def test_both_backends_implement_the_backend_protocol():
    import inspect

    from molexp.backends.base import Backend
    from molexp.backends.distributed import DistributedBackend
    from molexp.backends.local import LocalBackend

    wanted = {n: inspect.signature(f) for n, f in vars(Backend).items()
              if inspect.isfunction(f) and not n.startswith("_")}
    assert {"start", "submit", "task_final", "caught_up", "cancel", "close"} <= set(wanted)
    for cls in (LocalBackend, DistributedBackend):
        for name, sig in wanted.items():
            impl = getattr(cls, name)
            assert list(inspect.signature(impl).parameters) == list(sig.parameters), (cls.__name__, name)
        for attr in ("name", "tick", "schedules_dependents"):
            assert hasattr(cls, attr), (cls.__name__, attr)
    assert LocalBackend.schedules_dependents and not DistributedBackend.schedules_dependents


def test_running_a_plain_task_is_a_clear_error_before_anything_runs(tmp_path):
    from molexp import Experiment, ExperimentExecutor, LocalTask, Task, TaskDefinitionError

    e = Experiment("plain", workdir=str(tmp_path))
    e.add_task(LocalTask("first", commands=["touch ran"]))
    e.add_task(Task("nothing", deps=["first"]))
    with pytest.raises(TaskDefinitionError, match="task 'nothing' is a plain Task, which has nothing to run"):
        ExperimentExecutor(e, progress=False).run()
    assert not (tmp_path / "ran").exists()


def test_the_gc_pause_is_counted_across_threads_and_leaves_a_disabled_collector_alone():
    import gc
    import threading

    from molexp.gc_pause import gc_paused

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other():
        with gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        inside.wait(10)
    assert not gc.isenabled()      # the other thread's pause goes on: not turned back on under it
    release.set()
    t.join(10)
    assert gc.isenabled()
    gc.disable()                   # the user's choice
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_is_built_during_a_gc_pause_goes_to_the_oldest_generation_and_frozen_objects_stay_frozen():
    import gc

    from molexp.gc_pause import gc_paused

    with gc_paused():
        built = [[i] for i in range(20_000)]   # young, tracked, alive
    young = {id(o) for o in gc.get_objects(generation=0)} | {id(o) for o in gc.get_objects(generation=1)}
    assert not any(id(x) in young for x in built[::100])          # promoted: no young collection walks them
    assert any(x is built[0] for x in gc.get_objects(generation=2))
    kept = [["frozen on purpose"]]
    gc.freeze()                                  # someone froze objects on purpose (before a fork, say)
    try:
        with gc_paused():
            more = [[i] for i in range(100)]
        # left frozen: not unfrozen by molexp (an unfrozen object is back in the oldest generation). (Not the
        # freeze count: a frozen object another thread frees leaves it.)
        assert gc.get_freeze_count() > 0 and not any(o is kept for o in gc.get_objects(generation=2))
        assert gc.isenabled() and more
    finally:
        gc.unfreeze()


def test_a_generator_given_to_add_tasks_runs_with_the_collector_on():
    import gc

    from molexp import LocalTask, TaskGraph

    seen = []

    def tasks():
        for i in range(3):
            seen.append(gc.isenabled())
            yield LocalTask(f"t{i}", commands=["true"])

    assert len(TaskGraph(tasks())) == 3 and seen == [True, True, True]
