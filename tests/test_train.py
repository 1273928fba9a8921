"""nlptransfer/engine/loop.py: the loop's bookkeeping (best epoch, early stopping, step limits) and `predict` order."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from nlptransfer.config import TrainConfig
from nlptransfer.engine.batches import LengthGroupedBatches, sorted_batches
from nlptransfer.engine.callbacks import EarlyStopping
from nlptransfer.engine.loop import OptimizerSettings, TrainData, build_optimizer, fit, loss_curve, predict


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.LayerNorm = nn.LayerNorm(2)

    def forward(self, x, labels=None):
        logits = self.LayerNorm(self.linear(x))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits)


def examples(n):
    generator = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(2, generator=generator), "labels": i % 2, "example_index": i} for i in range(n)]


def train_batches(n=40, batch_size=4):
    return DataLoader(examples(n), batch_sampler=LengthGroupedBatches([1] * n, batch_size, seed=0))


def scripted(accuracies):
    """A validate function returning the given accuracies and recording the weights it saw."""
    seen = []

    def validate(model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"accuracy": accuracies[len(seen) - 1]}

    return validate, seen


def run_fit(accuracies, accelerator=None, batches=None, **train):
    torch.manual_seed(0)
    model = Toy()
    validate, seen = scripted(accuracies)
    cfg = TrainConfig(**({"epochs": len(accuracies)} | train))
    callbacks = [] if cfg.patience is None else [EarlyStopping(cfg.patience)]
    result = fit(model, TrainData(batches or train_batches(), validate), cfg, OptimizerSettings(0.1),
                 accelerator or Accelerator(), callbacks)
    return model, result, seen


def test_stops_early_and_restores_the_best_epoch():
    model, result, seen = run_fit([0.5, 0.7, 0.6, 0.4, 0.9], patience=1)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert [h["validation"]["accuracy"] for h in result.history] == [0.5, 0.7, 0.6]
    assert result.best_epoch == 2
    assert result.optimizer_steps == 30
    for name, value in model.state_dict().items():
        assert torch.equal(value, seen[1][name])
    assert not torch.equal(seen[1]["linear.weight"], seen[2]["linear.weight"])


def test_patience_counts_epochs_without_gain():
    _, result, _ = run_fit([0.5, 0.7, 0.7, 0.6, 0.9], patience=2)
    assert len(result.history) == 4 and result.best_epoch == 2  # equal is no gain


def test_without_patience_every_epoch_runs():
    model, result, seen = run_fit([0.5, 0.4, 0.3, 0.6], patience=None)
    assert len(result.history) == 4 and result.best_epoch == 4
    assert torch.equal(model.state_dict()["linear.weight"], seen[3]["linear.weight"])


def test_max_steps_ends_training():
    _, result, _ = run_fit([0.5, 0.6, 0.7], max_steps=13)
    assert result.optimizer_steps == 13
    assert len(result.history) == 2  # 10 steps in epoch 1, 3 in epoch 2
    assert result.train_examples == 13 * 4


def test_gradient_accumulation_counts_optimizer_steps():
    accelerator = Accelerator(gradient_accumulation_steps=2)
    try:
        _, result, _ = run_fit([0.5, 0.6], accelerator=accelerator, grad_accum_steps=2, patience=None)
    finally:
        accelerator.gradient_accumulation_steps = 1
    assert result.optimizer_steps == 10  # 10 batches per epoch, one step per 2
    assert result.train_examples == 80


def test_history_records_loss_and_time():
    _, result, _ = run_fit([0.5])
    entry = result.history[0]
    assert set(entry) == {"epoch", "train_loss", "train_seconds", "validation", "train_loss_curve"}
    assert entry["train_loss"] > 0 and entry["train_seconds"] >= 0
    assert result.train_seconds >= entry["train_seconds"]
    curve = entry["train_loss_curve"]  # 10 batches: each its own point, averaging to the epoch's loss
    assert len(curve) == 10 and abs(sum(curve) / len(curve) - entry["train_loss"]) < 1e-4


def test_loss_curve_averages_equal_groups_of_batches():
    assert loss_curve([]) == []
    assert loss_curve([1.0, 3.0, 2.0, 4.0], points=2) == [2.0, 3.0]
    assert len(loss_curve([1.0] * 1000)) == 50


def test_no_weight_decay_on_biases_and_layer_norm():
    model = Toy()
    model.linear.bias.requires_grad_(False)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1)
    groups = {group["weight_decay"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    assert groups[0.1] == {id(model.linear.weight)}
    assert groups[0.0] == {id(model.LayerNorm.weight), id(model.LayerNorm.bias)}


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_predict_returns_logits_in_split_order(batch_size):
    data = examples(10)
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]
    loader = DataLoader(data, batch_sampler=sorted_batches(lengths, batch_size))
    model = Toy()
    logits = predict(model, loader, Accelerator())
    with torch.no_grad():
        expected = model(torch.stack([e["x"] for e in data])).logits.numpy()
    assert logits.shape == (10, 2)
    assert logits == pytest.approx(expected, abs=1e-6)


def test_train_compile_trains_what_eager_trains_and_leaves_the_module_eager(caplog):
    """`train.compile`: the module's call runs compiled (inductor) while fitting; the weights are the eager run's up
    to float rounding, and afterwards the module's own call is back (state dict and saved files unchanged)."""
    eager, _, _ = run_fit([0.5, 0.6], patience=None)
    with caplog.at_level(logging.INFO, logger="nlptransfer"):
        compiled, result, _ = run_fit([0.5, 0.6], patience=None, compile=True)
    assert any("first step compiled" in message for message in caplog.messages)
    assert not any("torch.compile failed" in message for message in caplog.messages)
    assert compiled._compiled_call_impl is None and compiled.state_dict().keys() == eager.state_dict().keys()
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], value, rtol=1e-2, atol=1e-3)  # 20 steps at lr 0.1
    assert result.optimizer_steps == 20


def test_a_compilation_that_fails_warns_once_and_trains_eager(monkeypatch, caplog):
    from torch._dynamo.exc import TorchDynamoException

    calls = []

    def failing_compile(function, **options):
        def call(*args, **kwargs):
            calls.append(options)
            raise TorchDynamoException("inductor: no working C++ compiler")
        return call

    eager, _, _ = run_fit([0.5, 0.6], patience=None)
    monkeypatch.setattr(torch, "compile", failing_compile)
    with caplog.at_level(logging.WARNING, logger="nlptransfer"):
        fallen_back, _, _ = run_fit([0.5, 0.6], patience=None, compile=True)
    warnings = [message for message in caplog.messages if "train.compile" in message]
    assert len(warnings) == 1 and "no working C++ compiler" in warnings[0] and "without compilation" in warnings[0]
    assert calls == [{"dynamic": True}]  # tried once, then eager for good
    for name, value in eager.state_dict().items():
        assert torch.equal(fallen_back.state_dict()[name], value)
    assert fallen_back._compiled_call_impl is None


def test_an_error_of_the_model_itself_is_not_taken_for_a_compilation_failure(monkeypatch):
    def broken_compile(function, **options):
        def call(*args, **kwargs):
            raise ValueError("labels out of range")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(ValueError, match="labels out of range"):
        run_fit([0.5], patience=None, compile=True)
