"""What the pictures share: colours per status, escaping, short labels, saving as .svg or .html."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


# fill, stroke, text colour per status. Final statuses are coloured; transitions are neutral.
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "completed": ("#d3f0d9", "#2e7d32", "#14451a"),
    "failed": ("#fbd5d5", "#c62828", "#6b1010"),
    "skipped": ("#e6e6e6", "#8a8a8a", "#4a4a4a"),
    "cached": ("#d6e6fb", "#1e63b8", "#0f3566"),
    "running": ("#fff6d6", "#b08800", "#4d3b00"),
    "retrying": ("#fff6d6", "#b08800", "#4d3b00"),
    "pending": ("#ffffff", "#9aa0a6", "#333333"),
}


# Solid colour of a timeline bar per status.
BAR_COLOUR: dict[str, str] = {
    "completed": "#3a9d4a",
    "failed": "#d43c3c",
    "skipped": "#9e9e9e",
    "cached": "#3b7dd8",
    "running": "#d9a800",
    "retrying": "#d9a800",
    "pending": "#b0b6bd",
}


def _status_of(value: Any) -> str:
    """A status string from a TaskStatus, a str, a TaskResult or a journal record/result dict."""
    if value is None:
        return "pending"
    if isinstance(value, Mapping):
        value = value.get("status", "pending")
    else:
        value = getattr(value, "status", value)
    value = getattr(value, "value", value)  # an enum
    return str(value)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())  # no newlines or tabs in a label
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "\u2026"


def _css_name(status: str) -> str:
    """A status as a safe class/identifier name (unknown statuses stay readable)."""
    return re.sub(r"[^a-z0-9_-]", "_", str(status).lower()) or "pending"


_WS_REFS = str.maketrans({"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _esc(text: Any) -> str:
    """HTML/XML-escape text; newlines and tabs as character references so attributes keep them exactly."""
    return html.escape(str(text), quote=True).translate(_WS_REFS)


def _save(path: str | os.PathLike, svg, body, title: str) -> Path:
    """Write ``svg()`` to a ``.svg`` path, or ``body()`` in a complete offline page to a ``.html`` path."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".svg":
        p.write_text(svg(), encoding="utf-8")
    elif suffix in (".html", ".htm"):
        p.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                     f"</head><body>{body()}</body></html>\n", encoding="utf-8")
    else:
        raise ValueError(f"save: expected a .svg or .html path, got {os.fspath(path)!r}")
    return p
