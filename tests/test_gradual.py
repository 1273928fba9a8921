"""Gradual unfreezing (strategy=gradual) and discriminative learning rates (train.layer_lr_decay, train.head_lr).

On the tiny 2-layer BERT of conftest.py: which parameters train at each stage, which weights actually
change in `fit`, and the learning rate of every parameter, computed by hand.
"""

from __future__ import annotations

import json
from itertools import count

import pytest
import torch
from accelerate import Accelerator

from nlptransfer import load_recipe, models, strategies, tasks
from nlptransfer.config import GradualConfig, RunConfig, TrainConfig, validate
from nlptransfer.data.classification import TextSplit
from nlptransfer.engine import batches
from nlptransfer.engine.loop import Callback, OptimizerSettings, TrainData, build_optimizer, fit
from nlptransfer.errors import ConfigError
from nlptransfer.strategies import gradual

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["neg", "neu", "pos"]
HEAD = {"classifier.weight", "classifier.bias"}


def names_under(model, prefix: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefix)}


def trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)


def prepare(model, cfg):
    return strategies.get(cfg.strategy).prepare(model, cfg, tasks.get(cfg.task))


def layerwise_options(model, cfg, lr, accelerator):
    """What the strategy gives the loop: optimizer settings (with layer-wise rates or not) and its callbacks."""
    return strategies.get(cfg.strategy).optimization(model, cfg, lr, accelerator)


def stages(model) -> list[set[str]]:
    """What each gradual stage should train: head; + top layer and pooler; + layer 0; + embeddings."""
    layer1 = names_under(model, "bert.encoder.layer.1.") | names_under(model, "bert.pooler.")
    layer0 = names_under(model, "bert.encoder.layer.0.")
    embeddings = names_under(model, "bert.embeddings.")
    return [HEAD, HEAD | layer1, HEAD | layer1 | layer0, HEAD | layer1 | layer0 | embeddings]


def test_parameter_layers(model):
    layers = models.parameter_layers(model)
    assert {n for n, layer in layers.items() if layer is None} == HEAD
    assert {n for n, layer in layers.items() if layer == -1} == names_under(model, "bert.embeddings.")
    assert {n for n, layer in layers.items() if layer == 0} == names_under(model, "bert.encoder.layer.0.")
    assert {n for n, layer in layers.items() if layer == 1} == (names_under(model, "bert.encoder.layer.1.")
                                                                 | names_under(model, "bert.pooler."))


def test_gradual_starts_with_the_head_alone(model, tiny_model_dir):
    prepare(model, RunConfig(model=tiny_model_dir, strategy="gradual"))
    assert trainable(model) == HEAD


@pytest.mark.parametrize(("epochs_per_stage", "layers_per_stage", "schedule"), [
    (1, 1, [0, 1, 2, 3, 3]),  # epoch 1 the head, then one layer more each epoch, the embeddings last
    (2, 1, [0, 0, 1, 1, 2, 2, 3]),
    (1, 2, [0, 2, 3, 3]),
    (1, None, [0, 3]),  # default with 2 epochs: the head alone, then everything
    (1, None, [0, 2, 3]),  # with 3: the head, then the top 2 of the 3 units, then all
    (2, None, [0, 0, 3, 3]),
])
def test_unfreeze_stage_follows_the_schedule(model, epochs_per_stage, layers_per_stage, schedule):
    cfg = GradualConfig(epochs_per_stage=epochs_per_stage, layers_per_stage=layers_per_stage)
    expected, epochs = stages(model), len(schedule)
    for epoch, stage in enumerate(schedule, start=1):
        gradual.unfreeze_stage(model, epoch, cfg, epochs)
        assert trainable(model) == expected[stage], f"epoch {epoch}"
    assert gradual.fully_unfrozen_epoch(model, cfg, epochs) == schedule.index(3) + 1


def tiny_batches(tiny_model_dir, n: int = 16):
    tokenizer = models.load_tokenizer(tiny_model_dir)
    texts = [("good great love " if i % 2 else "bad awful hate ") + "the movie" for i in range(n)]
    split = batches.encode_split(TextSplit(texts, [2 * (i % 2) for i in range(n)]), tokenizer, 16)
    return batches.train_loader(split, tokenizer, batch_size=8, seed=0, group_by_length=True)


@pytest.mark.parametrize("epochs", [1, 3])
def test_fit_trains_exactly_the_scheduled_weights(model, tiny_model_dir, epochs):
    cfg = RunConfig(model=tiny_model_dir, strategy="gradual", train=TrainConfig(epochs=epochs, patience=None),
                    gradual=GradualConfig(layers_per_stage=1))
    prepare(model, cfg)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    settings, callbacks = layerwise_options(model, cfg, 1e-2, Accelerator(cpu=True))
    seen = []

    class Record(Callback):  # after the strategy's unfreezing callback: what trains in the epoch
        def on_epoch_start(self, loop):
            seen.append(trainable(model))

    better = count()  # every epoch improves: the last epoch's weights are kept
    fit(model, TrainData(tiny_batches(tiny_model_dir), lambda m: {"accuracy": next(better)}), cfg.train, settings,
        Accelerator(cpu=True), callbacks + [Record()])

    assert seen == stages(model)[:epochs]
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == seen[-1]


def test_best_epoch_restores_weights_frozen_at_that_epoch(model, tiny_model_dir):
    cfg = RunConfig(model=tiny_model_dir, strategy="gradual", train=TrainConfig(epochs=2, patience=None))
    prepare(model, cfg)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    scores = iter([1.0, 0.0])  # epoch 1 (head alone) is best
    settings, callbacks = layerwise_options(model, cfg, 1e-2, Accelerator(cpu=True))
    fit(model, TrainData(tiny_batches(tiny_model_dir), lambda m: {"accuracy": next(scores)}), cfg.train, settings,
        Accelerator(cpu=True), callbacks)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == HEAD  # the top layer trained in epoch 2, but the best epoch had it untouched


def lr_of(optimizer, parameter) -> float:
    return next(group["lr"] for group in optimizer.param_groups if any(p is parameter for p in group["params"]))


@pytest.mark.parametrize(("strategy", "encoder_lr_factor"), [("full", 1.0), ("gradual", 0.1)])
def test_layer_lr_decay_and_head_lr(model, tiny_model_dir, strategy, encoder_lr_factor):
    cfg = RunConfig(model=tiny_model_dir, strategy=strategy, train=TrainConfig(layer_lr_decay=0.8, head_lr=5e-3),
                    gradual=GradualConfig(encoder_lr_factor=encoder_lr_factor))
    prepare(model, cfg)
    settings, _ = layerwise_options(model, cfg, 1e-3, Accelerator(cpu=True))
    optimizer = build_optimizer(model, 1e-3, 0.01, settings.lr_scales)
    top = 1e-3 * encoder_lr_factor
    expected = {"classifier.weight": 5e-3, "classifier.bias": 5e-3,
                "bert.pooler.dense.weight": top,
                "bert.encoder.layer.1.attention.self.query.weight": top,
                "bert.encoder.layer.1.output.LayerNorm.bias": top,
                "bert.encoder.layer.0.attention.self.query.weight": top * 0.8,
                "bert.encoder.layer.0.intermediate.dense.bias": top * 0.8,
                "bert.embeddings.word_embeddings.weight": top * 0.8 * 0.8,
                "bert.embeddings.LayerNorm.weight": top * 0.8 * 0.8}
    parameters = dict(model.named_parameters())
    for name, lr in expected.items():
        assert lr_of(optimizer, parameters[name]) == pytest.approx(lr), name
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.parameters()}  # gradual: also the weights still frozen
    for group in optimizer.param_groups:  # still no weight decay on biases and LayerNorm weights
        decays = {name.endswith(("bias", "LayerNorm.weight")) for name, p in parameters.items()
                  if any(p is q for q in group["params"])}
        assert decays == {group["weight_decay"] == 0.0}


def test_layer_lr_decay_skips_frozen_layers(model, tiny_model_dir):
    cfg = RunConfig(model=tiny_model_dir, freeze={"layers": 1}, train=TrainConfig(layer_lr_decay=0.5))
    prepare(model, cfg)
    scales = layerwise_options(model, cfg, 1e-3, Accelerator(cpu=True))[0].lr_scales
    assert set(scales) == trainable(model)
    assert scales["bert.encoder.layer.1.output.dense.weight"] == 1.0 and scales["classifier.bias"] == 1.0


def test_a_plain_run_has_no_layerwise_options(model, tiny_model_dir):
    assert layerwise_options(model, RunConfig(model=tiny_model_dir), 1e-3, Accelerator(cpu=True)) == (
        OptimizerSettings(1e-3), [])


@pytest.mark.parametrize(("changes", "message"), [
    ({"strategy": "lora", "train": {"layer_lr_decay": 0.8}}, "work with strategy=full or gradual"),
    ({"strategy": "frozen", "train": {"head_lr": 1e-3}}, "work with strategy=full or gradual"),
    ({"train": {"layer_lr_decay": 1.5}}, "train.layer_lr_decay must be in (0, 1]"),
    ({"strategy": "gradual", "freeze": {"layers": 1}}, "combine with strategy=full only"),
    ({"strategy": "gradual", "gradual": {"epochs_per_stage": 0}}, "gradual.epochs_per_stage must be at least 1"),
])
def test_bad_options_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate(RunConfig(**changes))


def test_gradual_recipe_run_end_to_end(tiny_model_dir, tmp_path):
    recipe = load_recipe("sentiment")
    cfg = recipe.Config(model=tiny_model_dir, output_dir=str(tmp_path / "run"), strategy="gradual",
                        data={"max_train_samples": 24, "max_validation_samples": 12, "max_test_samples": 12,
                              "max_length": 32},
                        train={"epochs": 2, "batch_size": 8, "layer_lr_decay": 0.8, "patience": None},
                        gradual={"encoder_lr_factor": 0.5})
    results = recipe.run(cfg)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["parameters"]["trainable"] == written["parameters"]["total"]  # every weight trains by the end
    assert [epoch["epoch"] for epoch in written["epochs"]] == [1, 2]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "gradual unfreezing, epoch 1: the head and the top 0 encoder layers train" in log
    assert "gradual unfreezing, epoch 2: the head and the top 2 encoder layers and the embeddings train" in log
    assert 0 <= results.accuracy <= 1
