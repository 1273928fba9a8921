"""The figures a run leaves in its folder: learning curves, the test confusion matrix, NER F1 per type.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch, so a notebook's
own plotting is untouched) and written atomically like every other run file. matplotlib is
imported only when a figure is drawn: `import nlptransfer` stays fast.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from pathlib import Path

from .files import write_bytes

logger = logging.getLogger(__name__)

CURVES = "curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
ENTITY_F1 = "entity_f1.png"
PLOT_FILES = (CURVES, CONFUSION_MATRIX, ENTITY_F1)
"""Every figure a run may write, in the order a model card shows them."""
MAX_ANNOTATED_CLASSES = 20
"""Confusion matrices with more classes than this are drawn without numbers in the cells."""


def new_figure(width: float, height: float):
    """A matplotlib Figure with its own Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: Path) -> Path:
    """Render `figure` to PNG and write it to `path` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The finite numeric entries of a metrics dict (not per-class tables or matrices)."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def plot_curves(history: list[dict], path: Path, metric_for_best: str | None = None) -> Path | None:
    """Training loss (within and per epoch) and the validation metrics per epoch, side by side.

    `history` is `FitResult.history`: per epoch `train_loss`, `validation` (metrics) and, when the
    loop recorded it, `train_loss_curve` (the epoch's batch losses in equal-sized groups). A panel
    without data (no validation split: a few-shot run) is left out; returns None when no panel has any.
    """
    if not history:
        return None
    validation = [scalar_metrics(entry.get("validation") or {}) for entry in history]
    names = [name for name in validation[0] if all(name in row for row in validation)
             and all(0 <= row[name] <= 1 for row in validation)]
    has_loss = any(entry.get("train_loss_curve") or math.isfinite(entry.get("train_loss", math.nan))
                   for entry in history)
    panels = [(draw, present) for draw, present in ((draw_loss, has_loss), (draw_validation, bool(names))) if present]
    if not panels:
        return None
    figure = new_figure(5 * len(panels), 4)
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    epochs = [entry["epoch"] for entry in history]
    for axes, (draw, _) in zip(axes_list, panels):
        draw(axes, history, epochs, validation, names, metric_for_best)
        axes.grid(alpha=0.3)
        axes.set_xlim(0, max(epochs) + 0.05)
    return save_figure(figure, path)


def draw_loss(axes, history: list[dict], epochs: list[int], *_) -> None:
    for entry in history:
        curve = entry.get("train_loss_curve") or []
        if curve:
            xs = [entry["epoch"] - 1 + (i + 0.5) / len(curve) for i in range(len(curve))]
            axes.plot(xs, curve, color="tab:blue", alpha=0.45, linewidth=1,
                      label="batches" if entry is history[0] else None)
    axes.plot(epochs, [entry.get("train_loss", math.nan) for entry in history], "o-", color="tab:blue",
              label="epoch mean")
    axes.set(title="Training loss", xlabel="epoch", ylabel="loss")
    axes.legend()


def draw_validation(axes, history: list[dict], epochs: list[int], validation: list[dict], names: list[str],
                    metric_for_best: str | None) -> None:
    for name in names:
        style = "o-" if name == metric_for_best else "o--"
        axes.plot(epochs, [row[name] for row in validation], style, label=name)
    if metric_for_best in names:
        best = max(range(len(validation)), key=lambda i: validation[i][metric_for_best])
        axes.axvline(epochs[best], color="grey", linestyle=":", label=f"best epoch ({epochs[best]})")
    axes.set(title="Validation", xlabel="epoch", ylim=(0, 1.02))
    axes.legend()


def plot_confusion_matrix(matrix: list[list[int]], label_names: list[str], path: Path,
                          title: str = "Test confusion matrix") -> Path:
    """The confusion matrix normalized per true class (each row sums to 1), with class names and counts."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(max(4.0, 0.6 * len(label_names) + 2.5), 20.0)
    figure = new_figure(size + 1, size)
    axes = figure.subplots()
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    ticks = range(len(label_names))
    axes.set_xticks(ticks, label_names, rotation=45, ha="right")
    axes.set_yticks(ticks, label_names)
    axes.set(xlabel="predicted", ylabel="true", title=f"{title} (normalized per true class)")
    if len(label_names) <= MAX_ANNOTATED_CLASSES:
        for (row, column), rate in np.ndenumerate(rates):
            axes.text(column, row, f"{rate:.2f}\n({int(counts[row, column])})", ha="center", va="center",
                      fontsize=8, color="white" if rate > 0.5 else "black")
    return save_figure(figure, path)


def plot_entity_f1(per_type: dict[str, dict], path: Path, overall_f1: float | None = None) -> Path | None:
    """Horizontal bars of the test F1 of each entity type (support in the labels), best on top."""
    if not per_type:
        return None
    rows = sorted(per_type.items(), key=lambda item: item[1].get("f1", 0.0))
    figure = new_figure(7, max(2.5, 0.4 * len(rows) + 1.2))
    axes = figure.subplots()
    labels = [f"{name} ({row.get('support', row.get('number', '?'))})" for name, row in rows]
    scores = [float(row.get("f1", 0.0)) for _, row in rows]
    bars = axes.barh(labels, scores, color="tab:green")
    axes.bar_label(bars, labels=[f"{score:.2f}" for score in scores], padding=3, fontsize=8)
    if overall_f1 is not None:
        axes.axvline(overall_f1, color="grey", linestyle="--", label=f"all entities {overall_f1:.2f}")
        axes.legend(loc="lower right")
    axes.set(xlim=(0, 1.1), xlabel="F1 (entity level, test)", title="Test F1 per entity type (support)")
    axes.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)


def write_run_plots(output_dir: Path, history: list[dict], test_metrics: dict, label_names: list[str],
                    metric_for_best: str | None = None) -> list[Path]:
    """Every figure the run's results allow; a figure that fails is logged and skipped, never fatal.

    curves.png always (when there is an epoch); confusion_matrix.png when the test metrics hold a
    classes x classes `confusion_matrix`; entity_f1.png when they hold `per_type` (NER).
    """
    output_dir = Path(output_dir)
    drawings: list[tuple[str, Callable[[], Path | None]]] = [
        (CURVES, lambda: plot_curves(history, output_dir / CURVES, metric_for_best))]
    matrix = test_metrics.get("confusion_matrix")
    if matrix and len(matrix) == len(label_names) and all(len(row) == len(label_names) for row in matrix):
        drawings.append((CONFUSION_MATRIX, lambda: plot_confusion_matrix(
            test_metrics["confusion_matrix"], label_names, output_dir / CONFUSION_MATRIX)))
    if test_metrics.get("per_type"):
        drawings.append((ENTITY_F1, lambda: plot_entity_f1(test_metrics["per_type"], output_dir / ENTITY_F1,
                                                           test_metrics.get("f1"))))
    written = []
    for name, draw in drawings:
        try:
            path = draw()
        except Exception as e:  # a figure is a convenience: never lose a trained run to it
            logger.warning("could not draw %s: %s", name, e)
            continue
        if path is not None:
            written.append(path)
    return written
