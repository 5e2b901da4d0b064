"""A run's timeline: a Gantt chart of its tasks as self-contained SVG (``timeline_svg``), shown in Jupyter
(``Timeline``); ``Results.timeline()`` returns one."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .style import BAR_COLOUR, _css_name, _esc, _save, _short, _status_of


def _timeline_rows(results: Mapping[str, Any]) -> list[dict]:
    """Normalise a Results / {name: TaskResult} / read_state records / {name: to_record()} to plain rows."""
    if isinstance(results, Mapping) and "records" in results and "experiment" in results \
            and isinstance(results.get("records"), Mapping):
        results = results["records"]
    rows = []
    for name, item in results.items():
        if isinstance(item, Mapping):
            rec = item.get("result", item) if isinstance(item.get("result"), Mapping) else item
            status = _status_of(item)
            attempts = [(a.get("start"), a.get("end"), a.get("failure")) for a in rec.get("attempt_log") or []]
            rows.append({"name": name, "status": status, "start": rec.get("start"), "end": rec.get("end"),
                         "attempts": attempts})
        else:
            attempts = [(a.start, a.end, a.failure) for a in getattr(item, "attempt_log", None) or []]
            rows.append({"name": name, "status": _status_of(item), "start": getattr(item, "start", None),
                         "end": getattr(item, "end", None), "attempts": attempts})
    return rows


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt_seconds(t: float, step: float) -> str:
    if step >= 1:
        return f"{t:.0f}s" if t < 120 else f"{int(t // 60)}m{int(t % 60):02d}s"
    decimals = max(0, -math.floor(math.log10(step)) + (1 if step * 10 ** -math.floor(math.log10(step)) == 2.5
                                                        else 0))
    return f"{t:.{decimals}f}s"


def timeline_svg(results: Mapping[str, Any], *, width: int = 960, row_height: int = 22,
                 label_limit: int = 32) -> str:
    """A Gantt chart of a run as inline SVG: one row per task, sorted by start; time in seconds from the run start.

    Each task's bar runs from its start to its end in its status colour; with several attempts, earlier failed
    attempts are hatched, the waits between attempts are a thin line and attempts are separated by a white tick.
    Tasks that never ran (skipped) get a row with a small grey marker at the start; cached tasks (timed in the run
    that produced them) a blue marker. ``results`` is a ``Results`` mapping, ``{name: TaskResult}``, or the
    ``records`` dict of ``molexp.state.journal.read_state`` (or that whole dict).
    """
    rows = _timeline_rows(results)
    timed: list[dict] = []
    untimed: list[dict] = []   # (one pass: ``r not in timed`` compared every row with every timed one)
    for r in rows:
        (timed if r["start"] is not None and r["end"] is not None and r["status"] != "cached" else untimed).append(r)
    timed.sort(key=lambda r: (r["start"], r["end"], r["name"]))
    rows = timed + untimed
    t0 = min((r["start"] for r in timed), default=0.0)
    t1 = max((r["end"] for r in timed), default=t0)
    span = max(t1 - t0, 1e-3)
    label_w, pad, axis_h = 230, 12, 26
    plot_w = max(200, width - label_w - 2 * pad)
    height = pad * 2 + axis_h + max(1, len(rows)) * row_height
    x_of = lambda t: label_w + pad + (t - t0) / span * plot_w  # noqa: E731
    step = _nice_step(span)
    fs = 12
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="molexp-timeline" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" style="max-width:100%;height:auto" role="img" '
           f'font-family="system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif" font-size="{fs}">',
           '<defs><pattern id="molexp-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f6c9c9"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#d43c3c" stroke-width="3"/></pattern></defs>']
    # axis: ticks and grid lines
    top = pad + axis_h
    bottom = height - pad
    out.append('<g class="axis" stroke="#e3e5e8" fill="#5f6368" font-size="11">')
    k = 0
    while k * step <= span + 1e-9:
        x = x_of(t0 + k * step)
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}"/>'
                   f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" stroke="none">'
                   f"{_esc(_fmt_seconds(k * step, step))}</text>")
        k += 1
    out.append("</g>")
    out.append(f'<text x="{pad}" y="{top - 8}" fill="#5f6368" font-size="11">seconds from the run start</text>')
    for i, r in enumerate(rows):
        y = top + i * row_height
        name, status = r["name"], r["status"]
        css = _css_name(status)
        colour = BAR_COLOUR.get(status, BAR_COLOUR["pending"])
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{row_height}" fill="#f7f8fa"/>')
        out.append(f'<text class="label" x="{label_w}" y="{y + row_height / 2 + 4:.1f}" text-anchor="end" '
                   f'fill="#202124"><title>{_esc(name)}</title>{_esc(_short(name, label_limit))}</text>')
        bar_y, bar_h = y + 4, row_height - 8
        if r in untimed:
            x = label_w + pad
            out.append(f'<g class="bar status-{css}" data-task="{_esc(name)}"><title>{_esc(name)}: {_esc(status)}'
                       f'</title><rect x="{x}" y="{bar_y}" width="8" height="{bar_h}" rx="2" fill="{colour}"/>'
                       f'<text x="{x + 14}" y="{y + row_height / 2 + 4:.1f}" fill="#5f6368" font-style="italic">'
                       f"{_esc(status)}</text></g>")
            continue
        x1, x2 = x_of(r["start"]), x_of(r["end"])
        dur = r["end"] - r["start"]
        n_attempts = len(r["attempts"])
        more = f", {n_attempts} attempts" if n_attempts > 1 else ""
        parts = [f'<g class="bar status-{css}" data-task="{_esc(name)}" data-start="{r["start"] - t0:.3f}" '
                 f'data-end="{r["end"] - t0:.3f}"><title>{_esc(name)}: {_esc(status)}, {dur:.2f}s{more}</title>']
        attempts = [a for a in r["attempts"] if a[0] is not None and a[1] is not None]
        if len(attempts) <= 1:
            parts.append(f'<rect class="main" x="{x1:.1f}" y="{bar_y}" width="{max(x2 - x1, 2):.1f}" '
                         f'height="{bar_h}" rx="2" fill="{colour}"/>')
        else:
            # the whole span thin (waits between attempts), each attempt full height
            parts.append(f'<rect class="main" x="{x1:.1f}" y="{y + row_height / 2 - 1.5:.1f}" '
                         f'width="{max(x2 - x1, 2):.1f}" height="3" fill="{colour}" opacity="0.55"/>')
            for j, (a_start, a_end, failure) in enumerate(attempts):
                last = j == len(attempts) - 1
                ax1, ax2 = x_of(a_start), x_of(a_end)
                fill = colour if last or not failure else "url(#molexp-hatch)"
                stroke = "" if last or not failure else ' stroke="#d43c3c" stroke-width="0.8"'
                parts.append(f'<rect class="attempt" x="{ax1:.1f}" y="{bar_y}" width="{max(ax2 - ax1, 2):.1f}" '
                             f'height="{bar_h}" fill="{fill}"{stroke}><title>attempt {j + 1}'
                             f'{": " + _esc(failure) if failure else ""}</title></rect>')
                if j:
                    parts.append(f'<line x1="{ax1:.1f}" y1="{bar_y - 2}" x2="{ax1:.1f}" y2="{bar_y + bar_h + 2}" '
                                 'stroke="#ffffff" stroke-width="1.5"/>')
        parts.append("</g>")
        out.append("".join(parts))
    out.append("</svg>")
    return "\n".join(out)


_BAR_MARK = '<g class="bar '


class Timeline:
    """A run's timeline: shows itself in Jupyter (``_repr_svg_``); ``str()`` is the SVG; ``save(path)``."""

    def __init__(self, svg: str):
        self.svg = svg

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"<Timeline {self.svg.count(_BAR_MARK)} tasks>"

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.svg`` or ``.html`` (a complete page that opens offline). Returns the path."""
        return _save(path, lambda: self.svg, lambda: self.svg, "molexp timeline")


def timeline(results: Mapping[str, Any], **options: Any) -> Timeline:
    """``Timeline(timeline_svg(results, **options))``: what ``Results.timeline()`` returns."""
    return Timeline(timeline_svg(results, **options))
