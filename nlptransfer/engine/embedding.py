"""Sentence-embedding training for few-shot classification: a contrastive phase, then a linear head.

The encoder learns, on the labeled examples, to put texts of one label close together and texts
of different labels apart: SetFit's pair loss (each pair's cosine regressed to 1 or 0), here over
every pair of a batch (`pair_cosine_loss`), or the supervised contrastive loss over the batch
(Khosla et al., 2020; `supervised_contrastive_loss`). Each text goes through the encoder once per
epoch, whatever the number of pairs in its batch, so the cost grows linearly with the number of
examples; SetFit's pair generation grows with the pairs. The head is then fitted once, in closed
form, on the embeddings: a logistic regression, as SetFit fits it, copied into the model's linear head.
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from transformers.modeling_outputs import SequenceClassifierOutput

from . import loop


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The supervised contrastive loss of a batch of embeddings.

    Each text is an anchor; the batch's other texts sharing a label with it (for multi-hot labels: at
    least one label) are its positives. The loss is the mean, over anchors with a positive, of
    -log softmax(cosine / temperature) averaged over the positives. 0 when no anchor has a positive.
    """
    z = nn.functional.normalize(embeddings.float(), dim=-1)
    similarity = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = same_label(labels) & ~eye
    log_probability = similarity.masked_fill(eye, float("-inf")).log_softmax(dim=-1).masked_fill(eye, 0.0)
    counts = positive.sum(dim=-1)
    anchors = counts > 0
    if not anchors.any():
        return similarity.sum() * 0.0  # keeps the graph: a step with nothing to learn
    per_anchor = -(log_probability * positive).sum(dim=-1)[anchors] / counts[anchors]
    return per_anchor.mean()


def pair_cosine_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's pair loss over every pair of the batch: the squared distance of each pair's cosine similarity from
    its target, 1 for texts sharing a label (multi-hot: at least one), 0 for the others.

    SetFit samples as many positive as negative pairs; here the batch holds all its pairs, so the mean over the
    positive pairs and the mean over the negative ones count equally (a kind absent from the batch counts 0).
    """
    z = nn.functional.normalize(embeddings.float(), dim=-1)
    cosine = z @ z.T
    upper, same = torch.ones_like(cosine, dtype=torch.bool).triu(diagonal=1), same_label(labels)
    positive, negative = same & upper, ~same & upper
    loss = cosine.sum() * 0.0  # keeps the graph: a batch of one text
    if positive.any():
        loss = loss + ((1 - cosine[positive]) ** 2).mean()
    if negative.any():
        loss = loss + (cosine[negative] ** 2).mean()
    return loss


def same_label(labels: torch.Tensor) -> torch.Tensor:
    """(n, n) booleans: whether texts i and j share a label (multi-hot rows: at least one)."""
    if labels.dim() == 1:
        return labels[:, None] == labels[None, :]
    return (labels.float() @ labels.float().T) > 0


class ContrastiveEncoder(nn.Module):
    """A pooled classifier seen as its embedding: `forward(**batch)` returns the contrastive loss of the batch
    (the head is not used), so the standard loop trains the encoder."""

    def __init__(self, model: nn.Module, temperature: float, loss: str = "cosine") -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.loss = loss

    def forward(self, labels: torch.Tensor, **inputs) -> SequenceClassifierOutput:
        embeddings = self.model.embed(**inputs)
        loss = (pair_cosine_loss(embeddings, labels) if self.loss == "cosine"
                else supervised_contrastive_loss(embeddings, labels, self.temperature))
        return SequenceClassifierOutput(loss=loss, logits=embeddings)


class Embedder(nn.Module):
    """A pooled classifier's embedding as its `logits`: `loop.predict` then returns embeddings in split order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.model.embed(**inputs))


def embed(model: nn.Module, batches: DataLoader, accelerator: Accelerator) -> np.ndarray:
    """The (pooled, normalized as the model is) embedding of every example of the loader's split, in order."""
    return loop.predict(Embedder(model), batches, accelerator, desc="embedding")


def logistic_head(embeddings: np.ndarray, labels: np.ndarray, num_labels: int, multilabel: bool, c: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a linear head fitted as a logistic regression (L2, inverse strength `c`) on the embeddings.

    Single-label: multinomial, one row per label (for two labels, the binary fit split into +w/2 and -w/2,
    whose softmax is the binary model's sigmoid). Multi-label: one binary fit per label; a label that every
    or no training example has gets a constant score.
    """
    from sklearn.linear_model import LogisticRegression

    width = embeddings.shape[1]
    if not multilabel:
        fitted = LogisticRegression(C=c, max_iter=1000).fit(embeddings, labels)
        weight, bias = np.zeros((num_labels, width)), np.full(num_labels, -30.0)  # a label absent from training
        classes = fitted.classes_.astype(int)
        if len(classes) == 2:
            weight[classes] = np.stack([-fitted.coef_[0] / 2, fitted.coef_[0] / 2])
            bias[classes] = [-fitted.intercept_[0] / 2, fitted.intercept_[0] / 2]
        else:
            weight[classes], bias[classes] = fitted.coef_, fitted.intercept_
        return weight, bias
    weight, bias = np.zeros((num_labels, width)), np.zeros(num_labels)
    for k in range(num_labels):
        column = labels[:, k].astype(int)
        if column.min() == column.max():
            bias[k] = 30.0 if column[0] else -30.0
            continue
        fitted = LogisticRegression(C=c, max_iter=1000).fit(embeddings, column)
        weight[k], bias[k] = fitted.coef_[0], fitted.intercept_[0]
    return weight, bias


@torch.no_grad()
def set_head(score: nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    score.weight.copy_(torch.as_tensor(weight, dtype=score.weight.dtype))
    score.bias.copy_(torch.as_tensor(bias, dtype=score.bias.dtype))
