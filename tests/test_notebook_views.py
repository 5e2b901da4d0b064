"""What a notebook shows: HTML tables of an experiment and its results, records and a DataFrame."""

from __future__ import annotations

import json

import pytest

from molexp import Experiment, ExperimentExecutor, LocalTask, PythonTask


def _value():
    return {"energy": -1.5}


def run_small(project):
    e = Experiment("views", workdir=project)
    e.add_task(LocalTask("make <b>", commands=["echo made"]))
    e.add_task(PythonTask("value", _value, deps=["make <b>"]))
    e.add_task(LocalTask("bad", commands=["exit 2"]))
    return e, ExperimentExecutor(e, progress=False, fault_tolerance="continue").run()


def test_html_tables_escape_and_show_status(project):
    e, results = run_small(project)
    page = e._repr_html_()
    assert "make &lt;b&gt;" in page and "<b>views" not in page and "echo made" in page
    html = results._repr_html_()
    assert html.count("<tr>") == 4 and "make &lt;b&gt;" in html and "exit: command exited with code 2" in html
    assert "color:#cf222e" in html  # the failed row's status is red


def test_records_are_plain_data(project):
    _, results = run_small(project)
    records = results.to_records()
    assert [r["name"] for r in records] == ["make <b>", "value", "bad"]
    assert records[1]["value"] == {"energy": -1.5} and records[2]["status"] == "failed"
    json.dumps([{k: v for k, v in r.items() if k != "value"} for r in records])  # JSON-ready


def test_dataframe(project):
    pd = pytest.importorskip("pandas", reason="pandas is optional: to_dataframe() needs it")
    _, results = run_small(project)
    df = results.to_dataframe()
    assert isinstance(df, pd.DataFrame) and df.loc["bad", "failure"] == "exit"
    assert df.loc["make <b>", "status"] == "completed"
