"""molexp.views.report: the HTML report of a real run, parsed and opened in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask
from molexp.state.journal import read_state
from molexp.views.report import human_bytes, report_html, write_report

FAILED = "crunch <b>1</b>"
EVIL = "<script>alert('stderr')</script>"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")


# --------------------------------------------------------------------------------------------- a tiny DOM

class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


class _Builder(HTMLParser):
    VOID = {"meta", "link", "br", "hr", "img", "input", "source", "col", "area", "base", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(html_text: str) -> Node:
    b = _Builder()
    b.feed(html_text)
    b.close()
    return b.root


def task_rows(doc: Node) -> dict[str, Node]:
    rows = {}
    for tr in doc.iter("tr"):
        if "task" in tr.classes:
            rows[tr.attrs["data-task"]] = tr
    return rows


def check_report_dom(doc: Node, expected: dict[str, str]) -> None:
    """Every task listed once with its status class, badge and name as text; nothing from the journal as markup."""
    rows = task_rows(doc)
    assert set(rows) == set(expected)
    for name, tr in rows.items():
        status = expected[name]
        assert f"status-{status}" in tr.classes
        cells = list(tr.iter("td"))
        assert cells[0].text() == name and not list(cells[0].iter())   # the name is text, never elements
        badge = next(s for s in cells[1].iter("span") if "badge" in s.classes)
        assert badge.text() == status and f"status-{status}" in badge.classes
    assert not list(doc.iter("script")), "the report must not contain any script element"
    assert not [n for n in doc.iter() if n.tag in ("link", "img", "iframe") or n.attrs.get("src")]
    failed = rows[FAILED]
    assert failed.iter("td") and [c.text() for c in failed.iter("td")][6] == "exit"
    assert "command exited with code 3" in [c.text() for c in failed.iter("td")][7]
    stderr = [p.text() for p in failed.iter("pre")]
    assert any(EVIL in p for p in stderr), "the stderr tail is shown as text in a <details>"
    assert [c.text() for c in rows["report"].iter("td")][7] == f"upstream {FAILED!r} failed"


# --------------------------------------------------------------------------------------------- the run

EXPECTED = {"prepare": "completed", "simulate": "completed", FAILED: "failed", "report": "skipped",
            "answer": "completed"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run: completed shell and Python tasks, a task failing twice (retried), one skipped after it."""
    root = tmp_path_factory.mktemp("report-run")
    e = Experiment("demo", workdir=root)
    e.add_task(LocalTask("prepare", commands=["echo preparing", "sleep 0.2"]))
    e.add_task(LocalTask("simulate", commands=["sleep 0.4", "echo simulated"], deps=["prepare"]))
    e.add_task(LocalTask(FAILED, commands=[f"echo \"{EVIL}\" >&2", "exit 3"], deps=["prepare"], retries=1))
    e.add_task(LocalTask("report", commands=["true"], deps=[FAILED, "simulate"]))
    e.add_task(PythonTask("answer", func=lambda: 42))
    results = ExperimentExecutor(e, progress=False, checkpoint_dir=root / "ck", fault_tolerance="continue",
                                 retry_delay=0.1).run()
    assert {n: r.status.value for n, r in results.items()} == EXPECTED
    return e, root / "ck", results


def test_report_html_lists_every_task_escaped(run, tmp_path):
    e, ck, _ = run
    out = write_report(ck, tmp_path / "sub" / "report.html", graph=e)
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert FAILED not in text and EVIL not in text                      # escaped everywhere
    doc = parse(text)
    check_report_dom(doc, EXPECTED)
    counts = {c.attrs["data-status"]: c.iter("b").__next__().text() for c in doc.iter("div") if "count" in c.classes}
    assert counts == {"completed": "3", "failed": "1", "skipped": "1"}
    nodes = {g.attrs["data-task"]: g.classes[1] for g in doc.iter("g") if "node" in g.classes}
    assert nodes == {n: f"status-{s}" for n, s in EXPECTED.items()}      # the DAG, coloured by status
    bars = [g.attrs["data-task"] for g in doc.iter("g") if "bar" in g.classes]
    assert sorted(bars) == sorted(EXPECTED) and bars[-1] == "report"   # the timeline; the skipped task last
    failed = task_rows(doc)[FAILED]
    assert [c.text() for c in failed.iter("td")][2] == "2"              # attempts
    assert "MiB" in [c.text() for c in task_rows(doc)["prepare"].iter("td")][4]


def test_report_without_graph_says_why(run, tmp_path):
    _, ck, results = run
    text = write_report(ck / "journal.jsonl", tmp_path / "r.html").read_text()   # a file inside the dir works
    assert "cannot be drawn" in text and 'class="node' not in text
    check_report_dom(parse(text), EXPECTED)
    # report_html takes a Results as well as the journal's records
    check_report_dom(parse(report_html(results, "demo")), EXPECTED)
    assert parse(report_html(read_state(ck)["records"], "demo")).iter("table")


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nothing", tmp_path / "r.html")


def test_human_bytes():
    assert [human_bytes(n) for n in (None, 0, 1023, 1024, 33062912, 5 * 1024**4)] == \
        ["", "0 B", "1023 B", "1.0 KiB", "31.5 MiB", "5.0 TiB"]


# --------------------------------------------------------------------------------------------- real Chromium

def _chromium_run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@needs_chromium
def test_report_in_headless_chromium(run, tmp_path):
    e, ck, _ = run
    report = write_report(ck, tmp_path / "report.html", graph=e).resolve()

    started = time.monotonic()
    dumped = _chromium_run(["--dump-dom", report.as_uri()], tmp_path / "profile-dom")
    dom_seconds = time.monotonic() - started
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    doc = parse(dumped.stdout)
    check_report_dom(doc, EXPECTED)                         # what the browser built, not what we wrote
    assert [t.text() for t in doc.iter("title")][0] == "molexp report: demo"

    png = tmp_path / "report.png"
    started = time.monotonic()
    shot = _chromium_run([f"--screenshot={png}", "--window-size=1280,2000", "--hide-scrollbars", report.as_uri()],
                         tmp_path / "profile-shot")
    shot_seconds = time.monotonic() - started
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 30_000, f"screenshot is only {len(data)} bytes: a blank page?"
    print(f"\nscreenshot: {png} ({len(data)} bytes); chromium --dump-dom {dom_seconds:.1f}s, "
          f"--screenshot {shot_seconds:.1f}s")


# --------------------------------------------------------------------------------------------- docs/reports.md

def test_docs_snippets_run_as_written(project, capsys):
    from snippets import snippet

    ns: dict = {}
    for heading in ("The report from Python", "Drawing the task graph", "The timeline"):
        exec(compile(snippet("reports.md", heading), f"docs/reports.md:{heading}", "exec"), ns)
    doc = parse((project / "report.html").read_text())
    check_rows = {n: tr.classes[1] for n, tr in task_rows(doc).items()}
    assert check_rows == {"prepare": "status-completed", "analyze": "status-failed", "plot": "status-skipped"}
    assert len([g for g in doc.iter("g") if "node" in g.classes]) == 3
    assert "<svg" in (project / "graph.html").read_text()
    assert "flowchart TD" in capsys.readouterr().out
    timeline = parse((project / "timeline.svg").read_text())
    assert sorted(g.attrs["data-task"] for g in timeline.iter("g") if "bar" in g.classes) == \
        ["analyze", "plot", "prepare"]
