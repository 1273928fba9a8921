"""The active folder's report: report.md (a row per round: labels, query, accuracy, kappa, seconds; the stopping
suggestion) and learning_curve.png (accuracy against labels), rewritten after each round."""

from __future__ import annotations

from ..outputs import files, plots
from .state import ActiveFolder

REPORT, CURVE = "report.md", "learning_curve.png"


def write_report(folder: ActiveFolder) -> None:
    rounds = folder.rounds()
    lines = ["# Active learning", "", f"{len(folder.labels())} labels so far.", "",
             "| round | labels | query | validation accuracy | kappa | train s | score s | pick s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for record in rounds:
        accuracy, kappa = record.get("validation_accuracy"), (record.get("stop") or {}).get("kappa")
        seconds = record.get("seconds") or {}
        lines.append(f"| {record['round']} | {record['labels']} | {record['query']} | "
                     f"{'' if accuracy is None else f'{accuracy:.4f}'} | {'' if kappa is None else f'{kappa:.3f}'} | "
                     + " | ".join(f"{seconds.get(part, 0):.1f}" for part in ("train", "score", "pick")) + " |")
    if rounds:
        lines += ["", f"Stopping: {(rounds[-1].get('stop') or {}).get('message', '')}."]
    files.write_text(folder.path / REPORT, "\n".join(lines) + "\n")
    points = [(r["labels"], r["validation_accuracy"]) for r in rounds if r.get("validation_accuracy") is not None]
    if points:
        figure = plots.new_figure(5, 3.2)
        axes = figure.add_subplot()
        axes.plot([n for n, _ in points], [a for _, a in points], marker="o")
        axes.set(xlabel="labels", ylabel="validation accuracy", title="learning curve")
        plots.save_figure(figure, folder.path / CURVE)
