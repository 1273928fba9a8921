"""What a finished sequence leaves: report.md (each method's accuracy matrix and the methods side by side),
accuracy-matrices.png (a heat-map per method), predictions.jsonl (every method's final predictions on every stage's
test split) and metrics.json, last: a folder with it is a finished sequence.
"""

from __future__ import annotations

from pathlib import Path

from ..outputs import files, plots
from . import scores
from .learner import StageData
from .settings import ContinualConfig

HEATMAP = "accuracy-matrices.png"

REFERENCE = ("Forward transfer is measured against the starting model (the checkpoint with its new, seeded heads; with "
             "extend=, the extended run): the accuracy on a stage just before learning it minus the starting model's. "
             "A class-incremental stage's classes are unknown before it is learned (its accuracy is 0 until then), so "
             "there it is about 0 by construction.")


def method_metrics(record: dict, stages: list[StageData]) -> dict:
    """A method's matrix, the starting model's row and the matrix's summaries (joint: one row, its average only)."""
    rows, before = record["rows"], record["before"]
    if len(rows) < len(stages):  # joint: all stages at once, one row
        summary = {"average_accuracy": scores.average_accuracy(rows)}
    else:
        summary = scores.summary(rows, before)
    return {"matrix": rows, "before": before, **summary, "seconds": record["seconds"]}


def final_accuracy(record: dict, stages: list[StageData]) -> float:
    """Accuracy over every stage's test examples together, at the end."""
    right = sum(p == gold for stage, predicted in zip(stages, record["predictions"])
                for p, gold in zip(predicted, stage.test.labels))
    return right / sum(len(stage.test) for stage in stages)


def write(out: Path, cfg: ContinualConfig, stages: list[StageData], state: dict) -> None:
    """predictions.jsonl, the heat-maps, report.md, then metrics.json."""
    methods = {method: method_metrics(state["methods"][method], stages) for method in cfg.methods}
    files.write_jsonl(out / "predictions.jsonl", [
        {"method": method, "stage": stage.name, "text": text, "label": gold, "predicted": predicted}
        for method in cfg.methods for stage, predictions in zip(stages, state["methods"][method]["predictions"])
        for text, gold, predicted in zip(stage.test.texts, stage.test.labels, predictions)])
    heatmaps(methods, [stage.name for stage in stages], out / HEATMAP)
    first = state["methods"][cfg.methods[0]]
    result = {"scenario": cfg.scenario, "stages": [stage.name for stage in stages], "methods": methods,
              "test": {"accuracy": final_accuracy(first, stages), "method": cfg.methods[0]},
              "data": {"label_names": list(dict.fromkeys(label for s in stages for label in s.label_names)),
                       "examples": {s.name: {"train": len(s.train), "test": len(s.test)} for s in stages}}}
    if cfg.extend:
        result["extend"] = {method: extend_scores(values["matrix"]) for method, values in methods.items()}
    lines = report_lines(cfg, stages, methods, result)
    files.write_text(out / "report.md", "\n".join(lines))
    files.write_text(out / "README.md", "\n".join(card_lines(cfg, out) + lines))
    files.write_json(out / "metrics.json", result)


def card_lines(cfg: ContinualConfig, out: Path) -> list[str]:
    """The model card's head: what the folder holds and how to use it; the report follows."""
    where = "model/" if len(cfg.methods) == 1 else "<method>/model/"
    return ["---", "library_name: nlptransfer", "tags:", "- nlptransfer", "- continual-learning", "---", "",
            f"Learned over stages ({cfg.scenario}) from `{cfg.extend or cfg.model}`. The final model of each method is "
            f"in `{where}` (a plain transformers model, or one per stage in `model/<stage>/` where heads differ).", "",
            "```bash", f"python -m nlptransfer.predict model={out if len(cfg.methods) == 1 else out / cfg.methods[0]} "
            "text=\"...\"", "```", ""]


def extend_scores(matrix: list[list[float]]) -> dict:
    """extend=: the old classes' test accuracy before and after, and the new stages' after."""
    return {"old_classes_before": matrix[0][0], "old_classes_after": matrix[-1][0],
            "old_classes_change": matrix[-1][0] - matrix[0][0], "new_classes_after": matrix[-1][1:]}


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def matrix_lines(values: dict, names: list[str]) -> list[str]:
    lines = ["| after \\ test on | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1),
             "| (start) | " + " | ".join(number(v) for v in values["before"]) + " |"]
    labels = names if len(values["matrix"]) == len(names) else ["all stages"]
    lines += [f"| {label} | " + " | ".join(number(v) for v in row) + " |"
              for label, row in zip(labels, values["matrix"])]
    return lines


def report_lines(cfg: ContinualConfig, stages: list[StageData], methods: dict, result: dict) -> list[str]:
    names = [stage.name for stage in stages]
    lines = [f"# Continual learning: {len(stages)} stages, {cfg.scenario}", "",
             "Stages: " + "; ".join(f"`{s.name}` ({', '.join(s.label_names)}: {len(s.train)} train, {len(s.test)} "
                                    "test)" for s in stages) + ".", "",
             "| method | average accuracy | backward transfer | average forgetting | forward transfer | seconds |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {method} | {number(v['average_accuracy'])} | {number(v.get('backward_transfer'))} | "
              f"{number(v.get('average_forgetting'))} | {number(v.get('forward_transfer'))} | {v['seconds']:.0f} |"
              for method, v in methods.items()]
    lines += ["", "Average accuracy: mean test accuracy over every stage after the last. Backward transfer: mean over "
              "the stages but the last of (accuracy at the end - accuracy just after learning it). Forgetting of a "
              "stage: its best accuracy before the end minus its accuracy at the end. " + REFERENCE, "",
              f"![accuracy matrices]({HEATMAP})", ""]
    for method, values in methods.items():
        lines += [f"## {method}", "", *matrix_lines(values, names), ""]
        if values.get("forgetting"):
            lines += ["Forgetting per stage: " + ", ".join(f"{n} {number(f)}" for n, f in
                                                          zip(names, values["forgetting"])), ""]
    for method, extended in result.get("extend", {}).items():
        lines += [f"extend ({method}): old classes' test accuracy {extended['old_classes_before']:.4f} before, "
                  f"{extended['old_classes_after']:.4f} after ({extended['old_classes_change']:+.4f}); new "
                  f"classes' {', '.join(number(v) for v in extended['new_classes_after'])}.", ""]
    return lines


def heatmaps(methods: dict, names: list[str], path: Path) -> None:
    """One heat-map per method, side by side: rows after each stage, columns the stages' test splits."""
    import numpy as np

    size = 1.0 + 0.7 * len(names)
    figure = plots.new_figure(size * len(methods) + 1, size + 0.8)
    for axes, (method, values) in zip(np.atleast_1d(figure.subplots(1, len(methods))), methods.items()):
        matrix = np.asarray(values["matrix"], dtype=float)
        axes.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
        rows = names if len(matrix) == len(names) else ["all"]
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes.set_yticks(range(len(rows)), rows)
        axes.set(xlabel="test on", ylabel="after", title=f"{method}: {values['average_accuracy']:.3f}")
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="black" if value > 0.5 else "white")
    plots.save_figure(figure, path)
