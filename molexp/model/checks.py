"""Checks of a task's fields at construction: each names the task and the field, what was expected and
what was given."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dask.utils import parse_bytes, parse_timedelta

from ..errors import TaskDefinitionError


def _description(name: str, description: Any, readme: Any) -> str:
    if readme is not None:
        if description is not None and description != readme:
            raise TaskDefinitionError(f"task {name!r}: give description= or readme= (the same thing), not both")
        description = readme
    if description is None:
        return ""
    if not isinstance(description, str):
        raise TaskDefinitionError(f"task {name!r}: description (readme) must be a string, got "
                                  f"{type(description).__name__}")
    return description


def _args(name: str, args: Any) -> list[str]:
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise TaskDefinitionError(f"task {name!r}: args must be a list of strings, got {type(args).__name__}"
                                  + (f" (write args=[{args!r}])" if isinstance(args, str) else ""))
    out = list(args)
    for i, a in enumerate(out):
        if not isinstance(a, str) or "\0" in a:
            raise TaskDefinitionError(f"task {name!r}: args[{i}] must be a string without a NUL character, got {a!r}")
    return out


_EMPTY: Mapping = {}


def _mapping(name: str, field: str, value: Any) -> Mapping:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise TaskDefinitionError(f"task {name!r}: {field} must be a mapping, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise TaskDefinitionError(f"task {name!r}: {field} keys must be strings, got {k!r}")
    return value


def _seconds(name: str, field: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_timedelta(value) if not isinstance(value, bool) else None
    except (ValueError, TypeError, KeyError):
        seconds = None
    if seconds is None or seconds <= 0:
        raise TaskDefinitionError(
            f"task {name!r}: {field} must be a positive number of seconds or a time such as '10m', got {value!r}")
    return float(seconds)


def _opt_int(name: str, field: str, value: Any, minimum: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        raise TaskDefinitionError(f"task {name!r}: {field} must be {expected}, got {value!r}")
    return value


def _resources(name: str, resources: Any) -> dict[str, Any]:
    if not resources:
        if resources is None or isinstance(resources, Mapping):
            return {}
    resources = dict(_mapping(name, "resources", resources))
    for key, value in resources.items():
        if key == "memory":
            try:
                parse_bytes(value)
            except (ValueError, TypeError):
                raise TaskDefinitionError(
                    f"task {name!r}: resources['memory'] must be a size such as '2GB', got {value!r}") from None
        elif key == "cores":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskDefinitionError(
                    f"task {name!r}: resources['cores'] must be an integer >= 1, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TaskDefinitionError(
                f"task {name!r}: resources[{key!r}] must be a number, got {value!r}")
    return resources
