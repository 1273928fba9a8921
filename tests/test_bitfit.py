"""nlptransfer/strategies/bitfit.py: only the encoder's bias terms and the head train; the run saves a plain model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from torch import nn

from nlptransfer import models, strategies, tasks
from nlptransfer.config import RunConfig, validate
from nlptransfer.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # the tiny checkpoint of conftest.py
LABELS = ["neg", "neu", "pos"]
NER_LABELS = ["O", "B-company", "I-company", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
LAYER_BIASES = ["attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
                "attention.output.dense.bias", "attention.output.LayerNorm.bias", "intermediate.dense.bias",
                "output.dense.bias", "output.LayerNorm.bias"]
# the embeddings' LayerNorm; per layer q, k, v, attention output, 2 LayerNorms (hidden wide) and the feed-forward
# pair (intermediate, then hidden wide); sequence classification adds the pooler's bias
ENCODER_BIASES = HIDDEN + LAYERS * (7 * HIDDEN + INTERMEDIATE)


def head_size(labels: list[str]) -> int:
    return HIDDEN * len(labels) + len(labels)


def prepared(model_dir: str, task: str, labels: list[str]) -> nn.Module:
    model = models.load_model(model_dir, tasks.get(task), labels)
    cfg = RunConfig(model=model_dir, task=task, strategy="bitfit")
    return strategies.get("bitfit").prepare(model, validate(cfg), tasks.get(task))


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def encoder_bias_names(pooler: bool) -> list[str]:
    return (["bert.embeddings.LayerNorm.bias"]
            + [f"bert.encoder.layer.{i}.{name}" for i in range(LAYERS) for name in LAYER_BIASES]
            + (["bert.pooler.dense.bias"] if pooler else []))


@pytest.fixture(scope="module")
def classification_run(tiny_model_dir, reviews_csv, tmp_path_factory) -> Path:
    from conftest import _tiny_run

    return _tiny_run(tiny_model_dir, reviews_csv, tmp_path_factory.mktemp("bitfit") / "run", "bitfit")


@pytest.fixture(scope="module")
def ner_run(tiny_model_dir, tmp_path_factory) -> Path:
    from conftest import _tiny_ner_run

    return _tiny_ner_run(tiny_model_dir, tmp_path_factory.mktemp("bitfit-ner") / "run", "bitfit")


def test_sequence_classification_trains_the_encoder_biases_and_the_head(tiny_model_dir):
    model = prepared(tiny_model_dir, "classification", LABELS)
    assert trainable_names(model) == encoder_bias_names(pooler=True) + ["classifier.weight", "classifier.bias"]
    total = sum(p.numel() for p in model.parameters())
    assert models.count_parameters(model) == (ENCODER_BIASES + HIDDEN + head_size(LABELS), total)
    assert models.count_parameters(model)[0] == 739  # by hand: 32 + 2 * (7 * 32 + 64) + 32 + (32 * 3 + 3)


def test_token_classification_trains_the_encoder_biases_and_the_head(tiny_model_dir):
    model = prepared(tiny_model_dir, "token-classification", NER_LABELS)  # no pooler in a token head
    assert trainable_names(model) == encoder_bias_names(pooler=False) + ["classifier.weight", "classifier.bias"]
    assert models.count_parameters(model)[0] == ENCODER_BIASES + head_size(NER_LABELS) == 839


def test_a_model_without_bias_terms_is_a_one_line_error():
    class BiasFree(nn.Module):
        config = SimpleNamespace(model_type="biasfree")

        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.classifier = nn.Linear(4, 4, bias=False), nn.Linear(4, 2)

        @property
        def base_model(self) -> nn.Module:
            return self.encoder

    with pytest.raises(ConfigError, match="biasfree has none; use strategy=frozen") as error:
        strategies.get("bitfit").prepare(BiasFree(), RunConfig(strategy="bitfit"), tasks.get("classification"))
    assert "\n" not in str(error.value)


def test_options_of_other_strategies_are_refused():
    validate(RunConfig(strategy="bitfit"))
    with pytest.raises(ConfigError, match="freeze.* options combine with strategy=full only"):
        validate(RunConfig(strategy="bitfit", freeze={"layers": 1}))
    with pytest.raises(ConfigError, match="layer_lr_decay and train.head_lr work with strategy=full or gradual"):
        validate(RunConfig(strategy="bitfit", train={"layer_lr_decay": 0.8}))


def test_a_run_changes_only_the_encoder_biases(classification_run, tiny_model_dir):
    initial = dict(transformers.BertModel.from_pretrained(tiny_model_dir).named_parameters())
    saved = transformers.AutoModelForSequenceClassification.from_pretrained(str(classification_run / "model"))
    trained = dict(saved.bert.named_parameters())
    assert trained.keys() == initial.keys()
    changed = {name for name in initial if not torch.equal(initial[name], trained[name])}
    biases = {name.removeprefix("bert.") for name in encoder_bias_names(pooler=True)}
    # a key bias adds the same score to every key of a query: softmax ignores it, its gradient is ~0
    moving = {name for name in biases if not name.endswith("key.bias")}
    assert moving <= changed <= biases


def test_the_classification_run_saves_a_plain_model(classification_run):
    out = classification_run
    assert (out / "model" / "config.json").is_file() and not (out / "adapter").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == ENCODER_BIASES + HIDDEN + head_size(LABELS)
    classifier = transformers.pipeline("text-classification", model=str(out / "model"))
    predictions = classifier(["the food was great and i loved it", "awful boring film"])
    assert [p["label"] in LABELS for p in predictions] == [True, True]

    card = (out / "README.md").read_text()
    assert "- bitfit" in card.split("---")[1]  # the Hub tag
    assert "Transfer strategy: `bitfit`, BitFit: only the bias terms" in card
    assert f"| learning rate | {strategies.get('bitfit').default_lr} |" in card


def test_the_ner_run_saves_a_model_for_the_token_classification_pipeline(ner_run):
    metrics = json.loads((ner_run / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == ENCODER_BIASES + head_size(NER_LABELS)
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(ner_run / "model"))
    assert list(model.config.id2label.values()) == NER_LABELS
    tagger = transformers.pipeline("token-classification", model=str(ner_run / "model"), aggregation_strategy="first")
    entities = tagger("mary jones went to paris")
    assert all(entity["entity_group"] in {"company", "geo-loc", "person"} for entity in entities)
