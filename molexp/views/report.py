"""A run report: ONE self-contained HTML file from a checkpoint directory (``molexp report``).

``write_report(checkpoint_dir, path, graph=None)`` reads the journal (``read_state``, no lock, works during a run)
and writes a page that opens offline: inline CSS and SVG, no scripts, no fonts or anything from the network.
It holds a header (experiment, counts by status, the span of the recorded run), the task graph coloured by status
(only when ``graph`` is given: the journal does not record dependencies), the timeline and a table with one row
per task (``<tr class="task status-<status>" data-task="<name>">``) with the logs' tails in ``<details>``.
Every value from the journal is HTML-escaped.
"""

from __future__ import annotations

import datetime
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .style import BAR_COLOUR, STATUS_STYLE, _css_name
from .visualize import _legend_html, graph_svg, timeline_svg

__all__ = ["write_report", "report_html", "human_bytes"]

_STATUS_ORDER = ("completed", "cached", "failed", "skipped", "running", "retrying", "pending")


_WS_REFS = str.maketrans({"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _attr(value: Any) -> str:
    """Escaped for an attribute value; newlines and tabs as character references, so they survive parsing."""
    return _esc(value).translate(_WS_REFS)


def human_bytes(n: int | float | None) -> str:
    """``33062912`` -> ``"31.5 MiB"``; ``None`` -> ``""``."""
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1000:.2f} ms"
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {sec:02d}s"


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _last_line(text: str | None, limit: int = 200) -> str:
    if not text:
        return ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1].strip()
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _normalise(records: Mapping[str, Any]) -> dict[str, dict]:
    """{name: result dict (``TaskResult.to_record()`` shape)} from ``read_state()["records"]``, a ``Results``,
    ``{name: TaskResult}`` or ``{name: to_record() dict}``."""
    out: dict[str, dict] = {}
    for name, item in records.items():
        if isinstance(item, Mapping):
            result = dict(item["result"]) if isinstance(item.get("result"), Mapping) else dict(item)
            result["status"] = str(item.get("status") or result.get("status") or "pending")
        elif hasattr(item, "to_record"):
            result = item.to_record()
        else:
            raise TypeError(f"task {name!r}: expected a journal record, a result dict or a TaskResult, "
                            f"got {type(item).__name__}")
        result.setdefault("name", name)
        out[name] = result
    return out


def _order(results: dict[str, dict]) -> list[str]:
    """By start time; tasks that never started last, in their given order."""
    started = sorted((n for n, r in results.items() if r.get("start") is not None),
                     key=lambda n: (results[n]["start"], n))
    return started + [n for n, r in results.items() if r.get("start") is None]


_CSS = """
:root { --fg:#1f2328; --muted:#5f6368; --line:#d8dbe0; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 28px 40px; color: var(--fg); background: var(--bg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 16px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); font-size: 13px; margin: 2px 0; }
.meta code, td code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.counts { display: flex; flex-wrap: wrap; gap: 8px; margin: 14px 0 4px; }
.count { border: 1px solid var(--line); border-left-width: 5px; border-radius: 6px; padding: 6px 12px;
         min-width: 96px; background: var(--soft); }
.count b { display: block; font-size: 20px; line-height: 1.1; }
.count span { color: var(--muted); font-size: 12px; }
.note { color: var(--muted); background: var(--soft); border: 1px dashed var(--line); border-radius: 6px;
        padding: 8px 12px; font-size: 13px; }
.figure { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
table.tasks { border-collapse: collapse; width: 100%; font-size: 13px; }
table.tasks th { position: sticky; top: 0; background: #eef1f4; text-align: left; font-weight: 600;
                 padding: 7px 8px; border-bottom: 2px solid var(--line); white-space: nowrap; }
table.tasks td { padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.tasks tr.task > td:first-child { border-left: 4px solid transparent; font-weight: 600; word-break: break-word;
                                       max-width: 260px; }
table.tasks tr.task:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.err { max-width: 360px; word-break: break-word; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         border: 1px solid; white-space: nowrap; }
details { margin: 1px 0; }
details summary { cursor: pointer; color: #0b57d0; font-size: 12px; white-space: nowrap; }
details pre { margin: 4px 0 6px; padding: 8px; max-height: 260px; max-width: 560px; overflow: auto;
              white-space: pre-wrap; word-break: break-word; background: #0f1419; color: #e6e6e6;
              border-radius: 6px; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.dim { color: var(--muted); }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"""


def _status_css() -> str:
    rules = []
    for s, (fill, stroke, text) in STATUS_STYLE.items():
        rules.append(f".badge.status-{s} {{ background:{fill}; border-color:{stroke}; color:{text}; }}")
        rules.append(f"tr.task.status-{s} > td:first-child {{ border-left-color:{BAR_COLOUR[s]}; }}")
        rules.append(f".count.status-{s} {{ border-left-color:{BAR_COLOUR[s]}; }}")
    return "\n".join(rules)


def _details(summary: str, body: str | None) -> str:
    if not body:
        return ""
    return f"<details><summary>{_esc(summary)}</summary><pre>{_esc(body)}</pre></details>"


def _output_cell(r: dict) -> str:
    parts = []
    for key in ("stdout", "stderr"):
        text = r.get(key) or ""
        if text.strip():
            n = len(text.splitlines())
            parts.append(_details(f"{key} (last {n} line{'s' if n != 1 else ''})", text))
    error = r.get("error") or ""
    if "\n" in error.strip():
        parts.append(_details("error (full)", error))
    info = []
    if r.get("command"):
        info.append(f"command: {r['command']}")
    if r.get("returncodes"):
        info.append(f"return codes: {r['returncodes']}")
    if r.get("worker"):
        info.append(f"worker: {r['worker']}")
    log = r.get("attempt_log") or []
    if len(log) > 1:
        for a in log:
            a_dur = (a.get("end") or 0) - (a.get("start") or 0)
            info.append(f"attempt {a.get('number')}: {_seconds(a_dur)}"
                        + (f", {a.get('failure')}: {_last_line(a.get('error'), 120)}" if a.get("failure") else ""))
    for key in ("stdout_path", "stderr_path"):
        if r.get(key):
            info.append(f"{key.replace('_path', '')} log: {r[key]}")
    if info:
        parts.append(_details("details", "\n".join(info)))
    return "".join(parts) or '<span class="dim">\u2013</span>'


def _row(index: int, name: str, r: dict) -> str:
    status = _css_name(r.get("status") or "pending")
    if r.get("failure"):
        message = _last_line(r.get("error"))
    else:
        message = r.get("reason") or ""
    cpu = r.get("cpu_time")
    return (f'<tr class="task status-{status}" id="task-{index}" data-task="{_attr(name)}" data-status="{status}">'
            f"<td class=\"name\">{_esc(name)}</td>"
            f'<td><span class="badge status-{status}">{_esc(r.get("status") or "pending")}</span></td>'
            f'<td class="num">{_esc(r.get("attempts") or "")}</td>'
            f'<td class="num">{_esc(_seconds(r.get("duration", _duration(r))))}</td>'
            f'<td class="num">{_esc(human_bytes(r.get("peak_memory")))}</td>'
            f'<td class="num">{_esc(_seconds(cpu) if cpu is not None else "")}</td>'
            f'<td>{_esc(r.get("failure") or "")}</td>'
            f'<td class="err">{_esc(message)}</td>'
            f"<td>{_output_cell(r)}</td></tr>")


def _duration(r: dict) -> float | None:
    if r.get("start") is None or r.get("end") is None:
        return None
    return r["end"] - r["start"]


def report_html(records: Mapping[str, Any], experiment: str, graph: Any = None, *,
                directory: str | os.PathLike | None = None, title: str | None = None,
                holder: Mapping[str, Any] | None = None) -> str:
    """The report page as a string (see the module docstring).

    ``records`` is ``read_state(dir)["records"]`` (or a ``Results``, ``{name: TaskResult}``); ``graph`` a
    ``TaskGraph``/``Experiment`` to draw the DAG coloured by status (tasks it has that were not recorded are shown
    as pending). ``holder``: ``read_state``'s lock info, to say that a run is still going.
    """
    results = _normalise(records)
    order = _order(results)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    starts = [r["start"] for r in results.values() if r.get("start") is not None and r["status"] != "cached"]
    ends = [r["end"] for r in results.values() if r.get("end") is not None and r["status"] != "cached"]
    first, last = (min(starts), max(ends)) if starts and ends else (None, None)
    page_title = title or f"molexp report: {experiment}"

    head = [f"<h1>{_esc(page_title)}</h1>",
            f'<p class="meta">experiment <b>{_esc(experiment)}</b> &middot; {len(results)} tasks recorded'
            + (f" &middot; checkpoint <code>{_esc(directory)}</code>" if directory is not None else "") + "</p>"]
    if first is not None:
        head.append(f'<p class="meta">ran from {_esc(_when(first))} to {_esc(_when(last))} '
                    f"&middot; wall span <b>{_esc(_seconds(last - first))}</b></p>")
    if holder and holder.get("alive"):
        head.append(f'<p class="note">A run is still writing to this checkpoint (pid {_esc(holder.get("pid"))} on '
                    f'{_esc(holder.get("host"))}): this report is a snapshot.</p>')
    known = [s for s in _STATUS_ORDER if s in counts] + sorted(s for s in counts if s not in _STATUS_ORDER)
    cards = "".join(f'<div class="count status-{_css_name(s)}" data-status="{_attr(s)}"><b>{counts[s]}</b>'
                    f"<span>{_esc(s)}</span></div>" for s in known)
    head.append(f'<div class="counts">{cards}</div>')

    body = ["<h2>Task graph</h2>"]
    if graph is not None:
        from .visualize import _as_graph

        g = _as_graph(graph)
        statuses = {n: results[n]["status"] if n in results else "pending" for n in g.tasks}
        body.append(_legend_html(statuses))
        body.append(f'<div class="figure" id="graph">{graph_svg(g, statuses)}</div>')
        missing = [n for n in results if n not in g.tasks]
        if missing:
            body.append(f'<p class="note">{len(missing)} recorded task(s) are not in the given graph: '
                        f"{_esc(', '.join(missing[:20]))}{' ...' if len(missing) > 20 else ''}</p>")
    else:
        body.append('<p class="note">The checkpoint records outcomes, not dependencies, so the graph cannot be '
                    "drawn from it. Pass the experiment (<code>write_report(dir, path, graph=experiment)</code>, "
                    "or <code>molexp report DIR --file experiment.yaml</code>) to include it.</p>")
    body.append("<h2>Timeline</h2>")
    if starts:
        body.append(f'<div class="figure" id="timeline">{timeline_svg({n: results[n] for n in order}, width=1180)}</div>')
    else:
        body.append('<p class="note">No task of this run has start and end times.</p>')
    body.append("<h2>Tasks</h2>")
    header = ("Task", "Status", "Attempts", "Duration", "Peak memory", "CPU time", "Failure", "Error / reason",
              "Output")
    rows = "".join(_row(i, n, results[n]) for i, n in enumerate(order))
    body.append('<table class="tasks"><thead><tr>' + "".join(f"<th>{h}</th>" for h in header)
                + f"</tr></thead><tbody>{rows}</tbody></table>")
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    body.append(f"<footer>Generated by molexp on {_esc(generated)}. Times are local. Output shows the last lines "
                "kept in the journal; the full logs are in the files named under details.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(page_title)}</title><style>{_CSS}{_status_css()}</style></head>\n<body>\n"
            + "\n".join(head + body) + "\n</body></html>\n")


def write_report(checkpoint_dir: str | os.PathLike, path: str | os.PathLike, *, graph: Any = None,
                 title: str | None = None) -> Path:
    """Write the HTML report of the run journaled in ``checkpoint_dir`` to ``path``; returns the path.

    ``graph`` (a ``TaskGraph`` or ``Experiment``) adds the task graph coloured by status. ``FileNotFoundError``
    if the directory holds no checkpoint, ``CheckpointError`` if it is corrupt. Takes no lock.
    """
    from ..state.journal import find_checkpoint_dir, read_state

    state = read_state(find_checkpoint_dir(checkpoint_dir).resolve())
    text = report_html(state["records"], state["experiment"] or "?", graph, directory=state["directory"],
                       title=title, holder=state.get("holder"))
    out = Path(path)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
