"""nlptransfer/plots.py: the figures of a run, valid PNGs, embedded in the model card and exported with it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from nlptransfer.hub.card import run_card
from nlptransfer.outputs.plots import (
    CONFUSION_MATRIX,
    CURVES,
    ENTITY_F1,
    plot_curves,
    plot_entity_f1,
    write_run_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [
    {"epoch": 1, "train_loss": 1.05, "train_loss_curve": [1.1, 1.08, 1.0],
     "validation": {"accuracy": 0.5, "macro_f1": 0.4, "per_class": {"a": {"f1": 0.4}}}},
    {"epoch": 2, "train_loss": 0.8, "train_loss_curve": [0.9, 0.8, 0.7],
     "validation": {"accuracy": 0.7, "macro_f1": 0.65, "per_class": {"a": {"f1": 0.6}}}},
]
PER_TYPE = {"person": {"precision": 0.6, "recall": 0.5, "f1": 0.55, "support": 40},
            "location": {"precision": 0.3, "recall": 0.2, "f1": 0.24, "support": 12},
            "product": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}}


def assert_valid_png(path: Path, min_bytes: int = 5_000) -> None:
    from PIL import Image

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path.name} is not a PNG"
    assert len(data) > min_bytes, f"{path.name} is only {len(data)} bytes"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert width >= 300 and height >= 200
        assert len(set(image.convert("L").getdata())) > 10  # drawn, not blank


def test_finished_run_has_curves_and_confusion_matrix(full_run):
    for name in (CURVES, CONFUSION_MATRIX):
        assert_valid_png(full_run / name)
    assert not (full_run / ENTITY_F1).exists()
    assert not list(full_run.glob(".*.tmp"))  # written atomically: no leftovers


def test_history_keeps_the_loss_curve(full_run):
    import json

    epochs = json.loads((full_run / "metrics.json").read_text())["epochs"]
    curve = epochs[0]["train_loss_curve"]
    assert len(curve) == 2  # two batches (max_steps=2), each its own point
    assert all(loss > 0 for loss in curve)


def test_curves_from_a_history(tmp_path):
    path = plot_curves(HISTORY, tmp_path / CURVES, metric_for_best="accuracy")
    assert path == tmp_path / CURVES
    assert_valid_png(path)
    assert plot_curves([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_a_panel_without_data_is_left_out(tmp_path):
    """A run without a validation split (few-shot, contrastive) draws the loss alone, not an empty Validation panel."""
    from PIL import Image

    unvalidated = [{key: value for key, value in entry.items() if key != "validation"} | {"validation": {}}
                   for entry in HISTORY]
    with Image.open(plot_curves(HISTORY, tmp_path / "both.png")) as both:
        assert both.size == (1000, 400)
    path = plot_curves(unvalidated, tmp_path / "loss.png")
    assert_valid_png(path)
    with Image.open(path) as alone:
        assert alone.size == (500, 400)
    no_data = [{"epoch": 1, "validation": {}}]
    assert plot_curves(no_data, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_ner_writes_f1_bars_per_entity_type(tmp_path):
    test_metrics = {"precision": 0.5, "recall": 0.4, "f1": 0.44, "accuracy": 0.9, "per_type": PER_TYPE}
    written = write_run_plots(tmp_path, HISTORY, test_metrics, ["O", "B-person", "I-person"], "f1")
    assert sorted(p.name for p in written) == [CURVES, ENTITY_F1]
    assert_valid_png(tmp_path / ENTITY_F1)
    assert plot_entity_f1({}, tmp_path / "empty.png") is None


@pytest.mark.parametrize("test_metrics", [
    {"accuracy": 0.5, "per_class": {}},  # e.g. multi-label: no confusion matrix
    {"accuracy": 0.5, "confusion_matrix": [[1, 2], [3, 4]]},  # not classes x classes
])
def test_confusion_matrix_only_when_the_metrics_hold_one(tmp_path, test_metrics):
    written = write_run_plots(tmp_path, HISTORY, test_metrics, ["a", "b", "c"], "accuracy")
    assert [p.name for p in written] == [CURVES]


def test_a_failing_figure_is_logged_and_skipped(tmp_path):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    plots_logger = logging.getLogger("nlptransfer.outputs.plots")
    plots_logger.addHandler(handler)
    try:
        written = write_run_plots(tmp_path, [{"train_loss": 1.0}], {}, ["a"])  # no "epoch": cannot draw
    finally:
        plots_logger.removeHandler(handler)
    assert written == [] and not (tmp_path / CURVES).exists()
    assert any("could not draw curves.png" in record.getMessage() for record in records)


def test_card_embeds_the_figures_that_exist(full_run, tmp_path):
    card = run_card(full_run)
    assert f"]({CURVES})" in card and f"]({CONFUSION_MATRIX})" in card and ENTITY_F1 not in card
    bare = tmp_path / "run"
    shutil.copytree(full_run, bare, ignore=shutil.ignore_patterns("*.png", "checkpoints"))
    assert ".png" not in run_card(bare) and "## Training curves" not in run_card(bare)


def test_ner_card_embeds_the_f1_bars(ner_run, tmp_path):
    run_dir = tmp_path / "ner"
    shutil.copytree(ner_run, run_dir)
    write_run_plots(run_dir, HISTORY, {"f1": 0.3, "per_type": PER_TYPE}, ["O"], "f1")
    card = run_card(run_dir)
    assert f"]({ENTITY_F1})" in card and f"]({CURVES})" in card and CONFUSION_MATRIX not in card


def test_export_copies_the_figures_beside_the_card(full_run, tmp_path):
    from nlptransfer.hub.push import export_run

    export = export_run(full_run, tmp_path / "export")
    card = (export / "README.md").read_text()
    for name in (CURVES, CONFUSION_MATRIX):
        assert f"]({name})" in card
        assert (export / name).read_bytes() == (full_run / name).read_bytes()
