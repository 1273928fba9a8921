"""notebooks/quickstart.ipynb runs top to bottom (nbclient), offline, on the tiny model and the reviews."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def parameters(model: str, train_file: Path, output_dir: Path) -> str:
    return "\n".join([
        f"MODEL = {model!r}",
        "DATA_NAME = None",
        f"TRAIN_FILE = {str(train_file)!r}",
        "TRAIN_SAMPLES = 40",
        "EPOCHS = 1",
        f"OUTPUT_DIR = {str(output_dir)!r}",
        'TEXTS = ["a great movie", "a terrible book"]',
    ])


def test_committed_notebook_is_clean_and_starts_with_its_parameters():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_runs_top_to_bottom(tiny_model_dir, reviews_csv, tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    output_dir = tmp_path / "run"
    notebook.cells[1].source = parameters(tiny_model_dir, reviews_csv, output_dir)
    assert "parameters" in notebook.cells[1].metadata["tags"]
    # the kernel inherits this environment: offline (conftest.py), one thread, this checkout first
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["data"]["examples"]["train"] <= 40
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "test accuracy" in text and "trained in" in text
    predicted = [output for output in outputs if "text/html" in output.get("data", {})][-1]
    assert "a terrible book" in predicted["data"]["text/html"]  # the predictions table
    pictures = sum("image/png" in output.get("data", {}) for output in outputs)
    assert pictures == sum((output_dir / name).exists() for name in ("curves.png", "confusion_matrix.png"))
