"""Reading what a run saved: label names of a model or adapter folder, hub-id shapes, error lines.

Shared by the predictor, the model card and the Hub export, which all look into saved folders.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import catalog
from ..errors import ModelError

LABELS_FILE = "labels.json"
"""Written beside an exported adapter: its task and label names (peft keeps neither)."""


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def is_repo_id(name: str) -> bool:
    """Whether `name` has the shape of a hub repo id (`user/name` or a legacy `name`)."""
    return catalog.is_repo_id(name)


def saved_label_names(config_file: Path) -> list[str]:
    """The label names in id order from a saved model's config.json."""
    id2label = json.loads(config_file.read_text(encoding="utf-8")).get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def adapter_labels(adapter_dir: Path) -> tuple[str | None, list[str]]:
    """(task, label names) of an adapter: from labels.json, else from the run's merged model/."""
    labels_file = adapter_dir / LABELS_FILE
    if labels_file.is_file():
        saved = json.loads(labels_file.read_text(encoding="utf-8"))
        return saved.get("task"), list(saved["label_names"])
    merged_config = adapter_dir.parent / "model" / "config.json"
    if merged_config.is_file():
        return None, saved_label_names(merged_config)
    raise ModelError(f"adapter {adapter_dir} has no {LABELS_FILE} and no run model/ beside it, so its labels "
                     "are unknown; export it with python -m nlptransfer.push or use the run folder")
