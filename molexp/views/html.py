"""Small HTML tables for notebooks (``_repr_html_`` of ``Experiment`` and ``Results``); no dependencies."""

from __future__ import annotations

from html import escape

_STATUS_COLOURS = {"completed": "#1a7f37", "cached": "#0969da", "failed": "#cf222e", "skipped": "#6e7781",
                   "running": "#9a6700", "pending": "#6e7781", "retrying": "#9a6700"}
_MAX_ROWS = 200


def table(caption: str, header: list[str], rows: list[list[str]], status_column: int | None = None) -> str:
    """An HTML table (cells escaped), at most ``_MAX_ROWS`` rows with a note for the rest."""
    out = [f"<table><caption style='text-align:left'><b>{escape(caption)}</b></caption><thead><tr>"]
    out += [f"<th style='text-align:left'>{escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows[:_MAX_ROWS]:
        out.append("<tr>")
        for i, cell in enumerate(row):
            style = ""
            if i == status_column:
                style = f" style='color:{_STATUS_COLOURS.get(cell, 'inherit')};font-weight:bold'"
            out.append(f"<td{style}>{escape(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if len(rows) > _MAX_ROWS:
        out.append(f"<p>... and {len(rows) - _MAX_ROWS} more rows</p>")
    return "".join(out)
