"""molexp.views.visualize: Mermaid/DOT text, the dependency-free SVG view, and the run timeline."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from molexp import Attempt, Experiment, LocalTask, Results, TaskGraph, TaskResult, TaskStatus
from molexp.views.style import BAR_COLOUR
from molexp.views.visualize import (STATUS_STYLE, GraphHTML, GraphSVG, Timeline, graph_dot, graph_mermaid, graph_svg,
                                    graphviz_available, timeline, timeline_svg, visualize)

SVG = "{http://www.w3.org/2000/svg}"
NASTY = ['say "hi"', "a[1] (b) {c}", "<script>alert('x')</script>", "x & y; #1 --> z", "multi\nline|pipe`tick`"]


def diamond(names=("a", "b", "c", "d")) -> TaskGraph:
    a, b, c, d = names
    g = TaskGraph()
    g.add_task(LocalTask(a, commands=["true"]))
    g.add_task(LocalTask(b, commands=["true"]), dependencies=[a])
    g.add_task(LocalTask(c, commands=["true"]), dependencies=[a])
    g.add_task(LocalTask(d, commands=["true"]), dependencies=[b, c])
    return g


def mermaid_nodes_and_edges(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """id -> decoded label, and the edges as (label, label)."""
    labels, edges = {}, set()
    for line in text.splitlines()[1:]:
        node = re.fullmatch(r'\s+(t\d+)\["([^"]*)"\]', line)
        edge = re.fullmatch(r"\s+(t\d+) --> (t\d+)", line)
        if node:
            labels[node[1]] = re.sub(r"#(\d+);", lambda m: chr(int(m[1])), node[2])
        elif edge:
            edges.add((edge[1], edge[2]))
        else:
            assert re.fullmatch(r"\s+(classDef|class) .*", line), f"unexpected Mermaid line {line!r}"
    return labels, {(labels[a], labels[b]) for a, b in edges}


def dot_nodes_and_edges(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    unescape = lambda s: re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], s)  # noqa: E731
    labels = {m[1]: unescape(m[2]) for m in re.finditer(r'^\s+(t\d+) \[label="((?:[^"\\]|\\.)*)"', text, re.M)}
    edges = {(labels[m[1]], labels[m[2]]) for m in re.finditer(r"^\s+(t\d+) -> (t\d+);$", text, re.M)}
    return labels, edges


DIAMOND_EDGES = {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}


def test_mermaid_of_a_diamond_has_its_edges_and_status_classes():
    g = diamond()
    text = graph_mermaid(g)
    assert text.startswith("flowchart TD\n")
    labels, edges = mermaid_nodes_and_edges(text)
    assert sorted(labels.values()) == ["a", "b", "c", "d"] and edges == DIAMOND_EDGES
    assert "classDef" not in text

    coloured = graph_mermaid(g, {"a": TaskStatus.COMPLETED, "b": "failed", "c": "skipped"})
    fill, stroke, _ = STATUS_STYLE["completed"]
    assert f"classDef completed fill:{fill},stroke:{stroke}" in coloured
    ids = {v: k for k, v in mermaid_nodes_and_edges(coloured)[0].items()}
    assert f"class {ids['a']} completed" in coloured and f"class {ids['b']} failed" in coloured
    assert f"class {ids['c']} skipped" in coloured and f"class {ids['d']} pending" in coloured
    assert graph_mermaid(Experiment("e", tasks=[])) == "flowchart TD\n"


def test_dot_of_a_diamond_has_its_edges_and_colours():
    g = diamond()
    labels, edges = dot_nodes_and_edges(graph_dot(g))
    assert sorted(labels.values()) == ["a", "b", "c", "d"] and edges == DIAMOND_EDGES
    text = graph_dot(g, {"d": "failed"})
    assert re.search(r'label="d".*fillcolor="%s"' % STATUS_STYLE["failed"][0], text)
    assert text.startswith("digraph molexp {") and text.rstrip().endswith("}")


def test_names_with_quotes_brackets_and_markup_are_escaped():
    g = diamond(NASTY[:4])
    g.add_task(LocalTask(NASTY[4], commands=["true"]), dependencies=[NASTY[0]])
    expected = {(NASTY[0], NASTY[1]), (NASTY[0], NASTY[2]), (NASTY[1], NASTY[3]), (NASTY[2], NASTY[3]),
                (NASTY[0], NASTY[4])}
    one_line = lambda name: name.replace("\n", " ")  # noqa: E731  (labels are single lines)
    expected = {(one_line(a), one_line(b)) for a, b in expected}
    mermaid = graph_mermaid(g, {NASTY[2]: "failed"})
    labels, edges = mermaid_nodes_and_edges(mermaid)   # every line parses: no label broke out of its quotes
    assert edges == expected
    assert set(labels.values()) == {one_line(n) for n in NASTY}
    for ch in '<>"[]&`|':
        assert ch not in "".join(re.findall(r'\["([^"]*)"\]', mermaid))
    labels, edges = dot_nodes_and_edges(graph_dot(g))
    assert edges == expected and set(labels.values()) == {one_line(n) for n in NASTY}
    # The SVG is well-formed XML whatever the names, and carries them as text, not markup.
    root = ET.fromstring(graph_svg(g, {NASTY[2]: "failed"}))
    assert root.find(f".//{SVG}script") is None
    assert sorted(n.get("data-task") for n in root.iter(f"{SVG}g") if n.get("data-task")) == sorted(NASTY)
    assert {t.text for t in root.iter(f"{SVG}title")} >= {f"{NASTY[2]} (failed)"}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _graph_of(n: int, seed: int = 7) -> TaskGraph:
    import random

    rnd = random.Random(seed)
    g = TaskGraph()
    names = []
    for i in range(n):
        name = f"task-{i:04d} <{i}>"
        deps = rnd.sample(names[-40:], k=min(len(names[-40:]), rnd.randint(0, 3)))
        g.add_task(LocalTask(name, commands=["true"]), dependencies=deps)
        names.append(name)
    return g


def test_html_fallback_renders_300_nodes():
    g = _graph_of(300)
    statuses = {n: ("completed", "failed", "skipped", "cached")[i % 4] for i, n in enumerate(g.topological_order())}
    started = time.perf_counter()
    view = visualize(g, statuses, format="html")
    page = view._repr_html_()
    elapsed = time.perf_counter() - started
    assert isinstance(view, GraphHTML) and not hasattr(view, "_repr_svg_")
    assert elapsed < 3, f"rendering 300 nodes took {elapsed:.2f}s"
    parser = _Tags()
    parser.feed(page)
    tags = parser.tags
    assert not [t for t, _ in tags if t == "script"]
    nodes = [a for t, a in tags if t == "g" and "node" in a.get("class", "").split()]
    assert sorted(a["data-task"] for a in nodes) == sorted(g.tasks)
    assert {a["data-task"]: a["class"].split()[1] for a in nodes} == {n: f"status-{s}" for n, s in statuses.items()}
    n_edges = sum(len(t.deps) for t in g)
    assert len([a for t, a in tags if t == "path" and a.get("class") == "edge"]) == n_edges
    rects = [a for t, a in tags if t == "rect" and a.get("rx") == "6"]
    assert {a["fill"] for a in rects} == {STATUS_STYLE[s][0] for s in ("completed", "failed", "skipped", "cached")}
    svg = next(a for t, a in tags if t == "svg")
    assert float(svg["width"]) < 3000 and "max-width:100%" in svg["style"]   # wide layers wrap; it scales down
    assert "flowchart TD" in page                                               # the Mermaid source is embedded
    ET.fromstring(view.svg())                                                   # well-formed standalone SVG


def test_1000_nodes_stay_fast_and_bounded():
    g = _graph_of(1000)
    started = time.perf_counter()
    svg = graph_svg(g)
    assert time.perf_counter() - started < 5
    root = ET.fromstring(svg)
    assert len([n for n in root.iter(f"{SVG}g") if n.get("data-task")]) == 1000
    assert float(root.get("width")) < 3000


def test_save_writes_svg_and_html(tmp_path):
    view = visualize(diamond(), {"a": "completed"}, format="html")
    svg = view.save(tmp_path / "g.svg")
    assert ET.parse(svg).getroot().tag == f"{SVG}svg"
    page = view.save(tmp_path / "g.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")
    with pytest.raises(ValueError, match="svg or .html"):
        view.save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="format"):
        visualize(diamond(), format="png")


def test_auto_format_follows_graphviz_availability():
    view = visualize(diamond())
    assert isinstance(view, GraphSVG if graphviz_available() else GraphHTML)


@pytest.mark.skipif(not graphviz_available(), reason="the graphviz package or its dot program is not installed")
def test_graphviz_view_is_svg(tmp_path):
    view = visualize(diamond(NASTY[:4]), {NASTY[0]: "completed"}, format="graphviz")
    svg = view._repr_svg_()
    root = ET.fromstring(svg)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert set(NASTY[:4]) <= texts
    assert view.save(tmp_path / "g.svg").read_text() == svg


# --------------------------------------------------------------------------------------------- timeline

T0 = 1_700_000_000.0


def _results() -> Results:
    return Results({
        "late": TaskResult("late", TaskStatus.COMPLETED, start=T0 + 2, end=T0 + 4, attempts=1,
                           attempt_log=[Attempt(1, T0 + 2, T0 + 4)]),
        "flaky <b>": TaskResult("flaky <b>", TaskStatus.FAILED, start=T0, end=T0 + 3, attempts=2,
                                failure="exit", error="command exited with code 1",
                                attempt_log=[Attempt(1, T0, T0 + 1, "exit", "code 1"),
                                             Attempt(2, T0 + 2, T0 + 3, "exit", "code 1")]),
        "first": TaskResult("first", TaskStatus.COMPLETED, start=T0, end=T0 + 1, attempts=1),
        "never": TaskResult("never", TaskStatus.SKIPPED, reason="upstream 'flaky <b>' failed"),
    }, wall_time=4.0)


def hue(colour: str) -> str:
    """'red', 'green', 'blue' or 'grey': which channel of #rrggbb clearly dominates."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    if max(r, g, b) - min(r, g, b) < 24:
        return "grey"
    return max((r, "red"), (g, "green"), (b, "blue"))[1]


def test_status_colours_mean_what_they_say():
    expected = {"completed": "green", "failed": "red", "skipped": "grey", "cached": "blue"}
    assert {s: hue(BAR_COLOUR[s]) for s in expected} == expected
    assert {s: hue(STATUS_STYLE[s][0]) for s in expected} == expected     # node fills
    assert {s: hue(STATUS_STYLE[s][1]) for s in expected} == expected     # node borders
    assert hue(STATUS_STYLE["pending"][0]) == "grey"                      # neutral


def _bars(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if "bar" in (g.get("class") or "").split()]


def test_timeline_has_one_bar_per_task_in_its_status_colour():
    svg = timeline_svg(_results())
    bars = _bars(svg)
    assert [b.get("data-task") for b in bars] == ["first", "flaky <b>", "late", "never"]   # by start; unrun last
    status = {b.get("data-task"): b.get("class").split()[1] for b in bars}
    assert status == {"first": "status-completed", "flaky <b>": "status-failed", "late": "status-completed",
                      "never": "status-skipped"}
    colour_of = {"status-completed": "green", "status-failed": "red", "status-skipped": "grey"}
    for b in bars:
        fills = [r.get("fill") for r in b.iter(f"{SVG}rect") if r.get("fill", "").startswith("#")]
        assert BAR_COLOUR[status[b.get("data-task")].removeprefix("status-")] in fills
        assert {hue(f) for f in fills} == {colour_of[status[b.get("data-task")]]}
    late = next(b for b in bars if b.get("data-task") == "late")
    assert (late.get("data-start"), late.get("data-end")) == ("2.000", "4.000")   # seconds from the run start
    main = late.find(f"{SVG}rect")
    first_main = bars[0].find(f"{SVG}rect")
    # 'late' spans half the run from its middle: its bar is twice as wide as 'first''s and starts at 'first''s end + 1s
    assert float(main.get("width")) == pytest.approx(2 * float(first_main.get("width")), rel=0.01)
    # the failed task shows two attempts: the first hatched, the last solid red, separated by a white tick
    flaky = bars[1]
    attempts = [r for r in flaky.iter(f"{SVG}rect") if r.get("class") == "attempt"]
    assert [r.get("fill") for r in attempts] == ["url(#molexp-hatch)", BAR_COLOUR["failed"]]
    assert [ln.get("stroke") for ln in flaky.iter(f"{SVG}line")] == ["#ffffff"]
    assert "<b>" not in svg.replace("&lt;b&gt;", "")


def test_timeline_reads_journal_records_the_same_way():
    results = _results()
    records = {n: {"status": r.status.value, "result": r.to_record(), "fingerprint": "", "time": 0.0}
               for n, r in results.items()}
    assert timeline_svg(records) == timeline_svg(results)
    assert timeline_svg({"experiment": "x", "records": records}) == timeline_svg(results)
    assert timeline_svg({n: r.to_record() for n, r in results.items()}) == timeline_svg(results)


def test_timeline_of_nothing_and_of_cached_tasks():
    assert _bars(timeline_svg({})) == []
    old = TaskResult("old", TaskStatus.CACHED, start=T0 - 86400, end=T0 - 86000)   # timed in an earlier run
    new = TaskResult("new", TaskStatus.COMPLETED, start=T0, end=T0 + 1)
    bars = _bars(timeline_svg({"old": old, "new": new}))
    assert [b.get("data-task") for b in bars] == ["new", "old"]
    assert bars[0].get("data-end") == "1.000"      # the cached task's old times do not stretch the axis


def test_timeline_object_shows_and_saves(tmp_path):
    view = timeline(_results())
    assert isinstance(view, Timeline) and view._repr_svg_() == str(view) == timeline_svg(_results())
    assert repr(view) == "<Timeline 4 tasks>"
    assert ET.parse(view.save(tmp_path / "t.svg")).getroot().tag == f"{SVG}svg"
    assert view.save(tmp_path / "t.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        view.save(tmp_path / "t.pdf")
