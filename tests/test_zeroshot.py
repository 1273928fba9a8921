"""strategy=zeroshot and templated examples: label prompts, similarity predictions, refusals."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import run_logs

from nlptransfer.api import run
from nlptransfer.config import RunConfig
from nlptransfer.errors import ConfigError, DataError
from nlptransfer.strategies import descriptions

SPORT = ["match goal win", "player season team", "game won lost"]
MONEY = ["market price stock", "bank money company", "price market bank"]


def frame(repeat: int = 4) -> pd.DataFrame:
    texts = [f"{text} {i}" for i in range(repeat) for text in SPORT + MONEY]
    labels = [label for _ in range(repeat) for label in ["sport"] * 3 + ["money"] * 3]
    return pd.DataFrame({"text": texts, "label": labels})


def test_each_text_gets_the_label_whose_description_it_matches(tiny_model_dir, tmp_path, caplog):
    """A constructed case: each test text repeats one description's words, so its embedding is that prompt's."""
    train = frame()
    test = pd.DataFrame({"text": ["match goal win", "market price stock", "player season team",
                                  "bank money company"], "label": ["sport", "money", "sport", "money"]})
    with run_logs(caplog):
        results = run(model=tiny_model_dir, strategy="zeroshot", data={"train": train, "test": test},
                      output_dir=str(tmp_path / "run"), data_options={"max_length": 16}, train={"epochs": 7, "lr": 0.5},
                      labels={"template": "{}", "descriptions": {"sport": "match goal win player season team",
                                                                  "money": "market price stock bank money company"}})
    assert "strategy=zeroshot trains nothing: train.epochs=7, train.lr=0.5 not used" in caplog.text
    assert [row["predicted"] for row in results.predictions] == ["sport", "money", "sport", "money"]
    assert results.parameters["trainable"] == 0
    metrics = json.loads((results.output_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0
    assert "without training (zero-shot)" in (results.output_dir / "README.md").read_text()
    assert results.predict(["match goal win"])[0]["label"] == "sport"
    assert "below the majority class" not in caplog.text


def test_calibration_subtracts_each_labels_mean_similarity_over_the_training_texts(tiny_model_dir, tmp_path):
    import torch

    labels = {"template": "{}", "descriptions": {"sport": "match goal", "money": "market price"}}
    test = pd.DataFrame({"text": ["match goal win", "market price stock"], "label": ["sport", "money"]})
    calibrated = run(model=tiny_model_dir, strategy="zeroshot", data={"train": frame(), "test": test},
                     output_dir=str(tmp_path / "a"), data_options={"max_length": 16, "validation_fraction": 0},
                     labels=labels, zeroshot={"calibrate": 1000, "scale": 10})
    model, tokenizer = calibrated.model, calibrated.tokenizer
    with torch.no_grad():
        texts = model.embed(**tokenizer(frame()["text"].tolist(), padding=True, return_tensors="pt"))
        similarity = torch.nn.functional.normalize(texts, dim=-1) @ model.score.weight.T / 10
    torch.testing.assert_close(model.score.bias, -10 * similarity.mean(0), atol=1e-4, rtol=1e-4)
    assert model.score.bias.abs().min() > 0
    plain = run(model=tiny_model_dir, strategy="zeroshot", data={"train": frame(), "test": test},
                output_dir=str(tmp_path / "b"), data_options={"max_length": 16, "validation_fraction": 0},
                labels=labels, zeroshot={"calibrate": 0, "scale": 10})
    assert plain.model.score.bias.abs().max() == 0
    torch.testing.assert_close(plain.model.score.weight, model.score.weight)


def test_a_run_below_the_majority_class_says_so(tiny_model_dir, tmp_path, caplog):
    """Descriptions swapped: every text gets the other label, worse than always answering one label."""
    test = pd.DataFrame({"text": ["match goal win", "market price stock"], "label": ["sport", "money"]})
    with run_logs(caplog):
        results = run(model=tiny_model_dir, strategy="zeroshot", data={"train": frame(), "test": test},
                      output_dir=str(tmp_path / "run"), data_options={"max_length": 16},
                      labels={"template": "{}", "descriptions": {"money": "match goal win player season team",
                                                                  "sport": "market price stock bank money company"}})
    assert results.test_metrics["accuracy"] == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("test accuracy 0.0000 is below the majority class's 0.5000" in w and "labels.descriptions" in w
               for w in warnings)


def test_only_training_options_set_away_from_the_recipes_defaults_are_unused():
    from nlptransfer.api import load_recipe
    from nlptransfer.strategies.zeroshot import ZeroShot, set_options

    recipe, unused = load_recipe("sentiment").Config, ZeroShot().unused_train_options(RunConfig())
    assert set_options(recipe(strategy="zeroshot"), unused) == []  # its own defaults are no user's choice
    changed = recipe(strategy="zeroshot", train={"max_steps": 5, "eval_batch_size": 8})
    assert set_options(changed, unused) == ["train.max_steps=5"]  # the test split is scored in batches of 8


def test_label_prompts_follow_the_template_and_the_descriptions():
    cfg = RunConfig(labels={"descriptions": {"pos": "something good"}, "template": "It is {}!"})
    assert descriptions.label_prompts(["neg", "pos"], cfg) == [["It is neg!"], ["It is something good!"]]


def test_alternatives_give_every_template_around_every_description():
    cfg = RunConfig(labels={"descriptions": {"pos": "good | fine |"}, "template": "A {}. | B {}."})
    assert descriptions.label_prompts(["neg", "pos"], cfg) == [["A neg.", "B neg."],
                                                               ["A good.", "A fine.", "B good.", "B fine."]]


def test_a_labels_row_is_the_normalized_mean_of_its_prompts_unit_embeddings():
    import numpy as np

    rows = descriptions.mean_rows(np.array([[2.0, 0.0], [0.0, 5.0], [3.0, 0.0]]), [2, 1])
    np.testing.assert_allclose(rows, [[2 ** -0.5, 2 ** -0.5], [1.0, 0.0]])


def test_a_recipes_own_descriptions_leave_labels_it_does_not_know_to_their_names():
    from nlptransfer.api import load_recipe

    recipe = load_recipe("sentiment").Config
    prompts = descriptions.label_prompts(["good", "positive"], recipe())
    assert prompts[0] == ["This tweet is good."] and "This tweet is happy." in prompts[1]
    with pytest.raises(ConfigError, match="names negative, neutral, which the data does not have"):
        descriptions.label_prompts(["good", "positive"], recipe(labels={"descriptions": {
            "negative": "sad", "neutral": "news", "positive": "happy"}}))


@pytest.mark.parametrize("labels, names, error, expected", [
    ({"descriptions": {"sprot": "x"}}, ["sport", "money"], ConfigError, "names sprot, which the data does not have"),
    ({}, ["0", "1"], DataError, "the labels 0, 1 are not words"),
    ({"template": "no placeholder"}, ["a", "b"], ConfigError, "must mark the description's place"),
])
def test_bad_descriptions_are_one_line_errors(labels, names, error, expected):
    with pytest.raises(error, match=expected):
        descriptions.label_prompts(names, RunConfig(labels=labels))


def test_templated_examples_join_the_training_split(tiny_model_dir, tmp_path, caplog):
    with run_logs(caplog):
        results = run(model=tiny_model_dir, strategy="contrastive", data=frame(), output_dir=str(tmp_path / "run"),
                      data_options={"max_length": 16, "examples_per_class": 1},
                      contrastive={"epochs": 1, "batch_size": 4, "synthetic_per_class": 3})
    assert "added 6 templated examples (3 per label) to 2 labeled training examples" in caplog.text
    metrics = json.loads((results.output_dir / "metrics.json").read_text())
    assert metrics["data"]["examples"]["train"] == 8


def test_a_cold_start_trains_on_templated_examples_alone(tiny_model_dir, tmp_path):
    results = run(model=tiny_model_dir, strategy="contrastive", data=frame(), output_dir=str(tmp_path / "run"),
                  data_options={"max_length": 16, "examples_per_class": 0},
                  contrastive={"epochs": 1, "batch_size": 4, "synthetic_per_class": 2})
    metrics = json.loads((results.output_dir / "metrics.json").read_text())
    assert metrics["data"]["label_names"] == ["money", "sport"]
    assert metrics["data"]["examples"]["train"] == 4  # the templated examples only
    assert len(results.predictions) == metrics["data"]["examples"]["test"] > 0
