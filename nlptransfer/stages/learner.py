"""The models one method holds over a sequence, how a stage is scored, and how they are saved.

Shared methods (naive, replay, ewc, lwf, joint) hold one encoder: under class- and domain-incremental learning one
classification model (head `all`) whose head grows rows for each stage's new labels; under task-incremental learning
one classification model per stage (each its head, made seeded at the start), their encoder one object (as
`task=multitask` ties them). `adapters` holds one LoRA-adapted copy of the checkpoint per stage (its own head; the
encoder's weights never change). Each is a plain transformers model: the final folder saves each as model/ (one
head) or model/<stage>/ (a head per stage), which `nlptransfer.predict` and `transformers.pipeline` load.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import models, tasks
from ..outputs import export, files
from ..strategies.lora import add_lora
from .methods import grow_head

logger = logging.getLogger("nlptransfer")

ALL = "all"
"""The one head of class- and domain-incremental learning."""


@dataclass
class Examples:
    """Texts and their label names."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: list[int]) -> Examples:
        return Examples([self.texts[i] for i in indices], [self.labels[i] for i in indices])

    def __add__(self, other: Examples) -> Examples:
        return Examples(self.texts + other.texts, self.labels + other.labels)


@dataclass
class StageData:
    """One stage as read: its name, its labels in order, its seeded splits."""

    name: str
    label_names: list[str]
    train: Examples
    validation: Examples
    test: Examples


def above_chance(probabilities: np.ndarray) -> float:
    """How far a head's top probability is above chance, from 0 (uniform) to 1 (certain): heads of different label
    counts compare fairly (a 2-label head's top probability is at least 0.5, a 3-label head's at least 0.33)."""
    chance = 1 / len(probabilities)
    return float((probabilities.max() - chance) / (1 - chance)) if len(probabilities) > 1 else 0.0


class Learner:
    """One method's models over a sequence: `heads` by name (plain transformers models, or peft-wrapped ones)."""

    def __init__(self, scenario: str, adapters: bool, stages: list[StageData], tokenizer, max_length: int):
        self.scenario, self.adapters, self.stages = scenario, adapters, stages
        self.tokenizer, self.max_length = tokenizer, max_length
        self.heads: dict[str, nn.Module] = {}

    @property
    def per_stage(self) -> bool:
        """A head per stage (task-incremental, or adapters), rather than one growing head."""
        return self.adapters or self.scenario == "task-incremental"

    def head_of(self, stage: int) -> str:
        return self.stages[stage].name if self.per_stage else ALL

    def build(self, model: str, seed: int, lora=None, extend: str | None = None, labels: list[str] | None = None):
        """The starting models: a head per stage (made now, each seeded), or the one head for `labels` (the first
        stage's; `extend`: the finished run's model with its own head)."""
        task = tasks.get("classification")
        if not self.per_stage:
            torch.manual_seed(seed)
            self.heads[ALL] = models.load_model(extend or model, task, labels, keep_head=bool(extend))
            return self
        for index, stage in enumerate(self.stages):
            torch.manual_seed(seed + index)
            head = models.load_model(model, task, stage.label_names)
            if self.adapters:
                head = add_lora(head, lora, task.peft_task_type)
            elif self.heads:  # task-incremental: one encoder under every head
                first = next(iter(self.heads.values()))
                setattr(head, head.base_model_prefix, getattr(first, first.base_model_prefix))
            self.heads[stage.name] = head
        return self

    def grow(self, labels: list[str], seed: int) -> list[str]:
        """Add `labels` the one head lacks (class- and domain-incremental); returns those added."""
        if self.per_stage:
            return []
        head = self.heads[ALL]
        new = [label for label in labels if label not in head.config.label2id]
        grow_head(head, new, seed)
        return new

    def label_names(self, head: str) -> list[str]:
        config = self.heads[head].config
        return [config.id2label[i] for i in range(config.num_labels)]

    def scoring_heads(self, stage: int, learned: int) -> list[str]:
        """The heads that answer for `stage` once `learned` stages are learned: its own head; or, for adapters under
        class- and domain-incremental learning (no stage is named at prediction), every learned stage's adapter (the
        first stage's before any), the most confident answer winning (`above_chance`)."""
        if self.adapters and self.scenario != "task-incremental":
            return [self.stages[k].name for k in range(max(learned, 1))]
        return [self.head_of(stage)]

    @torch.inference_mode()
    def probabilities(self, head: str, texts: list[str], batch_size: int) -> np.ndarray:
        model = self.heads[head]
        model.eval()
        parts = []
        for start in range(0, len(texts), batch_size):
            inputs = self.tokenizer(texts[start:start + batch_size], truncation=True, max_length=self.max_length,
                                    padding=True, return_tensors="pt")
            parts.append(torch.softmax(model(**inputs).logits.float(), -1).numpy())
        return np.concatenate(parts) if parts else np.zeros((0, len(self.label_names(head))))

    def predict(self, stage: int, learned: int, texts: list[str], batch_size: int) -> list[str]:
        """The label names predicted for `texts` of `stage` after `learned` stages."""
        best = np.full(len(texts), -1.0)
        predicted = [""] * len(texts)
        for head in self.scoring_heads(stage, learned):
            scores, names = self.probabilities(head, texts, batch_size), self.label_names(head)
            for i, row in enumerate(scores):
                if above_chance(row) > best[i]:
                    best[i], predicted[i] = above_chance(row), names[int(row.argmax())]
        return predicted

    def accuracy(self, stage: int, learned: int, batch_size: int) -> tuple[float, list[str]]:
        """Test accuracy on `stage` after `learned` stages (a label the head does not know yet counts as wrong), and
        the predictions."""
        test = self.stages[stage].test
        predicted = self.predict(stage, learned, test.texts, batch_size)
        right = sum(p == gold for p, gold in zip(predicted, test.labels))
        return right / max(len(test), 1), predicted

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What a stage checkpoint keeps: every weight that can train (adapters: the adapters and heads only)."""
        module = nn.ModuleDict(self.heads)
        keep = {name for name, p in module.named_parameters() if p.requires_grad} if self.adapters else None
        return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()
                if keep is None or name in keep}

    def load_state(self, state: dict[str, torch.Tensor], labels: list[str] | None, seed: int) -> None:
        """Put a stage checkpoint back (the one head grown to its `labels` first)."""
        if labels is not None:
            self.grow(labels, seed)
        module = nn.ModuleDict(self.heads)
        missing = set(module.state_dict()) - set(state)
        module.load_state_dict(state, strict=not self.adapters and not missing)

    def save(self, folder: Path) -> Path:
        """model/ (one head) or model/<stage>/ (a head per stage): plain transformers models with the tokenizer."""
        target = folder / "model"
        if not self.per_stage:
            export.save_pretrained(self.heads[ALL], self.tokenizer, target)
            return target
        files.make_dir(target)
        for name, head in self.heads.items():
            plain = export.merged_copy(head) if self.adapters else head
            export.save_pretrained(plain, self.tokenizer, target / name)
        return target

    def snapshot(self) -> nn.ModuleDict:
        """A frozen copy of the heads (LwF's previous model)."""
        frozen = copy.deepcopy(nn.ModuleDict(self.heads)).eval()
        for parameter in frozen.parameters():
            parameter.requires_grad_(False)
        return frozen
