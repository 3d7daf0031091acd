"""The example notebook runs top to bottom (quick mode: fewer trials and draws, the same calls)."""
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="the notebook extra: pip install -e '.[notebook]'")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_top_to_bottom_on_real_data(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_BENCH_DATA", str(data_root))
    monkeypatch.setenv("FEWSHOT_BENCH_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("FEWSHOT_BENCH_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("data", {}).get("text/plain", o.get("text", "")) for o in outputs)
    assert "Result(pixel_1nn on omniglot20" in text and "Comparison(" in text and "exact McNemar p" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    assert (tmp_path / "store").is_dir()  # fb.run stored its record where the CLI would look
