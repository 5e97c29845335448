"""The tutorials run top to bottom (in their fast mode; by hand they run in full)."""

from __future__ import annotations

from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
#: Notebooks CI executes; the others read ../shared or take minutes and are run by hand (see README).
QUICK = ["01_quickstart.ipynb", "02_benchmark.ipynb", "03_large_data.ipynb", "04_diagnostics.ipynb"]


@pytest.mark.parametrize("name", QUICK)
def test_tutorial_runs(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SCDEEPIMPUTE_TUTORIAL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
