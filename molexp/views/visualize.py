"""Pictures of a workflow: the task graph (Mermaid, Graphviz DOT, or a self-contained SVG) and a run's timeline.

* ``graph_mermaid(graph, statuses)`` / ``graph_dot(graph, statuses)``: text for Mermaid or Graphviz.
* ``visualize(graph, statuses)``: an object that shows itself in Jupyter (``_repr_svg_`` when the ``graphviz``
  package and its ``dot`` program are installed, else ``_repr_html_`` with an inline SVG drawn here, no
  JavaScript, no network) and has ``save(path)`` for ``.svg`` or ``.html``.
* ``timeline_svg(results)``: a Gantt chart of a finished run (a ``Results`` or the ``records`` of ``read_state``).

``graph`` is a ``TaskGraph`` or anything with a ``.graph`` (an ``Experiment``). ``statuses`` maps task names to a
``TaskStatus``/status string, a ``TaskResult`` or a journal record; a ``Results`` works as it is.
Everything here is pure Python and writes text; nothing is imported from outside the standard library unless
``visualize`` finds ``graphviz``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .style import STATUS_STYLE, _css_name, _esc, _save, _short, _status_of
from .timeline import Timeline, timeline, timeline_svg

__all__ = ["graph_mermaid", "graph_dot", "visualize", "timeline", "timeline_svg", "graph_svg", "GraphSVG",
           "GraphHTML", "Timeline", "STATUS_STYLE"]

_NEUTRAL = STATUS_STYLE["pending"]


# --------------------------------------------------------------------------------------------- inputs

def _as_graph(graph: Any):
    """A TaskGraph from a TaskGraph or an Experiment (anything with ``.graph``)."""
    inner = getattr(graph, "graph", None)
    if inner is not None and hasattr(inner, "layers"):
        return inner
    if hasattr(graph, "layers") and hasattr(graph, "tasks"):
        return graph
    raise TypeError(f"expected a TaskGraph or an Experiment, got {type(graph).__name__}")


def _statuses(statuses: Mapping[str, Any] | None) -> dict[str, str]:
    if statuses is None:
        return {}
    if isinstance(statuses, Mapping) and "records" in statuses and isinstance(statuses.get("records"), Mapping) \
            and "experiment" in statuses:
        statuses = statuses["records"]  # a whole read_state() dict
    return {name: _status_of(v) for name, v in statuses.items()}


def _edges(g) -> list[tuple[str, str]]:
    return [(d, name) for name in g.topological_order() for d in g.tasks[name].deps]


# --------------------------------------------------------------------------------------------- Mermaid

_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 _.,:/+=@!?-]")


def _mermaid_label(name: str, limit: int = 80) -> str:
    # Inside a quoted Mermaid label only entity codes are safe for ", <, >, #, &, brackets...: use #NNN; for
    # every character outside a small safe set, so no task name can end the label or inject HTML.
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in _short(name, limit))


def graph_mermaid(graph: Any, statuses: Mapping[str, Any] | None = None, *, direction: str = "TD") -> str:
    """Mermaid ``flowchart`` text of a task graph; nodes are classed (coloured) by status when given.

    Node ids are ``t0``, ``t1``... (topological order), so any task name is safe; labels use Mermaid entity codes.
    """
    g = _as_graph(graph)
    if direction not in ("TD", "TB", "BT", "LR", "RL"):
        raise ValueError(f"direction must be TD, TB, BT, LR or RL, got {direction!r}")
    st = _statuses(statuses)
    order = g.topological_order()
    ids = {name: f"t{i}" for i, name in enumerate(order)}
    lines = [f"flowchart {direction}"]
    lines += [f'    {ids[n]}["{_mermaid_label(n)}"]' for n in order]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in _edges(g)]
    if st:
        by_status: dict[str, list[str]] = {}
        for n in order:
            by_status.setdefault(_css_name(st.get(n, "pending")), []).append(ids[n])
        for s, members in by_status.items():
            fill, stroke, text = STATUS_STYLE.get(s, _NEUTRAL)
            lines.append(f"    classDef {s} fill:{fill},stroke:{stroke},color:{text}")
            lines.append(f"    class {','.join(members)} {s}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- DOT

def _dot_string(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", "\\n") + '"'


def graph_dot(graph: Any, statuses: Mapping[str, Any] | None = None, *, rankdir: str = "TB",
              label_limit: int = 60) -> str:
    """Graphviz DOT text of a task graph (nodes ``t0``, ``t1``... labelled with the task names)."""
    g = _as_graph(graph)
    st = _statuses(statuses)
    order = g.topological_order()
    ids = {name: f"t{i}" for i, name in enumerate(order)}
    fill, stroke, text = _NEUTRAL
    lines = ["digraph molexp {",
             f"    rankdir={rankdir};",
             f'    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
             f'fillcolor="{fill}", color="{stroke}", fontcolor="{text}"];',
             '    edge [color="#777777", arrowsize=0.7];']
    for n in order:
        attrs = [f"label={_dot_string(_short(n, label_limit))}", f"tooltip={_dot_string(n)}"]
        if st:
            s = st.get(n, "pending")
            f, c, t = STATUS_STYLE.get(s, _NEUTRAL)
            attrs += [f'fillcolor="{f}"', f'color="{c}"', f'fontcolor="{t}"', f"class={_dot_string(_css_name(s))}"]
        lines.append(f"    {ids[n]} [{', '.join(attrs)}];")
    lines += [f"    {ids[a]} -> {ids[b]};" for a, b in _edges(g)]
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- own SVG

def _layout(g, max_per_row: int) -> tuple[list[list[str]], dict[str, int]]:
    """Rows of names: one per layer, layers wider than ``max_per_row`` wrapped; ordered to limit crossings."""
    position: dict[str, float] = {}
    rows: list[list[str]] = []
    layer_of: dict[str, int] = {}
    for k, layer in enumerate(g.layers()):
        # Barycentre of the dependencies' positions (one downward pass); keeps insertion order on ties.
        def key(item):
            i, name = item
            deps = [position[d] for d in g.tasks[name].deps if d in position]
            return (sum(deps) / len(deps) if deps else -1.0, i)

        ordered = [n for _, n in sorted(enumerate(layer), key=key)]
        for start in range(0, len(ordered), max_per_row):
            chunk = ordered[start:start + max_per_row]
            for i, n in enumerate(chunk):
                position[n] = (i + 0.5) / len(chunk)
                layer_of[n] = k
            rows.append(chunk)
    return rows, layer_of


def graph_svg(graph: Any, statuses: Mapping[str, Any] | None = None, *, max_per_row: int = 16,
              label_limit: int = 22) -> str:
    """The task graph as standalone inline SVG: one row per layer (wide layers wrapped), boxes coloured by status.

    Drawn here, without Graphviz or JavaScript. Full task names (and statuses) are in each box's ``<title>``.
    """
    g = _as_graph(graph)
    st = _statuses(statuses)
    rows, _ = _layout(g, max(1, max_per_row))
    box_w, box_h, gap_x, gap_y, pad = 150, 30, 18, 46, 16
    widest = max((len(r) for r in rows), default=1)
    width = pad * 2 + widest * box_w + (widest - 1) * gap_x
    height = pad * 2 + len(rows) * box_h + max(0, len(rows) - 1) * gap_y
    centre: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        row_w = len(row) * box_w + (len(row) - 1) * gap_x
        x0 = (width - row_w) / 2
        y = pad + r * (box_h + gap_y)
        for i, n in enumerate(row):
            centre[n] = (x0 + i * (box_w + gap_x) + box_w / 2, y + box_h / 2)
    edges = _edges(g)
    thin = len(edges) > 2000
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="molexp-graph" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" style="max-width:100%;height:auto" role="img" '
           f'font-family="system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif" font-size="12">',
           '<defs><marker id="molexp-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a8f98"/></marker>'
           '</defs>',
           f'<g class="edges" stroke="#8a8f98" stroke-width="{0.6 if thin else 1.2}" fill="none">']
    marker = "" if thin else ' marker-end="url(#molexp-arrow)"'
    for a, b in edges:
        (x1, y1), (x2, y2) = centre[a], centre[b]
        y1 += box_h / 2
        y2 -= box_h / 2
        mid = (y1 + y2) / 2
        out.append(f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"'
                   f'{marker}/>')
    out.append("</g>")
    out.append('<g class="nodes">')
    for n, (cx, cy) in centre.items():
        s = st.get(n, "pending") if st else "pending"
        fill, stroke, text = STATUS_STYLE.get(s, _NEUTRAL)
        title = f"{n} ({s})" if st else n
        out.append(f'<g class="node status-{_css_name(s)}" data-task="{_esc(n)}"><title>{_esc(title)}</title>'
                   f'<rect x="{cx - box_w / 2:.1f}" y="{cy - box_h / 2:.1f}" width="{box_w}" height="{box_h}" '
                   f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
                   f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle" fill="{text}">'
                   f"{_esc(_short(n, label_limit))}</text></g>")
    out.append("</g></svg>")
    return "\n".join(out)


def _legend_html(statuses: dict[str, str]) -> str:
    present = sorted(set(statuses.values()), key=lambda s: list(STATUS_STYLE).index(s) if s in STATUS_STYLE else 99)
    items = []
    for s in present:
        fill, stroke, text = STATUS_STYLE.get(s, _NEUTRAL)
        items.append(f'<span style="display:inline-block;margin-right:10px"><span style="display:inline-block;'
                     f'width:11px;height:11px;border-radius:3px;vertical-align:-1px;background:{fill};'
                     f'border:1.5px solid {stroke}"></span> {_esc(s)}</span>')
    return f'<div class="molexp-legend" style="font:12px system-ui,sans-serif;margin:4px 0">{"".join(items)}</div>'


# --------------------------------------------------------------------------------------------- visualize()

class _View:
    def __init__(self, graph, statuses):
        self.graph = _as_graph(graph)
        self.statuses = _statuses(statuses)

    @property
    def mermaid(self) -> str:
        """The Mermaid text of the graph."""
        return graph_mermaid(self.graph, self.statuses or None)

    @property
    def dot(self) -> str:
        """The Graphviz DOT text of the graph."""
        return graph_dot(self.graph, self.statuses or None)

    def svg(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        """An HTML fragment: the picture, a legend and the Mermaid source."""
        legend = ""
        if self.statuses:
            legend = _legend_html({n: self.statuses.get(n, "pending") for n in self.graph.tasks})
        return (f'<div class="molexp-visualize">{legend}{self.svg()}'
                '<details style="font:12px system-ui,sans-serif"><summary>Mermaid source</summary>'
                f'<pre class="molexp-mermaid-source">{_esc(self.mermaid)}</pre></details></div>')

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.svg`` (the picture) or ``.html`` (a complete page that opens offline). Returns the path."""
        return _save(path, self.svg, self.html, "molexp graph")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self.graph)} tasks>"


class GraphSVG(_View):
    """The graph drawn by Graphviz's ``dot`` (shown as SVG in Jupyter)."""

    def __init__(self, graph, statuses=None):
        super().__init__(graph, statuses)
        self._svg: str | None = None

    def svg(self) -> str:
        if self._svg is None:
            import graphviz

            self._svg = graphviz.Source(self.dot).pipe(format="svg", encoding="utf-8")
            # drop the XML prolog and DOCTYPE so that it embeds in HTML
            self._svg = self._svg[self._svg.find("<svg"):]
        return self._svg

    def _repr_svg_(self) -> str:
        return self.svg()


class GraphHTML(_View):
    """The graph drawn here as inline SVG (no Graphviz, no JavaScript), shown as HTML in Jupyter."""

    def svg(self) -> str:
        return graph_svg(self.graph, self.statuses or None)

    def _repr_html_(self) -> str:
        return self.html()


def graphviz_available() -> bool:
    """True when the ``graphviz`` Python package and the ``dot`` program are both installed."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def visualize(graph: Any, statuses: Mapping[str, Any] | None = None, format: str = "auto") -> _View:
    """A displayable picture of ``graph`` (a TaskGraph or Experiment), coloured by ``statuses`` when given.

    ``format="auto"``: Graphviz (``GraphSVG``, ``_repr_svg_``) when available, else ``GraphHTML`` (``_repr_html_``,
    an inline SVG drawn without any dependency). ``"graphviz"`` or ``"html"`` force one. Both have ``save(path)``
    (``.svg``/``.html``), ``.mermaid`` and ``.dot``.
    """
    if format == "auto":
        format = "graphviz" if graphviz_available() else "html"
    if format in ("graphviz", "svg"):
        if not graphviz_available():
            raise RuntimeError("format='graphviz' needs the graphviz Python package and the dot program "
                               "(pip install graphviz; apt-get install graphviz); use format='html'")
        return GraphSVG(graph, statuses)
    if format == "html":
        return GraphHTML(graph, statuses)
    raise ValueError(f"format must be 'auto', 'graphviz' or 'html', got {format!r}")


# --------------------------------------------------------------------------------------------- timeline

