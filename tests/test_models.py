"""nlptransfer/models.py: loading with a new head, and the trainable parameters of each strategy."""

from __future__ import annotations

import time

import pytest
import torch

from nlptransfer import models, strategies, tasks
from nlptransfer.config import RunConfig
from nlptransfer.errors import ConfigError, ModelError
from nlptransfer.outputs.export import merged_copy

LABELS = ["neg", "neu", "pos"]
HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # the tiny checkpoint of conftest.py
HEAD = HIDDEN * len(LABELS) + len(LABELS)


@pytest.fixture
def load(tiny_model_dir):
    def load_with(**changes):
        torch.manual_seed(0)
        model = models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)
        cfg = RunConfig(model=tiny_model_dir, **changes)
        return model, strategies.get(cfg.strategy).prepare(model, cfg, tasks.get(cfg.task))

    return load_with


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def trainable_names(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_load_model_stores_the_labels(tiny_model_dir):
    model = models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)
    sizes = model.config
    assert (sizes.hidden_size, sizes.intermediate_size, sizes.num_hidden_layers) == (HIDDEN, INTERMEDIATE, LAYERS)
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert model.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert model.classifier.out_features == 3
    assert models.head_module_names(model) == ["classifier"]


def test_full_trains_everything(load):
    model, adapted = load(strategy="full")
    assert adapted is model
    assert models.count_parameters(adapted) == (numel(model), numel(model))
    assert numel(model) == numel(model.bert) + HEAD


def test_frozen_trains_only_the_head(load):
    model, adapted = load(strategy="frozen")
    assert models.count_parameters(adapted) == (HEAD, numel(model))
    assert trainable_names(adapted) == ["classifier.weight", "classifier.bias"]


def test_lora_trains_adapters_on_query_and_value_and_the_head(load):
    model, adapted = load(strategy="lora")
    rank = RunConfig().lora.r
    adapters = LAYERS * 2 * rank * (HIDDEN + HIDDEN)  # per layer: query and value, A (r x in) + B (out x r)
    trainable, total = models.count_parameters(adapted)
    assert trainable == adapters + HEAD
    # peft adapted `model` in place: it now holds the adapters, the head and peft's frozen copy of
    # the head, which is not counted.
    assert total == numel(model) - HEAD
    lora_names = [n for n in trainable_names(adapted) if "lora_" in n]
    assert len(lora_names) == LAYERS * 2 * 2
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora_names} == {"query", "value"}
    head_names = [n for n in trainable_names(adapted) if "lora_" not in n]
    assert all("classifier" in n for n in head_names) and len(head_names) == 2


def test_lora_settings_change_the_count(load):
    _, adapted = load(strategy="lora", lora={"r": 2, "target_modules": ["query", "key", "value", "dense"]})
    # per layer query, key, value and three `dense`: attention output (h->h), intermediate (h->i),
    # output (i->h); once more the pooler's `dense` (h->h)
    h, i, r = HIDDEN, INTERMEDIATE, 2
    per_layer = 3 * r * (h + h) + r * (h + h) + r * (h + i) + r * (i + h)
    assert models.count_parameters(adapted)[0] == LAYERS * per_layer + r * (h + h) + HEAD


def test_lora_with_unknown_target_modules_is_a_config_error(load):
    with pytest.raises(ConfigError, match="lora.target_modules"):
        load(strategy="lora", lora={"target_modules": ["no_such_projection"]})


def test_freeze_embeddings(load):
    model, adapted = load(strategy="full", freeze={"embeddings": True})
    assert models.count_parameters(adapted) == (numel(model) - numel(model.bert.embeddings), numel(model))


def test_freeze_bottom_layer(load):
    model, adapted = load(strategy="full", freeze={"layers": 1})
    frozen = numel(model.bert.embeddings) + numel(model.bert.encoder.layer[0])
    assert models.count_parameters(adapted) == (numel(model) - frozen, numel(model))
    assert not any(n.startswith("bert.encoder.layer.0.") for n in trainable_names(adapted))
    assert any(n.startswith("bert.encoder.layer.1.") for n in trainable_names(adapted))


def test_freezing_more_layers_than_the_model_has(load):
    with pytest.raises(ConfigError, match="freeze.layers=3 but the model has 2 layers"):
        load(strategy="full", freeze={"layers": 3})


def test_merged_copy_gives_the_same_logits_and_leaves_the_original(load, tiny_model_dir):
    _, adapted = load(strategy="lora")
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # B starts at zero: make the update visible
    adapted.eval()
    inputs = {"input_ids": torch.tensor([[2, 10, 20, 30, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    merged = merged_copy(adapted)
    merged.eval()
    assert type(merged).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        assert torch.allclose(adapted(**inputs).logits, merged(**inputs).logits, atol=1e-5)
    assert any("lora_" in n for n, _ in adapted.named_parameters())


def test_default_learning_rates():
    lr = {name: strategies.get(name).default_lr for name in strategies.names()}
    assert lr["full"] < lr["lora"] < lr["frozen"]


@pytest.mark.parametrize("name", ["/no/such/folder", "nobody/no-such-model"])
def test_unloadable_model_is_a_model_error_with_a_fix(name):
    for load_it in (models.load_tokenizer, lambda n: models.load_model(n, tasks.get("classification"), LABELS)):
        started = time.perf_counter()
        with pytest.raises(ModelError) as error:
            load_it(name)
        assert time.perf_counter() - started < 5  # HF_HUB_OFFLINE=1: no network retries
        message = str(error.value)
        assert f"cannot load model '{name}'" in message
        assert "model=minilm" in message and "\n" not in message
        assert ("folder does not exist" in message) == name.startswith("/")


def test_folder_without_a_checkpoint_is_a_model_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="config.json"):
        models.load_model(str(tmp_path), tasks.get("classification"), LABELS)
