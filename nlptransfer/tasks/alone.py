"""`multitask.compare_alone`: each task of a multi-task run trained alone at the same budget, scored beside it.

After the multi-task run is tested, each task trains as a run of its own in `alone/<task>/` (a plain run folder:
its model, predictions, metrics and card) with the multi-task run's options: strategy and its section, epochs, the
learning rate the multi-task run used, seed, batch size, and that task's own data section. Its test headline metric
is set beside the multi-task one: in the log, in metrics.json (`alone`) and on the card. The run skeleton is handed
in (`train`): a task does not import the pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("nlptransfer")

FOLDER = "alone"
"""The run folder's entry holding each task's single-task run."""


def alone_config(cfg, sub_cfg, name: str, output_dir: Path, lr: float):
    """A task's own run: the multi-task run's options with this task's task and data, at the learning rate the
    multi-task run trained with, into alone/<name>/ (replaced when a resumed run gets there again)."""
    return dataclasses.replace(
        sub_cfg, multitask=type(cfg.multitask)(), output_dir=str(output_dir / FOLDER / name), overwrite=True,
        resume=None, resume_force=False, log_with="none", push=type(cfg.push)(),
        train=dataclasses.replace(sub_cfg.train, lr=lr))


def train_each_alone(cfg, data, metrics: dict, output_dir: Path, train: Callable[[Any], Any], lr: float,
                     headlines: dict[str, str]) -> dict:
    """Train every task alone (`train(cfg)` is the run skeleton) and return metrics.json's `alone` entry: per task
    its headline metric, the multi-task and the alone score, their difference, its folder and its test metrics."""
    found = {}
    for name, sub_cfg in data.configs.items():
        logger.info("multitask.compare_alone: training task %s alone (%s)", name, output_dir / FOLDER / name)
        results = train(alone_config(cfg, sub_cfg, name, output_dir, lr))
        metric = headlines[name]
        multi, alone = metrics[name][metric], results.test_metrics[metric]
        found[name] = {"metric": metric, "multitask": multi, "alone": alone, "difference": multi - alone,
                       "run": f"{FOLDER}/{name}", "test": results.test_metrics}
    logger.info(report(found))
    return found


def report(alone: dict) -> str:
    """Each task's test headline metric, multi-task beside alone (the log's table)."""
    width = max(len("task"), *(len(name) for name in alone))
    lines = ["each task trained alone with the same options (multitask.compare_alone), test:",
             f"{'task':<{width}}  {'metric':<10} {'multi-task':>10} {'alone':>8} {'difference':>10}"]
    lines += [f"{name:<{width}}  {entry['metric']:<10} {entry['multitask']:>10.4f} {entry['alone']:>8.4f} "
              f"{entry['difference']:>+10.4f}" for name, entry in alone.items()]
    return "\n".join(lines)


def card_line(entry: dict | None) -> str | None:
    """A task's line on the card: its score trained alone beside this run's."""
    if not entry:
        return None
    return (f"Trained alone with the same options (`multitask.compare_alone`, run `{entry['run']}`): test "
            f"{entry['metric']} {entry['alone']:.4f}, against {entry['multitask']:.4f} in this multi-task run "
            f"({entry['difference']:+.4f}).")
