"""Task definitions: ``Task``, ``LocalTask`` (alias ``ShellTask``), ``PythonTask`` and the ``@task`` decorator.

A task is a plain description; nothing runs here. Constructors check every field and raise
``TaskDefinitionError`` naming the task and the field, so mistakes surface before a run starts.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import shlex
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from pathlib import Path

from ..errors import TaskDefinitionError, TemplateError, ValidationError
from .files import declare
from .files import names as file_names
from .checks import _args, _description, _mapping, _opt_int, _resources, _seconds
from .refs import callable_ref, resolve_ref

# $name or ${name} (${name:q}: shell-quoted); $$ is a literal $ (as in a Makefile). Anything else after $
# ($1, $?, $(cmd), ${x:-default}) is bash's business and passes through untouched.
_PLACEHOLDER = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(:q)?\})")

# Environment variables molexp sets for every shell command: a template may mention them.
RUNTIME_ENV = frozenset({"MOLEXP_TASK", "MOLEXP_ATTEMPT", "MOLEXP_EXPERIMENT", "MOLEXP_WORKDIR"})


class Task:
    """Base of every task: a unique ``name`` and what it needs.

    Parameters (keyword-only after ``name``):
      deps: names of tasks (or Task objects) this task runs after.
      kwargs: template values (shell tasks) or keyword arguments (Python tasks).
      timeout: seconds (or a Dask time string such as ``"10m"``) before the task is terminated.
      retries: retries after a failure, overriding the executor's ``retry_attempts``.
      priority: larger runs first among ready tasks when ``priority_scheduling=True``.
      resources: e.g. ``{"memory": "2GB", "cores": 2}``.
      condition: ``fn(task, context) -> bool`` deciding just before the task runs whether it runs.
      cwd: working directory (default: the experiment's workdir). env: extra environment variables.
      inputs, outputs: the files it reads and writes: a list of paths, or a mapping name -> path or list of
        paths (templated like commands, relative to cwd; inputs may be globs). A task reading another's output
        runs after it; declared outputs must exist after success and are removed after a failure. See
        docs/files.md.
      description (alias ``readme``, molexp v2's name): free text saying what the task is for; kept in YAML,
        not part of the task's fingerprint (editing it re-runs nothing).
      args: command-line arguments (strings); a shell task's commands get them, shell-quoted and joined by
        spaces, as ``$args`` (e.g. ``commands=["python prep.py $args"]``).

    A plain ``Task`` describes a step and nothing to run: use ``LocalTask`` (commands) or ``PythonTask``
    (a function) for steps that do something.
    """

    kind = "task"

    def __init__(self, name: str, *, deps: Iterable[str | Task] = (), kwargs: Mapping[str, Any] | None = None,
                 timeout: float | str | None = None, retries: int | None = None, priority: int | None = None,
                 resources: Mapping[str, Any] | None = None, condition: Callable | None = None,
                 cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                 inputs: Any = None, outputs: Any = None, description: str | None = None,
                 readme: str | None = None, args: Iterable[str] | None = None):
        if not isinstance(name, str) or not name.strip():
            raise TaskDefinitionError(f"task name must be a non-empty string, got {name!r}")
        if "\0" in name:
            raise TaskDefinitionError(f"task name must not contain a NUL character (\\x00), got {name!r}")
        self.name = name
        # (the `is None` tests skip the checks of options not given: 100,000 tasks are built in a blink)
        self.deps = _dep_names(name, deps)
        self.kwargs = {} if kwargs is None else dict(_mapping(name, "kwargs", kwargs))
        self.timeout = None if timeout is None else _seconds(name, "timeout", timeout)
        self.retries = None if retries is None else _opt_int(name, "retries", retries, minimum=0)
        self.priority = None if priority is None else _opt_int(name, "priority", priority)
        self.resources = {} if resources is None else _resources(name, resources)
        if condition is not None and not callable(condition):
            raise TaskDefinitionError(f"task {name!r}: condition must be callable, got {type(condition).__name__}")
        self.condition = condition
        if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
            raise TaskDefinitionError(f"task {name!r}: cwd must be a path, got {type(cwd).__name__}")
        self.cwd = os.fspath(cwd) if cwd is not None else None
        if self.cwd is not None and "\0" in str(self.cwd):
            raise TaskDefinitionError(f"task {name!r}: cwd must not contain a NUL character, got {self.cwd!r}")
        self.env = {}
        if env is not None:
            env = _mapping(name, "env", env)
            for k, v in env.items():
                if not isinstance(v, str):
                    raise TaskDefinitionError(f"task {name!r}: env[{k!r}] must be a string, got {type(v).__name__}")
                if "\0" in v:
                    raise TaskDefinitionError(
                        f"task {name!r}: env[{k!r}] must not contain a NUL character (\\x00), got {v!r}")
                if not k or "=" in k or "\0" in k:
                    raise TaskDefinitionError(f"task {name!r}: env names must be non-empty, without '=' or a NUL "
                                              f"character, got {k!r}")
            self.env = dict(env)
        self.description = _description(name, description, readme)
        self.args = [] if args is None else _args(name, args)
        self.inputs = [] if inputs is None else declare(name, "inputs", inputs)
        self.outputs = [] if outputs is None else declare(name, "outputs", outputs)
        if inputs is not None or outputs is not None:
            clash = file_names(self) & set(self.kwargs)
            if clash:
                raise TaskDefinitionError(f"task {name!r}: kwargs {sorted(clash)} clash with the names of its "
                                          "inputs/outputs (which become template values of their own)")

    # -- identity -------------------------------------------------------------------------------------
    def _fields(self) -> dict[str, Any]:
        """The task's definition as plain data (what YAML stores and equality compares)."""
        data: dict[str, Any] = {"type": self.kind, "name": self.name}
        if self.description:
            data["description"] = self.description
        if self.deps:
            data["deps"] = list(self.deps)
        if self.kwargs:
            data["kwargs"] = dict(self.kwargs)
        for key in ("timeout", "retries", "priority", "cwd"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.resources:
            data["resources"] = dict(self.resources)
        if self.env:
            data["env"] = dict(self.env)
        if self.args:
            data["args"] = list(self.args)
        for key in ("inputs", "outputs"):
            declared = getattr(self, key)
            if declared:
                data[key] = ({k: (v if isinstance(v, str) else list(v)) for k, v in declared.items()}
                             if isinstance(declared, dict) else list(declared))
        if self.condition is not None:
            data["condition"] = callable_ref(self.condition, f"task {self.name!r}: condition")
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form of the task, as stored in an experiment's YAML."""
        return self._fields()

    @property
    def readme(self) -> str:
        """molexp v2's name for ``description``."""
        return self.description

    @readme.setter
    def readme(self, text: str) -> None:
        self.description = _description(self.name, text, None)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The task as YAML text (its ``to_dict()``); also written to ``path`` when given."""
        return dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> Task:
        """A task from a YAML file path or YAML text (as ``to_yaml`` writes it, or a molexp v2 task file).
        Called on a subclass, the task must be of that type."""
        data, where, base = load_yaml(source, "task YAML")
        found = task_from_dict(data, where=where, base=base, v2=isinstance(data, Mapping) and "type" not in data)
        if not isinstance(found, cls):
            raise TaskDefinitionError(f"{where}: task {found.name!r} is a {type(found).__name__}, not a {cls.__name__}")
        return found

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # tasks are mutable definitions

    def __repr__(self) -> str:
        deps = f", deps={self.deps}" if self.deps else ""
        return f"{type(self).__name__}({self.name!r}{deps})"

    def template_values(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The task's kwargs overridden by the run's parameters (and ``args`` as ``$args`` when given)."""
        values = dict(self.kwargs)
        if self.args:
            values.setdefault("args", shlex.join(self.args))
        if params:
            values.update(params)
        return values


class LocalTask(Task):
    """A task of shell commands, each run with ``/bin/bash`` in the task's cwd, in order, stopping at the
    first one that fails. ``$var`` / ``${var}`` are filled from ``kwargs`` overridden by run parameters;
    write ``$$`` for a literal ``$`` (a shell variable of your own: ``$$f``). Environment variables
    (``$HOME``, and ``$MOLEXP_ATTEMPT`` which molexp sets) pass through to bash.
    """

    kind = "shell"

    def __init__(self, name: str, commands: list[str], **options: Any):
        super().__init__(name, **options)
        if isinstance(commands, (str, bytes)) or not isinstance(commands, (list, tuple)):
            raise TaskDefinitionError(
                f"task {name!r}: commands must be a list of strings, got {type(commands).__name__}"
                + (f" (write commands=[{commands!r}])" if isinstance(commands, str) else ""))
        if not commands:
            raise TaskDefinitionError(f"task {name!r}: commands must not be empty")
        for i, c in enumerate(commands):
            if type(c) is not str or not c or c.isspace():
                if not isinstance(c, str) or not c.strip():
                    raise TaskDefinitionError(
                        f"task {name!r}: commands[{i}] must be a non-empty string, got {c!r}")
            if "\0" in c:
                raise TaskDefinitionError(f"task {name!r}: commands[{i}] must not contain a NUL character (\\x00: "
                                          f"bash cannot receive one), got {c!r}")
        self.commands = list(commands)

    def _fields(self) -> dict[str, Any]:
        data = super()._fields()
        data["commands"] = list(self.commands)
        return data

    def render(self, params: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *,
               files: Mapping[str, str] | None = None) -> list[str]:
        """The commands with placeholders filled; ``TemplateError`` names the task and the missing variable.
        ``${var:q}`` is the value shell-quoted; ``files`` are the (already quoted) values of ``$inputs``,
        ``$outputs`` and the names of the task's file mappings, which win over kwargs and params."""
        if files is not None:   # every placeholder a file value (``cp $inputs $outputs``): one format_map each
            rendered = []
            for cmd in self.commands:
                fmt, names = _as_format(cmd)
                if not names <= files.keys():
                    break
                rendered.append(fmt.format_map(files))
            else:
                return rendered
        values = self.template_values(params)
        environ = os.environ if environ is None else environ

        def fill(cmd: str, var: str, quoted: bool, braced: bool) -> str:
            if files is not None and var in files:
                return files[var]
            if var in values:
                text = str(values[var])
                if "\0" in text:
                    raise TemplateError(f"task {self.name!r}: the value of ${var} in command {cmd!r} contains a NUL "
                                        f"character (\\x00), which a command cannot hold: {text!r}")
                return shlex.quote(text) if quoted else text
            if var in self.env or var in environ or var in RUNTIME_ENV:
                return f'"${{{var}}}"' if quoted else (f"${{{var}}}" if braced else f"${var}")
            known = ", ".join(sorted(values)) or "none"
            raise TemplateError(
                f"task {self.name!r}: command {cmd!r} uses ${var}, which is not in the task's kwargs, the run's "
                f"params or the environment (known values: {known}; write $${var} for a shell variable)")

        rendered = []
        for cmd in self.commands:
            parts = []
            for piece in _template(cmd):
                if type(piece) is str:
                    parts.append(piece)
                else:
                    var, quoted, braced = piece
                    parts.append(fill(cmd, var, quoted, braced))
            rendered.append("".join(parts))
        return rendered


@functools.lru_cache(maxsize=4096)
def _template(cmd: str) -> tuple:
    """``cmd`` split once into literal text and placeholders ``(variable, quoted, braced)``: 10,000 tasks share a
    few command templates, and filling a parsed one costs a third of a regex substitution with a callback."""
    pieces: list = []
    last = 0
    for m in _PLACEHOLDER.finditer(cmd):
        pieces.append(cmd[last:m.start()])
        if m.group(1):
            pieces.append("$")
        else:
            pieces.append((m.group(2) or m.group(3), bool(m.group(4)), m.group(3) is not None))
        last = m.end()
    pieces.append(cmd[last:])
    return tuple(p for p in pieces if p != "")


@functools.lru_cache(maxsize=4096)
def _as_format(text: str) -> tuple[str, frozenset[str]]:
    """A template (a command, a declared path) as a ``str.format`` template filling each placeholder with
    ``str(value)`` (``cp {inputs!s} {outputs!s}``, ``in/{i!s}.txt``), whatever ``:q`` says, and the variables
    it uses: a command whose placeholders are all file values (already shell-quoted), and the copies of a swept
    task's paths, are filled with one ``format_map`` from a few shared templates."""
    pieces = _template(text)
    fmt = "".join(p.replace("{", "{{").replace("}", "}}") if type(p) is str else "{" + p[0] + "!s}" for p in pieces)
    return fmt, frozenset(p[0] for p in pieces if type(p) is not str)


ShellTask = LocalTask


class PythonTask(Task):
    """A task that calls a Python function (or an importable ``"module:function"`` reference).

    The function is called with keyword arguments: the task's ``kwargs``, run parameters whose names the
    function accepts, and each dependency's return value under the dependency's name when the function
    has a parameter of that name (or ``**kwargs``). Its return value is the task's ``value``.

    By default the function runs in a thread of the worker: ``timeout`` and memory limits cannot stop it and
    its prints go to the worker's console. With ``isolated=True`` it runs in a child Python process (shipped
    with cloudpickle): memory limits, timeouts, CPU pinning and cancellation apply as for shell tasks, and
    its output goes to the task's log files; arguments and the return value must be picklable.
    """

    kind = "python"

    def __init__(self, name: str, func: Callable | str, *, isolated: bool = False, **options: Any):
        if options.get("args"):
            raise TaskDefinitionError(f"task {name!r}: a PythonTask takes keyword arguments (kwargs={{...}}), not "
                                      f"args={list(options['args'])!r}; args= is for shell tasks' $args")
        super().__init__(name, **options)
        if not isinstance(isolated, bool):
            raise TaskDefinitionError(f"task {name!r}: isolated must be True or False, got {isolated!r}")
        self.isolated = isolated
        if isinstance(func, str):
            func = resolve_ref(func, f"task {name!r}: func")
        if not callable(func):
            raise TaskDefinitionError(f"task {name!r}: func must be callable, got {type(func).__name__}")
        self.func = func

    def accepts(self) -> tuple[frozenset[str], bool]:
        """(names of the function's keyword parameters, whether it takes ``**kwargs``)."""
        return _accepts(self.func)

    def _fields(self) -> dict[str, Any]:
        data = super()._fields()
        data["func"] = callable_ref(self.func, f"task {self.name!r}: func")
        if self.isolated:
            data["isolated"] = True
        return data

    def _source(self) -> str:
        """Source text of the function (for fingerprints); its reference when the source is not available."""
        try:
            return inspect.getsource(self.func)
        except (OSError, TypeError):
            return callable_ref(self.func, "", strict=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in notebooks and tests)."""
        return self.func(*args, **kwargs)


_ACCEPTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _accepts(func: Callable) -> tuple[frozenset[str], bool]:
    """``PythonTask.accepts`` of a function, worked out once per function (100,000 tasks often share one:
    ``inspect.signature`` for each would take a second)."""
    try:
        return _ACCEPTS[func]
    except (KeyError, TypeError):  # not seen yet, or not weak-referenceable (then not cached)
        pass
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        found: tuple[frozenset[str], bool] = (frozenset(), True)
    else:
        names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        found = (names, any(p.kind is p.VAR_KEYWORD for p in params))
    try:
        _ACCEPTS[func] = found
    except TypeError:
        pass
    return found


def task(func: Callable | None = None, *, name: str | None = None, **options: Any):
    """Decorator making a ``PythonTask`` of a function: ``@task`` or ``@task(deps=["prepare"], retries=2)``.

    The task is named after the function unless ``name=`` is given; calling it still calls the function.
    """

    def wrap(f: Callable) -> PythonTask:
        return PythonTask(name or f.__name__, f, **options)

    return wrap(func) if func is not None else wrap


# -- references to callables ------------------------------------------------------------------------


def _dep_names(name: str, deps: Any) -> list[str]:
    if type(deps) in (list, tuple) and all(type(d) is str and d for d in deps) and len(set(deps)) == len(deps):
        return list(deps)   # the common case: distinct names
    if isinstance(deps, (str, Task)):
        deps = [deps]
    try:
        items = list(deps or ())
    except TypeError:
        raise TaskDefinitionError(
            f"task {name!r}: deps must be a list of task names or tasks, got {type(deps).__name__}") from None
    out: list[str] = []
    for d in items:
        dep = d.name if isinstance(d, Task) else d
        if not isinstance(dep, str) or not dep:
            raise TaskDefinitionError(f"task {name!r}: a dependency must be a task name or a Task, got {d!r}")
        if dep not in out:
            out.append(dep)
    return out


TASK_TYPES: dict[str, type[Task]] = {"shell": LocalTask, "local": LocalTask, "python": PythonTask, "task": Task}


# -- tasks from YAML -----------------------------------------------------------------------------

def dump_yaml(data: Any, path: str | os.PathLike | None = None) -> str:
    """``data`` as YAML text (keys in their order); also written to ``path`` when given."""
    text = yaml.safe_dump(data, sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


# libyaml's safe loader where PyYAML was built with it (the same documents and types, ~6x faster: a 10,000-point
# sweep list parses in 0.05 s, not 0.3 s), else PyYAML's own.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(source: str | os.PathLike, what: str) -> tuple[Any, str, str | None]:
    """(data, where, directory) of a YAML file path or YAML text; ``ValidationError`` naming it if it cannot
    be read or parsed. ``directory`` is the file's (None for text)."""
    where, base = what, None
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and source.endswith((".yaml", ".yml"))):
        where, base = os.fspath(source), str(Path(source).resolve().parent)
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise ValidationError(f"cannot read {what.split()[0]} file {where}: {e.strerror}") from None
    elif isinstance(source, str):
        text = source
    else:
        raise ValidationError(f"{what}: expected a file path or YAML text, got {type(source).__name__}")
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise ValidationError(f"{where}: not valid YAML: {e}") from None
    return data, where, base


def task_from_dict(spec: Any, *, where: str = "task", base: str | os.PathLike | None = None,
                   v2: bool = False) -> Task:
    """Build a task from its plain-data form: ``{"type": "shell"|"python"|"task", "name": ..., ...}``.

    ``base``: the experiment file's directory, where ``func: module:function`` modules are looked for first.
    ``v2``: a molexp v2 task (no ``type``): one with ``commands`` is a shell task, with ``func`` a Python
    task, else a plain ``Task``; its ``readme`` is the description.
    """
    if not isinstance(spec, Mapping):
        raise TaskDefinitionError(f"{where}: expected a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    inferred = "shell" if "commands" in spec else "python" if "func" in spec else ("task" if v2 else None)
    kind = spec.pop("type", spec.pop("task_type", inferred) if v2 else inferred)
    if kind not in TASK_TYPES:
        raise TaskDefinitionError(f"{where}: 'type' must be one of {sorted(set(TASK_TYPES))}, got {kind!r}")
    name = spec.pop("name", None)
    if "condition" in spec and isinstance(spec["condition"], str):
        spec["condition"] = resolve_ref(spec["condition"], f"{where}: condition", base=base)
    cls = TASK_TYPES[kind]
    required = "commands" if cls is LocalTask else "func" if cls is PythonTask else None
    allowed = _BASE_FIELDS | {r for r in (required,) if r} | ({"isolated"} if cls is PythonTask else set())
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TaskDefinitionError(f"{where} ({name!r}): unknown field {key!r}{hint}; a {kind} task takes "
                                      f"name, {', '.join(sorted(allowed))}")
    if required is not None and required not in spec:
        raise TaskDefinitionError(f"{where} ({name!r}): a {kind} task needs {required!r}")
    if cls is PythonTask and isinstance(spec["func"], str):
        spec["func"] = resolve_ref(spec["func"], f"task {name!r}: func", base=base)
    return cls(name, **spec)  # type: ignore[arg-type]


_BASE_FIELDS = frozenset({"deps", "kwargs", "timeout", "retries", "priority", "resources", "condition", "cwd",
                          "env", "inputs", "outputs", "description", "readme", "args"})
