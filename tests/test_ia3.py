"""nlptransfer/strategies/ia3.py: peft (IA)^3 vectors and the head train; model/ (merged) and adapter/ are saved."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from nlptransfer import models, strategies, tasks
from nlptransfer.cli.compare import strategy_list
from nlptransfer.config import RunConfig, apply_overrides, only_own_sections, validate
from nlptransfer.errors import ConfigError
from nlptransfer.outputs.export import merged_copy
from nlptransfer.predictor import load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # the tiny checkpoint of conftest.py
LABELS = ["neg", "neu", "pos"]
NER_LABELS = ["O", "B-company", "I-company", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
# peft's BERT default: key, value and every `output.dense` (attention output and feed-forward output, both
# feed-forward: scaled on their input); a vector per output feature of key and value, per input one of the others
TARGETED = ["attention.self.key", "attention.self.value", "attention.output.dense", "output.dense"]
DEFAULT_VECTORS = LAYERS * (HIDDEN + HIDDEN + HIDDEN + INTERMEDIATE)


def head_size(labels: list[str]) -> int:
    return HIDDEN * len(labels) + len(labels)


def prepared(model_dir: str, task: str = "classification", labels: list[str] = LABELS, **ia3) -> nn.Module:
    torch.manual_seed(0)
    model = models.load_model(model_dir, tasks.get(task), labels)
    cfg = validate(RunConfig(model=model_dir, task=task, strategy="ia3", ia3=ia3))
    return strategies.get("ia3").prepare(model, cfg, tasks.get(task))


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def labeled(auto_class, folder: str, labels: list[str]):
    return auto_class.from_pretrained(folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                      label2id={label: i for i, label in enumerate(labels)})


@pytest.fixture(scope="module")
def classification_run(tiny_model_dir, reviews_csv, tmp_path_factory) -> Path:
    from conftest import _tiny_run

    return _tiny_run(tiny_model_dir, reviews_csv, tmp_path_factory.mktemp("ia3") / "run", "ia3")


@pytest.fixture(scope="module")
def ner_run(tiny_model_dir, tmp_path_factory) -> Path:
    from conftest import _tiny_ner_run

    return _tiny_ner_run(tiny_model_dir, tmp_path_factory.mktemp("ia3-ner") / "run", "ia3")


@pytest.mark.parametrize(("task", "labels"), [("classification", LABELS), ("token-classification", NER_LABELS)])
def test_the_vectors_and_the_head_train(tiny_model_dir, task, labels):
    model = prepared(tiny_model_dir, task, labels)
    vectors = [f"base_model.model.bert.encoder.layer.{i}.{name}.ia3_l.default" for i in range(LAYERS)
               for name in TARGETED]
    head = ["base_model.model.classifier.modules_to_save.default.weight",
            "base_model.model.classifier.modules_to_save.default.bias"]
    assert trainable_names(model) == vectors + head
    assert models.count_parameters(model)[0] == DEFAULT_VECTORS + head_size(labels)


@pytest.mark.parametrize(("feedforward", "vectors"), [
    (["intermediate.dense"], LAYERS * (HIDDEN + HIDDEN)),  # scaled on its 32 inputs
    ([], LAYERS * (HIDDEN + INTERMEDIATE)),  # scaled on its 64 outputs
])
def test_own_target_and_feedforward_modules(tiny_model_dir, feedforward, vectors):
    model = prepared(tiny_model_dir, target_modules=["query", "intermediate.dense"], feedforward_modules=feedforward)
    assert models.count_parameters(model)[0] == vectors + head_size(LABELS)


@pytest.mark.parametrize(("task", "labels"), [("classification", LABELS), ("token-classification", NER_LABELS)])
def test_the_merged_model_gives_the_adapted_logits(tiny_model_dir, task, labels):
    model = prepared(tiny_model_dir, task, labels).eval()
    inputs = {"input_ids": torch.randint(5, 100, (3, 12)), "attention_mask": torch.ones(3, 12, dtype=torch.long)}
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # logits of order 1; biases that merging must scale
            if "modules_to_save" in name:
                parameter.normal_()
            elif name.endswith("bias"):
                parameter.normal_(std=0.1)
        before = model(**inputs).logits  # the vectors start at 1: no change yet
        for name, parameter in model.named_parameters():
            if "ia3_l" in name:
                parameter.uniform_(0.2, 2.0)
        merged = merged_copy(model).eval()
        adapted, merged_logits = model(**inputs).logits, merged(**inputs).logits
    assert type(merged).__module__.startswith("transformers.")
    assert not any("ia3" in name for name, _ in merged.named_parameters())
    assert torch.allclose(adapted, merged_logits, atol=1e-5)
    assert not torch.allclose(before, merged_logits, atol=1e-3)


def test_option_checks_are_one_line_errors(tiny_model_dir):
    cfg = apply_overrides(RunConfig(strategy="ia3"), ["ia3.target_modules=[key,value]"])
    assert validate(cfg).ia3.target_modules == ["key", "value"]
    for ia3, message in [({"target_modules": []}, "ia3.target_modules must name at least one module"),
                         ({"target_modules": ["key", "value"], "feedforward_modules": ["output.dense"]},
                          "ia3.feedforward_modules must be a subset of ia3.target_modules")]:
        with pytest.raises(ConfigError, match=message) as error:
            validate(RunConfig(strategy="ia3", ia3=ia3))
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"cannot add IA3 to bert: .*set ia3.target_modules=\[...\]") as error:
        prepared(tiny_model_dir, target_modules=["no_such_module"])
    assert "\n" not in str(error.value)


def test_ia3_options_are_refused_under_another_strategy():
    with pytest.raises(ConfigError, match=r"ia3.\* options combine with strategy=ia3 only"):
        validate(RunConfig(strategy="lora", ia3={"target_modules": ["key"]}))


def test_compare_takes_bitfit_and_ia3():
    assert strategy_list("bitfit,ia3") == ["bitfit", "ia3"]
    cfg = RunConfig(strategy="ia3", ia3={"target_modules": ["key", "value"], "feedforward_modules": []})
    for name in strategy_list("bitfit,ia3"):  # as compare validates each strategy's config before training
        validate(only_own_sections(dataclasses.replace(cfg, strategy=name)))


def test_the_classification_run_saves_the_adapter_and_the_merged_model(classification_run, tiny_model_dir):
    out = classification_run
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "IA3" and adapter_config["task_type"] == "SEQ_CLS"
    assert "classifier" in adapter_config["modules_to_save"]  # peft adds its own guesses (score, ...)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == DEFAULT_VECTORS + head_size(LABELS)

    from peft import PeftModel

    base = labeled(transformers.AutoModelForSequenceClassification, tiny_model_dir, LABELS)
    adapted = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(str(out / "model")).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out / "model"))
    inputs = tokenizer(["the food was great and i loved it", "awful boring film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted(**inputs).logits, merged(**inputs).logits, atol=1e-5)

    initial = dict(transformers.BertModel.from_pretrained(tiny_model_dir).named_parameters())
    trained = dict(merged.bert.named_parameters())
    changed = {name for name in initial if not torch.equal(initial[name], trained[name])}
    # merging scales the weights of the targeted layers (and the biases of key and value, 0 in the random BERT)
    assert changed == {f"encoder.layer.{i}.{name}.weight" for i in range(LAYERS) for name in TARGETED}


def test_the_classification_run_predicts(classification_run):
    texts = ["the food was great and i loved it", "awful boring film"]
    from_model, from_adapter = (load_model(folder).predict(texts, all_scores=True)
                                for folder in (classification_run, classification_run / "adapter"))
    assert all(row["label"] in LABELS for row in from_model)
    assert [row["label"] for row in from_model] == [row["label"] for row in from_adapter]
    for merged_row, adapter_row in zip(from_model, from_adapter):
        assert merged_row["scores"] == pytest.approx(adapter_row["scores"], abs=1e-5)

    card = (classification_run / "README.md").read_text()
    tags = card.split("---")[1]
    assert "- ia3" in tags and "- peft" in tags
    assert f"| learning rate | {strategies.get('ia3').default_lr} |" in card
    assert "| IA3 target modules | peft default for the architecture |" in card
    assert "The IA3 vectors are merged into the model weights" in card


def test_the_ner_run_saves_a_token_adapter_and_a_merged_model(ner_run):
    adapter_config = json.loads((ner_run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "IA3" and adapter_config["task_type"] == "TOKEN_CLS"
    metrics = json.loads((ner_run / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == DEFAULT_VECTORS + head_size(NER_LABELS)
    tagger = transformers.pipeline("token-classification", model=str(ner_run / "model"), aggregation_strategy="first")
    assert all(entity["entity_group"] in {"company", "geo-loc", "person"}
               for entity in tagger("mary jones went to paris"))
    predicted = load_model(ner_run).predict("mary jones went to paris")
    assert len(predicted) == 1 and "entities" in predicted[0]


def test_the_vectors_get_no_weight_decay(tiny_model_dir):
    # decay would pull the scaling vectors towards 0 instead of their start, 1
    from accelerate import Accelerator

    from nlptransfer.engine.loop import build_optimizer

    model = prepared(tiny_model_dir)
    cfg = RunConfig(model=tiny_model_dir, strategy="ia3")
    settings, _ = strategies.get("ia3").optimization(model, cfg, 3e-3, Accelerator(cpu=True))
    optimizer = build_optimizer(model, settings.lr, 0.01, settings.lr_scales, settings.no_decay)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    vectors = [p for name, p in model.named_parameters() if "ia3_l" in name]
    assert vectors and all(decay_of[id(p)] == 0.0 for p in vectors)
    head_weights = [p for name, p in model.named_parameters()
                    if p.requires_grad and name.endswith("classifier.modules_to_save.default.weight")]
    assert head_weights and all(decay_of[id(p)] == 0.01 for p in head_weights)
