"""The built-in recipes end to end on CPU: a tiny checkpoint and tiny slices of the packaged corpora.

Each run is asserted on what it wrote. One test fine-tunes the real packaged MiniLM on a small
sample and must beat the majority-class baseline clearly: the transfer actually transfers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from nlptransfer import load_recipe
from nlptransfer.config import load_yaml
from nlptransfer.data.classification import load_classification
from nlptransfer.engine import precision

TINY_SLICES = {"max_train_samples": 24, "max_validation_samples": 12, "max_test_samples": 12, "max_length": 32}
TINY_TRAIN = {"epochs": 1, "batch_size": 8}
LABELS = {
    "sentiment": ["negative", "neutral", "positive"],
    "topic": ["business", "entertainment", "politics", "sports", "tech"],
}


def tiny_config(recipe, model: str, output_dir: Path, **changes):
    return recipe.Config(model=model, output_dir=str(output_dir),
                         data=TINY_SLICES | changes.pop("data", {}), train=TINY_TRAIN | changes.pop("train", {}),
                         **changes)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["full", "frozen", "lora"])
@pytest.mark.parametrize("name", ["sentiment", "topic"])
def test_recipe_end_to_end(name, strategy, tiny_model_dir, tmp_path):
    recipe = load_recipe(name)
    cfg = tiny_config(recipe, tiny_model_dir, tmp_path / "run", strategy=strategy)
    results = recipe.run(cfg)
    out = tmp_path / "run"
    assert results.output_dir == out

    assert load_yaml(recipe.Config(), out / "config.yaml") == precision.resolved(cfg)[0]  # auto written as chosen

    written = json.loads((out / "metrics.json").read_text())
    assert 0 <= written["test"]["accuracy"] <= 1
    assert written["test"]["accuracy"] == results.accuracy
    assert list(written["test"]["per_class"]) == LABELS[name]
    assert [epoch["epoch"] for epoch in written["epochs"]] == [1]
    assert 0 <= written["epochs"][0]["validation"]["accuracy"] <= 1
    assert set(written["baselines"]) - {"majority_tied_classes"} == {"majority_accuracy", "tfidf_logreg_accuracy"}
    trainable, total = written["parameters"]["trainable"], written["parameters"]["total"]
    head = 32 * len(LABELS[name]) + len(LABELS[name])
    expected_trainable = {"full": total, "frozen": head, "lora": 2 * 2 * 8 * (32 + 32) + head}[strategy]
    assert trainable == expected_trainable
    assert written["timing"]["optimizer_steps"] == 3  # 24 examples in batches of 8

    test_split = load_classification(cfg.data, cfg.seed).test
    predictions = read_jsonl(out / "predictions.jsonl")
    assert len(predictions) == len(test_split) == 12
    assert [row["text"] for row in predictions] == test_split.texts
    assert [row["label"] for row in predictions] == [LABELS[name][i] for i in test_split.labels]
    for row in predictions:
        assert set(row) == {"text", "label", "predicted", "score"}
        assert row["predicted"] in LABELS[name]
        assert 1 / len(LABELS[name]) <= row["score"] <= 1
    hits = np.mean([row["label"] == row["predicted"] for row in predictions])
    assert hits == pytest.approx(results.accuracy)

    classify = transformers.pipeline("text-classification", model=str(out / "model"), device="cpu")
    outputs = classify([row["text"] for row in predictions[:3]], truncation=True, max_length=32)
    assert [o["label"] for o in outputs] == [row["predicted"] for row in predictions[:3]]

    assert (out / "adapter").is_dir() == (strategy == "lora")
    assert [p.name for p in out.glob(".*")] == [".nlptransfer.json"]  # the marker; no staging leftovers


def test_lora_adapter_matches_the_merged_model(tiny_model_dir, tmp_path):
    from peft import PeftModel

    recipe = load_recipe("sentiment")
    results = recipe.run(tiny_config(recipe, tiny_model_dir, tmp_path / "run", strategy="lora",
                                     train={"lr": 5e-2}))  # a large step, so the adapter differs from zero
    labels = LABELS["sentiment"]
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with_adapter = PeftModel.from_pretrained(base, str(results.adapter_dir)).eval()
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(str(results.model_dir)).eval()
    untrained = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=len(labels)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(results.adapter_dir))
    inputs = tokenizer(["what a great day", "i hate this phone", "the news today"], padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        adapted_logits = with_adapter(**inputs).logits
        merged_logits = merged(**inputs).logits
        untrained_logits = untrained(**inputs).logits
    assert torch.allclose(adapted_logits, merged_logits, atol=1e-5)
    assert not torch.allclose(merged_logits, untrained_logits, atol=1e-3)
    assert merged.config.id2label == dict(enumerate(labels))


def test_same_config_gives_the_same_results(tiny_model_dir, tmp_path):
    recipe = load_recipe("sentiment")
    first, second = (recipe.run(tiny_config(recipe, tiny_model_dir, tmp_path / f"run{i}", train={"epochs": 2}))
                     for i in (1, 2))
    assert first.test_metrics == second.test_metrics
    assert [e["validation"] for e in first.history] == [e["validation"] for e in second.history]
    assert [e["train_loss"] for e in first.history] == [e["train_loss"] for e in second.history]
    predictions = [(r.output_dir / "predictions.jsonl").read_text() for r in (first, second)]
    assert predictions[0] == predictions[1]


def test_early_stopping_keeps_the_best_epoch(tiny_model_dir, tmp_path, reviews_csv):
    recipe = load_recipe("sentiment")
    cfg = tiny_config(recipe, tiny_model_dir, tmp_path / "run", data={"name": None, "train_file": str(reviews_csv)},
                      train={"epochs": 3, "patience": 1, "lr": 1e-3})
    results = recipe.run(cfg)
    validation = [epoch["validation"]["accuracy"] for epoch in results.history]
    assert 1 <= len(validation) <= 3
    best_epoch = results.timing["best_epoch"]
    assert best_epoch == int(np.argmax(validation)) + 1
    if len(validation) < 3:  # stopped early: the last epoch brought no gain
        assert validation[-1] <= max(validation[:-1])
    written = json.loads((results.output_dir / "metrics.json").read_text())
    assert written["timing"]["best_epoch"] == best_epoch and len(written["epochs"]) == len(validation)

    # the saved model is the best epoch's: it scores that epoch's validation accuracy
    data = load_classification(cfg.data, cfg.seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(results.model_dir)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(results.model_dir))
    inputs = tokenizer(data.validation.texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**inputs).logits.argmax(-1).tolist()
    assert np.mean(np.array(predicted) == np.array(data.validation.labels)) == pytest.approx(validation[best_epoch - 1])


def test_minilm_beats_the_majority_baseline(tmp_path):
    recipe = load_recipe("sentiment")
    cfg = recipe.Config(
        model="minilm", output_dir=str(tmp_path / "run"),
        data={"max_train_samples": 600, "max_validation_samples": 200, "max_test_samples": 400, "max_length": 48},
        train={"epochs": 2, "batch_size": 16},
    )
    results = recipe.run(cfg)
    assert results.accuracy >= results.baselines["majority_accuracy"] + 0.08, (results.accuracy, results.baselines)
