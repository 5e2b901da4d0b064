"""Shared fixtures: a project directory with small real scripts, and the two Dask targets
(the default local scheduler, and a real ``distributed.LocalCluster`` of worker processes)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import leftovers  # noqa: E402
import taskfuncs  # noqa: E402  (importable helpers for Python tasks)

# Workers of a LocalCluster cannot import the test modules: ship their functions by value.
cloudpickle.register_pickle_by_value(taskfuncs)

# A script that reads its inputs (failing if one is missing), optionally sleeps, writes its outputs and
# appends {name, start, end, inputs} to timeline.jsonl in the working directory.
STAGE = """\
import json, os, sys, time
start = time.time()
name, inputs, outputs, sleep = {name!r}, {inputs!r}, {outputs!r}, {sleep!r}
if {dir_args!r}:
    src, dst = sys.argv[1], sys.argv[2]
    inputs = [os.path.join(src, p) for p in sorted(os.listdir(src))]
    if not inputs:
        sys.exit(f"{{name}}: nothing in {{src}}")
    outputs = [os.path.join(dst, name + ".txt")]
seen = {{}}
for p in inputs:
    with open(p) as f:
        seen[p] = f.read()
time.sleep(sleep)
for p in outputs:
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    with open(p, "w") as f:
        f.write(name + "\\n")
with open("timeline.jsonl", "a") as f:
    f.write(json.dumps({{"name": name, "start": start, "end": time.time(), "inputs": sorted(seen)}}) + "\\n")
print(name, "done")
"""


def write_stage(path: Path, name: str, inputs=(), outputs=(), sleep: float = 0.0, dir_args: bool = False) -> Path:
    """Write a recording script (see STAGE) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAGE.format(name=name, inputs=list(inputs), outputs=list(outputs), sleep=sleep,
                                 dir_args=dir_args))
    return path


def timeline(directory: Path) -> dict[str, dict]:
    """What the stage scripts recorded, by name."""
    f = directory / "timeline.jsonl"
    if not f.exists():
        return {}
    return {r["name"]: r for r in map(json.loads, f.read_text().splitlines())}


def overlapped(a, b) -> bool:
    """True when two (start, end) intervals overlap."""
    return a[0] < b[1] and b[0] < a[1]


@pytest.fixture(scope="session", autouse=True)
def dask_scratch(tmp_path_factory):
    """Dask's scratch space (workers' spill directories, locks) and molexp's core leases inside pytest's
    temporary directory, for this process and the processes tests start."""
    import dask

    from molexp.run import affinity

    path = str(tmp_path_factory.mktemp("dask-scratch"))
    os.environ["DASK_TEMPORARY_DIRECTORY"] = path
    # molexp's core leases (cpu_affinity) too, instead of /dev/shm/molexp-cores-<uid>
    os.environ["MOLEXP_CORE_LOCKS"] = str(tmp_path_factory.mktemp("core-locks"))
    affinity._DIR = Path(os.environ["MOLEXP_CORE_LOCKS"])
    with dask.config.set({"temporary-directory": path}):
        yield path


@pytest.fixture(autouse=True)
def nothing_left_behind(request, dask_scratch):
    """Fails a test that leaves a task process, a process it started, a /dev/shm entry or a temporary file."""
    before = leftovers.Snapshot.take()
    yield
    left = before.left()
    if left:
        pytest.fail(f"{request.node.nodeid} left behind: " + "; ".join(left), pytrace=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory that is also the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def local_cluster():
    """A real LocalCluster: one scheduler and two worker processes on 127.0.0.1."""
    from distributed import LocalCluster

    with leftovers.session_owned():
        cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                               dashboard_address=":0", silence_logs=40)
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def cluster_client(local_cluster):
    from distributed import Client

    client = Client(local_cluster)
    yield client
    client.close()


@pytest.fixture(params=["local", "distributed"])
def target(request):
    """Executor keyword arguments for each Dask target: {} (local threads) or {"client": ...}."""
    if request.param == "local":
        return {}
    return {"client": request.getfixturevalue("cluster_client")}


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def no_process_matching(fragment: str) -> bool:
    """True when no live process's command line contains ``fragment``."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        try:
            if fragment in " ".join(p.info["cmdline"] or []):
                return False
        except psutil.Error:
            pass
    return True


os.environ.setdefault("MOLEXP_TESTING", "1")
