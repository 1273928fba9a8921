"""Where a run's encoder came from when `model=` names an earlier run (sequential, intermediate-task transfer).

`model=runs/A` (or `model=runs/A/model`) fine-tunes run A's encoder under a new head for this run's task and
labels (`catalog.run_model` finds the folder). The run's log, metrics.json (`encoder_from`) and model card then say
which run that was: its folder name, recipe, task, strategy, data and test metric, and the checkpoint it started
from, by hub id where known, so the card's `base_model` names the model the Hub knows (through a chain of runs too).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import catalog, tasks
from ..config import RunConfig, load_yaml
from ..errors import ModelError, NlpTransferError
from .card import ENCODER_FROM, plain_data_name, source_run_text


def source_run(model: str) -> Path | None:
    """The finished run folder whose encoder `model` names (`runs/A` or `runs/A/model`); None for other models."""
    if not isinstance(model, str):
        return None
    folder = Path(catalog.resolve_model(model)).expanduser()  # runs/A -> runs/A/model; an unfinished run refused
    run_dir = folder.parent
    if folder.name == "model" and folder.is_dir() and all((run_dir / name).is_file()
                                                           for name in ("config.yaml", "metrics.json")):
        return run_dir
    return None


def encoder_source(model: str) -> dict | None:
    """What metrics.json records (as `encoder_from`) about the run whose encoder `model` names; None for a model
    that is no run's. A chain (C from B from A) names B, with A's own base checkpoint as its base."""
    run_dir = source_run(model)
    if run_dir is None:
        return None
    try:
        cfg = load_yaml(RunConfig(), run_dir / "config.yaml")
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        headline = tasks.get(cfg.task).headline
    except (NlpTransferError, OSError, ValueError) as e:
        raise ModelError(f"model={model}: cannot read the run's config.yaml and metrics.json ({e}); pass a "
                         "finished run's folder, or its model/ folder") from None
    earlier = metrics.get(ENCODER_FROM) if isinstance(metrics, dict) else None
    base = (earlier.get("base_model"), earlier.get("base_checkpoint")) if isinstance(earlier, dict) else (
        catalog.base_model_id(cfg.model), cfg.model)
    test = metrics.get("test", {}) if isinstance(metrics, dict) else {}
    return {"run": run_dir.resolve().name, "recipe": cfg.recipe, "task": cfg.task, "strategy": cfg.strategy,
            "data": plain_data_name(cfg), "test_metric": headline, "test_value": test.get(headline),
            "base_model": base[0], "base_checkpoint": base[1]}


def log_line(model: str, source: dict) -> str:
    """The run log's line saying where the encoder came from."""
    base = source.get("base_model") or source.get("base_checkpoint")
    return f"model={model}: the encoder of {source_run_text(source)}, which started from {base}"
