"""Losses for imbalanced labels: class-weighted cross-entropy / BCE and focal loss.

With the defaults (no weights, gamma 0) the model's own loss is used and `build_loss` returns
None. Otherwise the loop calls `loss(logits, labels)`: for single-label data a weighted (and
optionally focal) cross-entropy, for multi-label data a BCE with per-label positive weights.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..options import LossConfig

logger = logging.getLogger(__name__)


def class_weights(cfg: LossConfig, labels: list, label_names: list[str], multilabel: bool) -> torch.Tensor | None:
    """The weight of each label: `balanced` from the training counts, a given list, or None.

    Single-label `balanced` is n / (classes * count) (scikit-learn's rule); multi-label it is
    each label's negatives / positives, BCE's `pos_weight`.
    """
    setting = cfg.class_weights
    if setting in (None, "none"):
        return None
    if isinstance(setting, list):
        if len(setting) != len(label_names):
            raise ConfigError(f"loss.class_weights has {len(setting)} weights for {len(label_names)} labels "
                              f"({', '.join(label_names)}); give one weight per label in that order")
        return torch.tensor([float(w) for w in setting])
    if multilabel:
        positives = np.asarray(labels, dtype=np.float64).sum(axis=0)
        weights = (len(labels) - positives) / np.maximum(positives, 1)
    else:
        counts = np.bincount(labels, minlength=len(label_names)).astype(np.float64)
        weights = len(labels) / (len(label_names) * np.maximum(counts, 1))
    logger.info("balanced class weights: %s", ", ".join(f"{n} {w:.2f}" for n, w in zip(label_names, weights)))
    return torch.tensor(weights, dtype=torch.float32)


class WeightedLoss(nn.Module):
    """Class-weighted cross-entropy (or BCE for multi-label), focal when `gamma` > 0."""

    def __init__(self, weights: torch.Tensor | None, gamma: float, multilabel: bool):
        super().__init__()
        self.register_buffer("weights", weights, persistent=False)
        self.gamma, self.multilabel = gamma, multilabel

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weights = None if self.weights is None else self.weights.to(logits.device)
        if self.multilabel:
            targets = labels.float()
            loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights, reduction="none")
            if self.gamma:
                probability = torch.sigmoid(logits)
                p_true = probability * targets + (1 - probability) * (1 - targets)
                loss = loss * (1 - p_true) ** self.gamma
            return loss.mean()
        log_probabilities = F.log_softmax(logits, dim=-1)
        log_p_true = log_probabilities.gather(1, labels[:, None]).squeeze(1)
        loss = -log_p_true * (1 - log_p_true.exp()) ** self.gamma
        if weights is None:
            return loss.mean()
        example_weights = weights[labels]  # a weighted mean, like F.cross_entropy(weight=...)
        return (loss * example_weights).sum() / example_weights.sum()


def build_loss(cfg: LossConfig, labels: list, label_names: list[str], multilabel: bool) -> WeightedLoss | None:
    """The configured loss, or None when the model's own loss is the same thing."""
    weights = class_weights(cfg, labels, label_names, multilabel)
    if weights is None and not cfg.focal_gamma:
        return None
    return WeightedLoss(weights, cfg.focal_gamma, multilabel)
