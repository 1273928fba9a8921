"""The tasks, found by name: `get("token-classification")`. One file each; adding one is one line below."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Task, TestOutcome
from .classification import Classification, MultiLabel
from .multitask import Multitask
from .token_classification import TokenClassification

REGISTRY: dict[str, Task] = {task.name: task for task in (
    Classification(), MultiLabel(), TokenClassification(), Multitask(),
)}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Task:
    """The task registered under `name`; an unknown name is a one-line error listing the known ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"task must be one of {', '.join(REGISTRY)}; got '{name}'") from None


def for_architectures(architectures: list[str]) -> Task | None:
    """The task whose head a saved model has, from its config's `architectures` (the first task that fits)."""
    for architecture in architectures:
        for task in REGISTRY.values():
            if architecture.endswith(task.architecture_suffix):
                return task
    return None


def for_peft_type(task_type: str | None) -> str | None:
    """The name of the task a peft adapter of `task_type` (`SEQ_CLS`, ...) was trained for."""
    return next((task.name for task in REGISTRY.values() if task_type and task.peft_task_type == task_type), None)


__all__ = ["Task", "TestOutcome", "for_architectures", "for_peft_type", "get", "names"]
