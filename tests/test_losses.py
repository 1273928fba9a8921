"""Class weights and focal loss: the loss equals the formula computed by hand on a small batch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nlptransfer.config import DataConfig, LossConfig, RunConfig, TrainConfig
from nlptransfer.engine.losses import build_loss, class_weights
from nlptransfer.errors import ConfigError
from nlptransfer.pipeline import run

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.5]])
LABELS = torch.tensor([0, 2, 2, 1])
NAMES = ["neg", "neu", "pos"]


def log_softmax_by_hand(row: list[float], k: int) -> float:
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_balanced_weights_are_inverse_training_frequency():
    weights = class_weights(LossConfig(class_weights="balanced"), [0, 0, 0, 0, 0, 0, 1, 1, 2], NAMES, False)
    assert weights.tolist() == pytest.approx([9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)])
    multi = class_weights(LossConfig(class_weights="balanced"), [[1, 0], [1, 1], [0, 0], [1, 0]], ["a", "b"], True)
    assert multi.tolist() == pytest.approx([1 / 3, 3 / 1])  # negatives / positives per label
    assert class_weights(LossConfig(), [0, 1], NAMES, False) is None
    with pytest.raises(ConfigError, match="2 weights for 3 labels"):
        class_weights(LossConfig(class_weights=[1, 2]), [0, 1], NAMES, False)


def test_weighted_cross_entropy_matches_the_hand_computation():
    weights = [1.0, 2.0, 0.5]
    loss = build_loss(LossConfig(class_weights=weights), LABELS.tolist(), NAMES, False)(LOGITS, LABELS)
    terms = [-weights[k] * log_softmax_by_hand(row, k) for row, k in zip(LOGITS.tolist(), LABELS.tolist())]
    expected = sum(terms) / sum(weights[k] for k in LABELS.tolist())
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    unweighted = torch.nn.functional.cross_entropy(LOGITS, LABELS)
    assert float(loss) != pytest.approx(float(unweighted))  # the weights change the loss


def test_focal_loss_matches_the_hand_computation():
    gamma = 2.0
    loss = build_loss(LossConfig(focal_gamma=gamma), LABELS.tolist(), NAMES, False)(LOGITS, LABELS)
    terms = []
    for row, k in zip(LOGITS.tolist(), LABELS.tolist()):
        log_p = log_softmax_by_hand(row, k)
        terms.append(-((1 - math.exp(log_p)) ** gamma) * log_p)
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    assert build_loss(LossConfig(focal_gamma=0.0), LABELS.tolist(), NAMES, False) is None  # the model's own CE


def test_multilabel_positive_weights_match_the_hand_computation():
    logits, targets = torch.tensor([[1.0, -2.0], [0.0, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = build_loss(LossConfig(class_weights=[2.0, 3.0]), [[1, 0], [0, 1]], ["a", "b"], True)(logits, targets)

    def bce(x: float, y: float, w: float) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(w * y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(1.0, 1, 2) + bce(-2.0, 0, 3) + bce(0.0, 0, 2) + bce(0.5, 1, 3)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_balanced_run_records_per_class_recall(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model=tiny_model_dir, output_dir=str(out), loss=LossConfig(class_weights="balanced", focal_gamma=1),
                  data=DataConfig(train_file=str(reviews_csv), max_length=16),
                  train=TrainConfig(epochs=1, batch_size=8, max_steps=2)))
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert all("recall" in row for row in test["per_class"].values())
    assert "balanced class weights" in (out / "train.log").read_text()
