"""Files as first-class: declared inputs and outputs, inferred dependencies, content-aware resume with
reasons, plan(), targets and force, outputs that cannot look finished when they are not, pipefail, ${var:q}.

The tutorial-shaped workflow is Snakemake's (map | view -> sort -> index per sample, a gather, a plot),
with small Python scripts as the tools; each tool appends its task's name to runs.log, so a test sees
exactly what ran."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from molexp import (Experiment, ExperimentExecutor, FileDeclarationError, LocalTask, PythonTask, TaskStatus)

PY = sys.executable

TOOL = textwrap.dedent("""\
    import os, sys
    name, inputs = sys.argv[1], sys.argv[2:]
    with open(os.path.join(os.environ["MOLEXP_WORKDIR"], "runs.log"), "a") as f:
        f.write(os.environ["MOLEXP_TASK"] + "\\n")
    data = "".join(open(p).read() for p in inputs) if inputs else sys.stdin.read()
    if os.environ.get("FAIL_TOOL") == name:
        sys.exit(3)
    sys.stdout.write(name + ":" + data.upper())
""")

SAMPLES = ("A", "B")


def tutorial(root: Path) -> Experiment:
    """Two samples x (map | view -> sort -> index), call (gather), plot."""
    tool = root / "tool.py"
    if not tool.exists():
        tool.write_text(TOOL)
        (root / "data").mkdir()
        for s in SAMPLES:
            (root / "data" / f"{s}.fastq").write_text(f"reads of {s}\n")
    t = f"{PY} tool.py"
    exp = Experiment("tutorial", workdir=root)
    for s in SAMPLES:
        exp.add_task(LocalTask(f"map-{s}", commands=[f"{t} map $reads | {t} view > $bam"],
                               inputs={"reads": f"data/{s}.fastq"}, outputs={"bam": f"mapped/{s}.bam"}))
        exp.add_task(LocalTask(f"sort-{s}", commands=[f"{t} sort $inputs > $outputs"],
                               inputs=[f"mapped/{s}.bam"], outputs=[f"sorted/{s}.bam"]))
        exp.add_task(LocalTask(f"index-{s}", commands=[f"{t} index $inputs > $outputs"],
                               inputs=[f"sorted/{s}.bam"], outputs=[f"sorted/{s}.bam.bai"]))
    exp.add_task(LocalTask("call", commands=[f"{t} call $bams > $vcf"],
                           inputs={"bams": [f"sorted/{s}.bam" for s in SAMPLES],
                                   "index": [f"sorted/{s}.bam.bai" for s in SAMPLES]},
                           outputs={"vcf": "calls/all.vcf"}))
    exp.add_task(LocalTask("plot", commands=[f"{t} plot $inputs > $outputs"], inputs=["calls/all.vcf"],
                           outputs=["plots/quals.svg"]))
    return exp


def ran(root: Path) -> list[str]:
    """Task names the tools recorded since the last call (and forget them)."""
    log = root / "runs.log"
    if not log.exists():
        return []
    names = list(dict.fromkeys(log.read_text().split()))   # a pipe's two tools log one task twice
    log.unlink()
    return names


def statuses(results) -> dict[str, str]:
    return {n: r.status.value for n, r in results.items()}


def test_tutorial_workflow_reruns_exactly_what_changed(project, target):
    exp = tutorial(project)
    ex = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True, **target)
    every = list(exp.tasks)

    first = ex.run()
    assert first.ok, first.table()
    # dependencies were inferred from the files alone: every tool ran after the one that made its input
    assert ran(project)[-2:] == ["call", "plot"]
    assert (project / "plots/quals.svg").read_text().startswith("plot:CALL:")
    assert set(first["call"].inputs) == {str(project / f"sorted/{s}{e}") for s in SAMPLES for e in (".bam", ".bam.bai")}
    assert list(first["plot"].outputs) == [str(project / "plots/quals.svg")]

    again = ex.run()                                  # nothing changed: nothing runs
    assert set(statuses(again).values()) == {"cached"} and ran(project) == []
    assert all(r.reason == "up to date" for r in again.values())

    os.utime(project / "data/A.fastq")                # touch: new mtime, same content
    assert set(statuses(ex.run()).values()) == {"cached"} and ran(project) == []

    (project / "data/A.fastq").write_text("other reads of A\n")
    plan = ex.plan()                                  # says what the next run runs, and runs nothing
    assert ran(project) == []
    downstream_of_a = ["map-A", "sort-A", "index-A", "call", "plot"]
    assert plan.to_run == downstream_of_a and plan.cached == ["map-B", "sort-B", "index-B"]
    assert plan["map-A"].reason == "input data/A.fastq changed"
    assert plan["sort-A"].reason == "upstream 'map-A' runs again"
    after = ex.run()
    assert sorted(ran(project)) == sorted(downstream_of_a)
    assert [n for n in every if after[n].status is TaskStatus.COMPLETED] == downstream_of_a
    assert after["map-A"].reason == "input data/A.fastq changed"
    assert (project / "mapped/A.bam").read_text() == "view:MAP:OTHER READS OF A\n"

    (project / "sorted/B.bam").unlink()               # a deleted intermediate output is made again
    assert ex.plan()["sort-B"].reason == "output sorted/B.bam is missing"
    res = ex.run()
    assert sorted(ran(project)) == sorted(["sort-B", "index-B", "call", "plot"])
    assert res["sort-B"].reason == "output sorted/B.bam is missing" and (project / "sorted/B.bam").exists()

    (project / "plots/quals.svg").unlink()            # a deleted final output too
    res = ex.run()
    assert ran(project) == ["plot"] and res["plot"].reason == "output plots/quals.svg is missing"

    (project / "calls/all.vcf").write_text("edited by hand\n")   # an output changed since it was written
    assert ex.plan().to_run == ["call", "plot"]
    assert ex.plan()["call"].reason == "output calls/all.vcf changed since it was written"

    forced = ex.plan(force=["sort-A"])
    assert forced["sort-A"].reason == "forced" and forced.to_run == ["sort-A", "index-A", "call", "plot"]


def test_targets_from_clean_run_only_what_the_target_needs(project, target):
    exp = tutorial(project)
    ex = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True, **target)
    plan = ex.plan(targets=["index-A"])
    assert plan.to_run == ["map-A", "sort-A", "index-A"] and len(plan.skipped) == 5
    res = ex.run(targets=["index-A"])
    assert list(res) == ["map-A", "sort-A", "index-A"] and res.ok
    assert sorted(ran(project)) == ["index-A", "map-A", "sort-A"]
    assert not (project / "calls").exists()
    # a declared output path is a target too; what is up to date is reused
    res = ex.run(targets=["calls/all.vcf"])
    assert statuses(res) == {"map-A": "cached", "sort-A": "cached", "index-A": "cached", "map-B": "completed",
                             "sort-B": "completed", "index-B": "completed", "call": "completed"}


def test_plan_changes_nothing(project):
    exp = tutorial(project)
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    plan = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True).plan()
    assert plan.to_run == list(exp.tasks) and {e.reason for e in plan.values()} == {"not run before"}
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before   # no checkpoint, no log dir
    assert "8 to run, 0 cached, 0 skipped" in plan.table()
    plain = ExperimentExecutor(exp, progress=False).plan()
    assert {e.reason for e in plain.values()} == {"no checkpoint: every task runs"}


def test_a_failed_attempt_leaves_no_output(project, target):
    exp = Experiment("fail", workdir=project)
    exp.add_task(LocalTask("half", commands=["echo partial > $outputs", "exit 1"], outputs=["out/half.txt"]))
    exp.add_task(LocalTask("pipe", commands=["false | cat > $outputs"], outputs=["out/pipe.txt"]))
    exp.add_task(LocalTask("lazy", commands=["true"], outputs=["out/lazy.txt"]))
    res = ExperimentExecutor(exp, progress=False, fault_tolerance="continue", **target).run()
    assert statuses(res) == {"half": "failed", "pipe": "failed", "lazy": "failed"}
    assert res["half"].failure == "exit" and not (project / "out/half.txt").exists()
    assert res["pipe"].failure == "exit" and not (project / "out/pipe.txt").exists()   # pipefail
    assert res["lazy"].failure == "missing_output" and "out/lazy.txt" in res["lazy"].error
    assert sorted(os.listdir(project / "out")) == []   # parent directories were made before the task ran


def test_options_keep_failed_outputs_and_pipefail_off(project):
    exp = Experiment("opts", workdir=project)
    exp.add_task(LocalTask("half", commands=["echo partial > $outputs", "exit 1"], outputs=["half.txt"]))
    exp.add_task(LocalTask("pipe", commands=["false | cat > $outputs"], outputs=["pipe.txt"]))
    res = ExperimentExecutor(exp, progress=False, fault_tolerance="continue", keep_failed_outputs=True,
                             pipefail=False).run()
    assert statuses(res) == {"half": "failed", "pipe": "completed"}
    assert (project / "half.txt").read_text() == "partial\n"


def test_an_old_output_is_removed_before_the_task_runs(project):
    (project / "stale.txt").write_text("from last week\n")
    exp = Experiment("stale", workdir=project)
    exp.add_task(LocalTask("forgets", commands=["true"], outputs=["stale.txt"]))
    res = ExperimentExecutor(exp, progress=False).run()
    assert res["forgets"].failure == "missing_output" and not (project / "stale.txt").exists()


def test_bad_file_declarations_are_refused_before_anything_runs(project):
    exp = Experiment("bad", workdir=project)
    exp.add_task(LocalTask("early", commands=["touch ran.txt"]))
    exp.add_task(LocalTask("reader", commands=["cat $inputs"], inputs=["data/missing.txt"]))
    with pytest.raises(FileDeclarationError, match=r"task 'reader': input 'data/missing.txt' does not exist "
                                                   r"and no task declares it as an output"):
        ExperimentExecutor(exp, progress=False).run()
    exp = Experiment("dup", workdir=project)
    exp.add_task(LocalTask("early", commands=["touch ran.txt"]))
    exp.add_task(LocalTask("one", commands=["echo 1 > $outputs"], outputs=["result.txt"]))
    exp.add_task(LocalTask("two", commands=["echo 2 > $outputs"], outputs=["./result.txt"]))
    with pytest.raises(FileDeclarationError, match=r"tasks 'one' and 'two' both declare the output 'result.txt'"):
        ExperimentExecutor(exp, progress=False).run()
    exp = Experiment("loop", workdir=project)
    exp.add_task(LocalTask("inplace", commands=["true"], inputs=["ran.txt"], outputs=["ran.txt"]))
    (project / "ran.txt").write_text("")
    with pytest.raises(FileDeclarationError, match="is both an input and an output"):
        ExperimentExecutor(exp, progress=False).plan()
    (project / "ran.txt").unlink()
    exp = Experiment("nested", workdir=project)
    exp.add_task(LocalTask("tree", commands=["mkdir -p $outputs"], outputs={"dir": "results"}))
    exp.add_task(LocalTask("leaf", commands=["true"], outputs=["other.txt", "results/sub/leaf.txt"]))
    with pytest.raises(FileDeclarationError, match=r"task 'leaf' declares the output 'results/sub/leaf.txt', "
                                                   r"inside the output 'results' of task 'tree'"):
        ExperimentExecutor(exp, progress=False).plan()
    exp = Experiment("home", workdir=project)
    exp.add_task(LocalTask("sub", commands=["true"], cwd="a/b", outputs=["x.txt", ".."]))
    with pytest.raises(FileDeclarationError, match=r"task 'sub': output '\.\.' is its working directory or holds it"):
        ExperimentExecutor(exp, progress=False).plan()
    exp = Experiment("glob", workdir=project)
    exp.add_task(LocalTask("gather", commands=["cat $inputs"], inputs=["parts/*.txt"]))
    with pytest.raises(FileDeclarationError, match=r"input pattern 'parts/\*.txt' matches no file"):
        ExperimentExecutor(exp, progress=False).run()
    assert not (project / "ran.txt").exists() and not (project / ".molexp").exists()


def test_declarations_are_checked_where_they_are_written():
    from molexp import TaskDefinitionError

    for bad, match in [({"outputs": ["a/*.txt"]}, "cannot be a glob"), ({"inputs": [3]}, "must be a string"),
                       ({"inputs": {"in puts": "a"}}, "must be an identifier"),
                       ({"outputs": {"inputs": "a"}}, "reserved"), ({"inputs": ["a\0b"]}, "without NUL"),
                       ({"inputs": {"reads": "a"}, "kwargs": {"reads": 1}}, "clash")]:
        with pytest.raises(TaskDefinitionError, match=match):
            LocalTask("t", commands=["true"], **bad)


def test_python_tasks_get_inputs_and_outputs_when_they_ask(project):
    (project / "raw.txt").write_text("3\n4\n")
    seen = {}

    def total(inputs, outputs):
        seen.update(inputs=inputs, outputs=outputs)
        value = sum(int(x) for x in Path(inputs["numbers"]).read_text().split())
        Path(outputs[0]).write_text(f"{value}\n")
        return value

    def no_files():
        return "fine"

    exp = Experiment("py", workdir=project)
    exp.add_task(PythonTask("total", total, inputs={"numbers": "raw.txt", "more": ["raw.txt"]},
                            outputs=["sums/total.txt"]))
    exp.add_task(PythonTask("after", no_files, inputs=["sums/total.txt"]))
    res = ExperimentExecutor(exp, progress=False).run()
    assert res["total"].value == 7 and res["after"].ok and res["after"].value == "fine"
    assert seen == {"inputs": {"numbers": str(project / "raw.txt"), "more": [str(project / "raw.txt")]},
                    "outputs": [str(project / "sums/total.txt")]}
    assert exp.graph["after"].deps == []   # the inferred dependency is the run's, not written into the task


def test_a_changed_element_of_a_large_array_argument_reruns_the_task(project):
    np = pytest.importorskip("numpy")
    calls = []

    def summed(data):
        calls.append(1)
        return float(data.sum())

    def make(data):
        exp = Experiment("arrays", workdir=project)
        exp.add_task(PythonTask("summed", summed, kwargs={"data": data}))
        return ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True)

    data = np.arange(10_000, dtype=float)
    assert make(data).run()["summed"].value == data.sum()
    assert make(data.copy()).run()["summed"].status is TaskStatus.CACHED and len(calls) == 1
    changed = data.copy()
    changed[5_000] = -1.0   # repr() of the array elides the middle: only a content hash sees this
    res = make(changed).run()["summed"]
    assert res.status is TaskStatus.COMPLETED and res.value == changed.sum() and res.reason == "arguments changed"


def test_arguments_that_cannot_be_hashed_are_never_reused(project):
    def locked(lock):
        return "ran"

    exp = Experiment("unhashable", workdir=project)
    exp.add_task(PythonTask("locked", locked, kwargs={"lock": threading.Lock()}))
    ex = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True)
    assert ex.run()["locked"].ok
    again = ex.run()["locked"]
    assert again.status is TaskStatus.COMPLETED and "cannot be hashed by content" in again.reason


def test_quoted_placeholders_keep_values_out_of_the_shell(project):
    exp = Experiment("quote", workdir=project)
    exp.add_task(LocalTask("say", commands=["echo ${a:q} > a.txt", "echo ${b:q} > b.txt", "echo ${HOME:q} > h.txt"],
                           kwargs={"a": "x; touch pwned", "b": "$(touch pwned) `touch pwned`"}))
    res = ExperimentExecutor(exp, progress=False).run()
    assert res.ok and not (project / "pwned").exists()
    assert (project / "a.txt").read_text() == "x; touch pwned\n"
    assert (project / "b.txt").read_text() == "$(touch pwned) `touch pwned`\n"
    assert (project / "h.txt").read_text() == os.environ["HOME"] + "\n"


def test_paths_with_spaces_and_globs_expand_quoted(project):
    (project / "in dir").mkdir()
    for name in ("b 2.txt", "a 1.txt"):
        (project / "in dir" / name).write_text(name + "\n")
    exp = Experiment("spaces", workdir=project)
    exp.add_task(LocalTask("gather", commands=["cat $inputs > $outputs"], inputs=["in dir/*.txt"],
                           outputs=["all out.txt"]))
    res = ExperimentExecutor(exp, progress=False).run()
    assert res.ok, res.table()
    assert (project / "all out.txt").read_text() == "a 1.txt\nb 2.txt\n"


def test_yaml_sweep_with_a_gather_step(project, target):
    """A task swept over samples and a gather of every sample's output, in YAML: the gather's glob input
    matches the copies' declared outputs (its dependencies), and ``deps: [name[*]]`` names every copy."""
    (project / "data").mkdir()
    for s in ("A", "B", "C"):
        (project / "data" / f"{s}.txt").write_text(f"{s}\n")
    (project / "exp.yaml").write_text(textwrap.dedent("""\
        name: swept
        sweep:
          params: {sample: [A, B, C]}
        tasks:
          - name: map
            commands: ["tr A-Z a-z < $reads > $bam"]
            inputs: {reads: "data/${sample}.txt"}
            outputs: {bam: "mapped/${sample}.bam"}
          - name: call
            commands: ["cat $inputs > $outputs"]
            inputs: ["mapped/*.bam"]
            outputs: ["calls/all.vcf"]
          - name: report
            deps: ["map[*]"]
            commands: ["ls mapped > report.txt"]
    """))
    exp = Experiment.from_yaml(project / "exp.yaml")
    assert len(exp) == 5 and exp.graph["report"].deps == [f"map[sample={s}]" for s in "ABC"]
    res = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True, **target).run()
    assert res.ok, res.table()
    assert (project / "calls/all.vcf").read_text() == "a\nb\nc\n"
    assert set(res["call"].inputs) == {str(project / f"mapped/{s}.bam") for s in "ABC"}
    (project / "data/B.txt").write_text("bee\n")
    again = ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True, **target).run()
    assert statuses(again) == {"map[sample=A]": "cached", "map[sample=B]": "completed", "map[sample=C]": "cached",
                               "call": "completed", "report": "completed"}
    assert again["map[sample=B]"].reason == "input data/B.txt changed"


def test_hash_cache_reads_a_file_once_per_change(tmp_path):
    from molexp.state.filehash import HashCache

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    cache = HashCache()
    first = cache.get(str(big))
    assert cache.bytes_read == 3 << 20
    cache.save(tmp_path)
    again = HashCache.load(tmp_path)
    assert again.get(str(big)) == first and again.bytes_read == 0
    os.utime(big, (time.time() + 5, time.time() + 5))          # touch: read once more, same hash
    assert again.get(str(big)) == first and again.bytes_read == 3 << 20
    data = bytearray(big.read_bytes())
    data[1 << 20] ^= 1
    big.write_bytes(bytes(data))
    assert again.get(str(big)) != first
    assert again.get(str(tmp_path / "nope")) is None


def test_hash_cache_file_and_older_formats(tmp_path):
    """The cache file reads back the same entries; the JSON files of older versions (a list per field and
    directory, a list per path) are still read and replaced by the current file; a malformed entry, a damaged
    file or one written by another Python version only makes files be read again (never a wrong hash)."""
    import json

    from molexp.state import filehash
    from molexp.state.filehash import FILENAME, HashCache

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for i in range(3):
            (tmp_path / sub / f"{i}.txt").write_text(f"{sub}{i}")
    cache = HashCache()
    hashes = {str(p): cache.get(str(p)) for p in sorted(tmp_path.glob("*/*.txt"))}
    ck = tmp_path / "ck"
    ck.mkdir()
    cache.save(ck)
    again = HashCache.load(ck)
    assert again.entries == cache.entries and again.loaded
    assert {p: again.get(p) for p in hashes} == hashes and again.bytes_read == 0

    def reads(load) -> int:
        c = load()
        assert {p: c.get(p) for p in hashes} == hashes
        return c.bytes_read

    (ck / FILENAME).unlink()
    columns = {}
    for p, (size, mtime, ctime, ino, h) in cache.entries.items():
        d, _, name = p.rpartition("/")
        for col, v in zip(columns.setdefault(d, [[], [], [], [], [], []]), (name, h, size, mtime, ctime, ino)):
            col.append(v)
    legacy = ck / "file_hashes.json"
    legacy.write_text(json.dumps({"molexp_file_hashes": 2, "dirs": columns}))
    assert reads(lambda: HashCache.load(ck)) == 0
    legacy.write_text(json.dumps({"molexp_file_hashes": 1, "files": {p: list(e) for p, e in cache.entries.items()}}))
    assert reads(lambda: HashCache.load(ck)) == 0
    old = HashCache.load(ck)
    assert not old.loaded                  # not in the current file yet: the run saves it ...
    old.save(ck)
    assert not legacy.exists() and HashCache.load(ck).entries == cache.entries   # ... and drops the JSON

    columns[str(tmp_path / "a")][1][0] = 7                           # a hash that is not text
    columns[str(tmp_path / "b")][2].pop()                            # columns of different lengths
    (ck / FILENAME).unlink()
    legacy.write_text(json.dumps({"molexp_file_hashes": 2, "dirs": columns}))
    assert reads(lambda: HashCache.load(ck)) == len("a0") + 3 * len("b0")   # a/0.txt and all of b/ again

    legacy.unlink()
    cache.save(ck)
    blob = (ck / FILENAME).read_bytes()
    (ck / FILENAME).write_bytes(blob[: len(blob) // 2])                       # cut short
    assert reads(lambda: HashCache.load(ck)) == 6 * len("a0")
    other = blob.replace(filehash._HEADER, b"molexp-file-hashes 3 cpython-399\n")   # another Python's
    (ck / FILENAME).write_bytes(other)
    assert reads(lambda: HashCache.load(ck)) == 6 * len("a0")


def test_a_run_of_some_targets_keeps_the_hashes_of_the_other_files(project):
    """The hash cache is saved when the run learned something; it keeps the entries of this run's files and of
    every other file that still exists, so a run of one target does not make the next full resume read the
    other tasks' files again; the entry of a file that is gone is dropped."""
    from molexp.state.filehash import HashCache

    exp = Experiment("keep-hashes", workdir=project)
    for name in ("a", "b"):
        (project / f"{name}.txt").write_text(f"input {name}\n")
        exp.add_task(LocalTask(name, commands=["cp $inputs $outputs"], inputs=[f"{name}.txt"],
                               outputs=[f"{name}.out"]))

    def run(**kw):
        return ExperimentExecutor(exp, progress=False, checkpoint_dir="ck", auto_resume=True).run(**kw)

    def cached_files():
        return sorted(os.path.basename(p) for p in HashCache.load(project / "ck").entries)

    assert statuses(run()) == {"a": "completed", "b": "completed"}
    assert cached_files() == ["a.out", "a.txt", "b.out", "b.txt"]
    (project / "b.out").unlink()
    assert statuses(run(targets=["a"], force=["a"])) == {"a": "completed"}
    assert cached_files() == ["a.out", "a.txt", "b.txt"]   # b.txt kept; b.out is gone
    again = run()
    assert statuses(again) == {"a": "cached", "b": "completed"}
    assert again["b"].reason == "output b.out is missing"


def test_files_survive_the_yaml_round_trip(project):
    exp = Experiment("yaml-files", workdir=project)
    exp.add_task(LocalTask("map", commands=["cat $reads > $bam"], inputs={"reads": ["a.txt", "b.txt"]},
                           outputs={"bam": "out.bam"}))
    exp.add_task(LocalTask("plot", commands=["cat $inputs"], inputs=["out.bam"], outputs=["p.svg"]))
    back = Experiment.from_yaml(exp.to_yaml())
    assert back.graph["map"].inputs == {"reads": ["a.txt", "b.txt"]} and back.graph["map"].outputs == {"bam": "out.bam"}
    assert back.graph["plot"].inputs == ["out.bam"] and back == Experiment.from_dict(exp.to_dict())
    from molexp.state.files import with_file_deps

    assert with_file_deps(exp).layers() == [["map"], ["plot"]]   # the picture shows the implied order
