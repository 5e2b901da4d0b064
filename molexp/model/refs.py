"""Functions named by reference (``"module:function"``), as YAML files and ``func:`` fields name them."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from ..errors import TaskDefinitionError


def callable_ref(func: Callable, what: str, *, strict: bool = True) -> str:
    """``"module:qualname"`` of an importable function; ``TaskDefinitionError`` if it is not importable."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if module and qualname and "<" not in qualname and module != "__main__":
        return f"{module}:{qualname}"
    if not strict:
        return f"{module}:{qualname}"
    raise TaskDefinitionError(
        f"{what}: {func!r} cannot be written to YAML: only functions importable as 'module:function' can "
        "(define it at the top level of a module, not in __main__, a notebook cell or a lambda)")


def resolve_ref(ref: str, what: str, *, base: str | os.PathLike | None = None) -> Callable:
    """Import ``"package.module:function"`` (or ``"package.module.function"``).

    ``base`` (the directory of the experiment file naming it): a module found there (``analysis.py``, or a
    package directory) is imported from there, as ``molexp run workflow.py`` imports the modules next to it;
    the directory is added to ``sys.path`` for the rest of the process (workers and resumed runs need it too).
    """
    module_name, sep, attr = ref.partition(":")
    if not sep:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise TaskDefinitionError(f"{what}: expected 'module:function', got {ref!r}")
    if base is not None:
        _importable_from(os.fspath(base), module_name)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise TaskDefinitionError(f"{what}: cannot import {ref!r}: {e}") from None
    return obj


def _importable_from(base: str, module_name: str) -> None:
    """Put ``base`` first on ``sys.path`` when the top-level module of ``module_name`` lives there."""
    import sys

    top = module_name.split(".", 1)[0]
    if not (os.path.isfile(os.path.join(base, top + ".py")) or os.path.isdir(os.path.join(base, top))):
        return
    if base not in sys.path:
        sys.path.insert(0, base)
        importlib.invalidate_caches()
