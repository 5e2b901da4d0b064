"""notebooks/conformer_sweep.ipynb runs top to bottom (a copy, in a temporary directory) without a cell error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "conformer_sweep.ipynb"


def test_conformer_sweep_notebook_runs(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install nbformat)")
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    # The kernel imports this checkout's molexp, whatever is installed.
    root = str(NOTEBOOK.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    nbformat.write(nb, copy)

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "27 completed, 0 cached, 0 failed, 0 skipped" in text
    assert "hexane" in text and "<E>" in text
    rich = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert sum("image/svg+xml" in o.data or "text/html" in o.data for o in rich) >= 3  # 2 graphs + timeline
