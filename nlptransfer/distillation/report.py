"""Teacher and student side by side: test metrics on the teacher's test split, parameters, size on disk and CPU
prediction throughput (the same texts, the same batch size, each model as `nlptransfer.predict` serves it).

Written to the log, `report.md` and `distill/comparison.json` of the student's run folder, under its lock.
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

from .. import models, tasks
from ..outputs import files
from ..outputs.run_folder import RunFolder
from .settings import DistillOptions
from .teachers import Teacher

logger = logging.getLogger("nlptransfer")


def served_models(predictor) -> list:
    """The torch models a predictor runs (an ensemble: every member's)."""
    members = getattr(predictor, "members", None)
    return [model for member in members for model in served_models(member)] if members else [predictor.pipe.model]


def on_cpu(predictor):
    """The predictor (an ensemble: every member) moved to the CPU, where the comparison measures throughput."""
    import torch

    for member in getattr(predictor, "members", None) or [predictor]:
        if getattr(member, "members", None):
            on_cpu(member)
        elif member.pipe.device.type != "cpu":
            member.pipe.model.to("cpu")
            member.pipe.device = torch.device("cpu")
    return predictor


def disk_bytes(run: Path) -> int:
    """The run's saved model: model/ (an adapter-only run: adapter/)."""
    return files.folder_bytes(run / "model") or files.folder_bytes(run / "adapter")


def throughput(predictors: list, texts: list[str], batch_size: int) -> float | None:
    """Texts per second of predicting `texts` with every predictor in turn (several teachers: all of them), after a
    warm-up batch; None without texts."""
    if not texts:
        return None
    for predictor in predictors:
        predictor.predict(texts[:batch_size], batch_size=batch_size)
    started = time.perf_counter()
    for predictor in predictors:
        predictor.predict(texts, batch_size=batch_size)
    return len(texts) / max(time.perf_counter() - started, 1e-9)


def measure(label: str, predictors: list, runs: list[Path], texts: list[str], batch_size: int) -> dict:
    return {"model": label, "parameters": sum(models.count_parameters(m)[1] for p in predictors
                                              for m in served_models(p)),
            "disk_bytes": sum(disk_bytes(run) for run in runs),
            "texts_per_second": throughput(predictors, texts, batch_size)}


def compare(teachers: list[Teacher], results, options: DistillOptions) -> dict:
    """Measure teacher(s) and student, log the comparison, write report.md and distill/comparison.json."""
    import torch

    from ..predictor import load_model

    out, cfg = Path(results.output_dir), results.config
    task = tasks.get(cfg.task)
    texts = [row["text"] if "text" in row else " ".join(row["words"])
             for row in results.predictions[:options.benchmark_texts]]
    teacher = measure(" + ".join(str(t.path) for t in teachers), [on_cpu(load_model(t.path)) for t in teachers],
                      [run for t in teachers for run in t.runs], texts, options.batch_size)
    student = measure(str(out), [on_cpu(load_model(out))], [out], texts, options.batch_size)
    distilled = results.extra["distilled_from"]
    teacher["test"], student["test"] = distilled["teacher_test"], results.test_metrics
    metric = task.headline
    comparison = {"metric": metric, "teacher": teacher, "student": student, "benchmark_texts": len(texts),
                  "batch_size": options.batch_size, "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
                  "kept": ratio(student["test"].get(metric), teacher["test"].get(metric)),
                  "speedup": ratio(student["texts_per_second"], teacher["texts_per_second"])}
    for line in summary_lines(comparison):
        logger.info("distillation: %s", line)
    with RunFolder(out) as folder:
        folder.lock()
        files.write_json(out / "distill" / "comparison.json", comparison)
        files.write_text(out / "report.md", "\n".join(report_lines(comparison, distilled)))
    return comparison


def ratio(value, reference) -> float | None:
    return value / reference if isinstance(value, (int, float)) and reference else None


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary_lines(comparison: dict) -> list[str]:
    metric, teacher, student = comparison["metric"], comparison["teacher"], comparison["student"]
    kept, speed = comparison["kept"], comparison["speedup"]
    lines = [f"{name}: test {metric} {row['test'].get(metric, float('nan')):.4f}, {row['parameters']:,} parameters, "
             f"{row['disk_bytes'] / 1e6:.1f} MB, " + (f"{row['texts_per_second']:.1f} texts/s"
                                                       if row["texts_per_second"] else "throughput not measured")
             for name, row in (("teacher", teacher), ("student", student))]
    lines.append(f"the student keeps {kept:.1%} of the teacher's test {metric}" if kept is not None else
                 "the teacher's test metric is 0: no ratio")
    if speed is not None:
        lines.append(f"it predicts {speed:.2f}x as fast on the CPU ({comparison['cpu']}, "
                     f"{comparison['torch_threads']} threads, {comparison['benchmark_texts']} test texts, batch size "
                     f"{comparison['batch_size']})")
    return lines


def report_lines(comparison: dict, distilled: dict) -> list[str]:
    teacher, student = comparison["teacher"], comparison["student"]
    keys = [key for key in teacher["test"] if key in student["test"]]

    def cells(row: dict) -> str:
        speed = f"{row['texts_per_second']:.1f}" if row["texts_per_second"] else "-"
        return (" | ".join(f"{row['test'][key]:.4f}" for key in keys)
                + f" | {row['parameters']:,} | {row['disk_bytes'] / 1e6:.1f} | {speed} |")

    return ["# Distillation", "",
            f"Teacher{'s (probabilities averaged)' if len(distilled['teachers']) > 1 else ''}: "
            + ", ".join(f"`{t}`" for t in distilled["teachers"]) + f". Student: {distilled['student']}.",
            f"Soft targets at temperature {distilled['temperature']:g}, weight alpha {distilled['alpha']:g} (hard "
            f"labels {1 - distilled['alpha']:g}), over {distilled['labeled_texts']:,} labeled and "
            f"{distilled['unlabeled_texts']:,} unlabeled texts.", "",
            "| model | " + " | ".join(f"test {key}" for key in keys) + " | parameters | size on disk (MB) | texts/s |",
            "|" + " --- |" * (len(keys) + 4),
            f"| teacher | {cells(teacher)}", f"| **student** | {cells(student)}", "",
            *[f"- {line}" for line in summary_lines(comparison)[2:]],
            f"- Scored on the teacher's test split; throughput measured on the first {comparison['benchmark_texts']} "
            f"test texts, batch size {comparison['batch_size']}, on {comparison['cpu']} with "
            f"{comparison['torch_threads']} torch threads.", ""]
