"""Knowledge distillation's loss, the student module the loop trains, and a smaller copy of an encoder.

A teacher's probabilities, softened at temperature T (`tempered`), teach a student: the loss is
`alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard-label loss` (Hinton et al., 2015), the hard part over
the labeled rows only (unlabeled texts have soft targets alone). Three kinds of targets (`Task.distillation`):
`softmax` (one label per text: KL over the labels), `sigmoid` (multi-label: the binary KL of each label, averaged)
and `tokens` (a tag per word: KL at each word's first sub-token, averaged over the words).
`DistilledStudent` wraps the student so that the loop's `model(**batch).loss` is that loss; its rows' targets are
looked up by the batch's `distill_row`. `keep_layers` copies a model keeping some of its encoder layers (DistilBERT's
initialization: every other layer of the teacher).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .batches import EncodedSplit

KINDS = ("softmax", "sigmoid", "tokens")
ROW = "distill_row"
"""The batch key naming each row's index in the student's training rows (its soft targets, whether it is labeled)."""
EPSILON = 1e-7


def tempered(probabilities: np.ndarray, temperature: float, kind: str) -> np.ndarray:
    """Teacher probabilities softened at `temperature`: softmax(log p / T) over the last axis (`softmax`, `tokens`),
    sigmoid(logit p / T) per label (`sigmoid`). For one model it is softmax(z / T) of its logits z; for several
    teachers' averaged probabilities, the average softened."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))
    scaled = np.log(p) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    return np.exp(scaled) / np.exp(scaled).sum(axis=-1, keepdims=True)


def soft_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float, kind: str) -> torch.Tensor:
    """T^2 * KL(targets || student at T), averaged over rows (`softmax`), rows and labels (`sigmoid`) or the words
    with a target (`tokens`: positions whose target row is all zero are skipped)."""
    logits, targets = logits.float() / temperature, targets.float()
    if kind == "sigmoid":
        q = targets.clamp(EPSILON, 1 - EPSILON)
        kl = (q * (q.log() - F.logsigmoid(logits)) + (1 - q) * ((1 - q).log() - F.logsigmoid(-logits)))
        return temperature ** 2 * kl.mean()
    log_student = F.log_softmax(logits, dim=-1)
    kl = (targets * (targets.clamp_min(EPSILON).log() - log_student)).sum(-1)
    if kind == "tokens":
        taught = targets.sum(-1) > 0
        return temperature ** 2 * (kl[taught].mean() if taught.any() else kl.sum() * 0)
    return temperature ** 2 * kl.mean()


def hard_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The plain supervised loss of the labeled rows: cross-entropy, BCE for multi-label, token cross-entropy
    skipping -100."""
    if kind == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def distillation_loss(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor, labeled: torch.Tensor,
                      temperature: float, alpha: float, kind: str, supervised: nn.Module | None = None
                      ) -> torch.Tensor:
    """`alpha * soft_loss + (1 - alpha) * hard loss`, the hard loss over the `labeled` rows only (none: 0);
    `supervised(logits, labels)` replaces the plain hard loss (class weights, focal loss)."""
    loss = alpha * soft_loss(logits, targets, temperature, kind)
    if alpha < 1 and bool(labeled.any()):
        hard = (supervised or (lambda lg, lb: hard_loss(lg, lb, kind)))(logits[labeled], labels[labeled])
        loss = loss + (1 - alpha) * hard
    return loss


class DistilledStudent(nn.Module):
    """The student under training: `forward(**batch)` returns its output, with `.loss` the distillation loss when
    the batch carries `distill_row` (training batches); evaluation batches get the student's plain output."""

    def __init__(self, student: nn.Module, targets: torch.Tensor | list[torch.Tensor], labeled: torch.Tensor,
                 temperature: float, alpha: float, kind: str, supervised: nn.Module | None = None,
                 padding_side: str = "right"):
        super().__init__()
        self.student = student
        # plain attributes, not buffers: the targets are inputs, not weights (checkpoints and the best-epoch copy
        # hold the student's weights only)
        self.targets, self.labeled = targets, labeled
        self.temperature, self.alpha, self.kind = temperature, alpha, kind
        self.supervised, self.padding_side = supervised, padding_side

    @property
    def config(self):
        return self.student.config

    def forward(self, **batch):
        rows, labels = batch.pop(ROW, None), batch.pop("labels", None)
        outputs = self.student(**batch)
        if rows is None:
            return outputs
        rows_cpu = rows.cpu()
        targets = self.row_targets(rows_cpu, outputs.logits.shape[1] if self.kind == "tokens" else 0)
        outputs.loss = distillation_loss(outputs.logits, targets.to(outputs.logits.device), labels,
                                         self.labeled[rows_cpu].to(labels.device), self.temperature, self.alpha,
                                         self.kind, self.supervised)
        return outputs

    def row_targets(self, rows: torch.Tensor, length: int) -> torch.Tensor:
        """The rows' soft targets; per-token targets padded to the batch's `length` on the tokenizer's side."""
        if self.kind != "tokens":
            return self.targets[rows]
        padded = []
        for row in rows.tolist():
            target = self.targets[row][:length]
            gap = (0, 0, length - len(target), 0) if self.padding_side == "left" else (0, 0, 0, length - len(target))
            padded.append(F.pad(target, gap))
        return torch.stack(padded)


def row_targets(soft: Sequence[np.ndarray], split: EncodedSplit, kind: str) -> torch.Tensor | list[torch.Tensor]:
    """Each training row's soft targets: its text's (`documents`: windows of a long text share them), or per token
    the word's targets at its first sub-token (zeros elsewhere)."""
    if kind != "tokens":
        return torch.from_numpy(np.asarray(soft, dtype=np.float32)[np.asarray(split.documents, dtype=np.int64)])
    rows = []
    for feature, window in zip(split.features, split.windows):
        target = torch.zeros(len(feature["input_ids"]), soft[window.sentence].shape[-1])
        for word, position in window.word_starts:
            target[position] = torch.from_numpy(np.asarray(soft[window.sentence][word], dtype=np.float32))
        rows.append(target)
    return rows


def join_splits(labeled: EncodedSplit, unlabeled: EncodedSplit | None, labeled_texts: int) -> EncodedSplit:
    """The labeled rows, then the unlabeled ones (None: none), each numbered by `distill_row` (and `example_index`);
    the unlabeled texts (sentences) are numbered on after the `labeled_texts` labeled ones."""
    windowed = hasattr(labeled, "windows")  # token classification: windows of sentences
    if unlabeled is None:
        unlabeled = type(labeled)([], [], [], labeled.max_length) if windowed else EncodedSplit([])
    features = [dict(f) for f in labeled.features] + [dict(f) for f in unlabeled.features]
    for row, feature in enumerate(features):
        feature["example_index"], feature[ROW] = row, row
    if windowed:
        windows = list(labeled.windows) + [dataclasses.replace(w, sentence=w.sentence + labeled_texts)
                                           for w in unlabeled.windows]
        return type(labeled)(features, windows, labeled.sentence_lengths + unlabeled.sentence_lengths,
                             labeled.max_length)
    documents = list(labeled.documents) + [doc + labeled_texts for doc in unlabeled.documents]
    return EncodedSplit(features, documents, labeled.over_limit + unlabeled.over_limit)


def layer_indices(depth: int, layers: str | int) -> list[int]:
    """The teacher layers a student keeps: `every_other` (0, 2, 4, ...: DistilBERT's choice) or K layers spread evenly
    from the first to the last."""
    if layers == "every_other":
        return list(range(0, depth, 2))
    count = int(layers)
    if not 1 <= count <= depth:
        raise ConfigError(f"layers={count}: a student keeps from 1 to the teacher's {depth} layers; e.g. "
                          f"layers={max(depth // 2, 1)} or layers=every_other")
    if count == 1:
        return [depth - 1]
    return sorted({round(i * (depth - 1) / (count - 1)) for i in range(count)})


def keep_layers(model: nn.Module, indices: list[int]) -> nn.Module:
    """A copy of `model` with only the encoder layers at `indices` (in order), its config saying so; embeddings and
    head as they were."""
    from .. import models

    student = copy.deepcopy(model)
    stack = models.encoder_layers(student, "layers")
    kept = nn.ModuleList([stack[i] for i in indices])
    for module in student.base_model.modules():
        for name, child in module.named_children():
            if child is stack:
                setattr(module, name, kept)
    for new_index, layer in enumerate(kept):  # attention caches and some layers know their own position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    student.config.num_hidden_layers = len(indices)
    if isinstance(getattr(student.config, "layer_types", None), list):
        student.config.layer_types = [student.config.layer_types[i] for i in indices]
    return student
