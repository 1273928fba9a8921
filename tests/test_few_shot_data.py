"""Small data handled as small data: `data.examples_per_class` (a seeded sample of exactly N per class,
`data/splits.sample_per_class`) and runs without a validation split (few-shot data, or
`data.validation_fraction=0`), which train for a fixed budget and keep the last epoch."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_logs

from nlptransfer.config import DataConfig, RunConfig, TrainConfig, validate
from nlptransfer.data.classification import load_classification
from nlptransfer.data.splits import sample_per_class
from nlptransfer.engine.callbacks import EarlyStopping
from nlptransfer.engine.loop import Callback
from nlptransfer.errors import ConfigError, DataError
from nlptransfer.pipeline import Inputs, loop_callbacks, run

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = Path(__file__).parent / "assets" / "topics_multilabel.jsonl"
LABELS = ["pos"] * 10 + ["neg"] * 7 + ["neu"] * 5 + ["pos", "neg"] * 3


def test_sample_per_class_keeps_exactly_n_of_each_class_sorted():
    rows = sample_per_class(LABELS, 4, seed=0)
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert Counter(LABELS[i] for i in rows) == {"pos": 4, "neg": 4, "neu": 4}


def test_sample_per_class_is_seeded_and_ignores_the_global_rng():
    first = sample_per_class(LABELS, 3, seed=7)
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    np.random.rand(5)
    assert sample_per_class(LABELS, 3, seed=7) == first
    assert sample_per_class(tuple(LABELS), 3, seed=7) == first  # any sequence of labels
    assert sample_per_class(LABELS, 3, seed=8) != first


def test_a_smaller_sample_is_part_of_a_larger_one_for_the_same_seed():
    for seed in (0, 1, 2):
        assert set(sample_per_class(LABELS, 2, seed)) <= set(sample_per_class(LABELS, 5, seed))


def test_multilabel_rows_count_for_their_rarest_label():
    # 'a' is on every row, 'b' on four, 'c' on two: rows (a, c) are c's stratum, (a, b) rows b's, (a,) a's
    rows = [("a", "b"), ("a", "b"), ("a", "c"), ("a",), ("a", "b"), ("a", "c"), ("a",), ("a", "b")]
    kept = sample_per_class(rows, 2, seed=3)
    assert Counter(min(rows[i], key=lambda label: (sum(label in r for r in rows), label)) for i in kept) \
        == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(DataError, match="label 'a' is the rarest label of only 2 training examples; "
                                        "set data.examples_per_class=2 or less"):
        sample_per_class(rows, 3, seed=3)


def test_an_n_larger_than_the_rarest_class_names_the_class_its_count_and_the_fix(reviews_csv):
    # 20 per class; the test split (10%) takes 2 of each, leaving 18
    with pytest.raises(DataError) as caught:
        load_classification(DataConfig(train_file=str(reviews_csv), examples_per_class=19), seed=0)
    message = str(caught.value)
    assert "\n" not in message
    assert message == ("data.examples_per_class=19 but class 'neg' has only 18 training examples; "
                       "set data.examples_per_class=18 or less")
    data = load_classification(DataConfig(train_file=str(reviews_csv), examples_per_class=18), seed=0)
    assert Counter(data.train.labels) == {0: 18, 1: 18, 2: 18}


def test_few_shot_data_has_no_validation_split_unless_a_file_gives_one(reviews_csv, tmp_path):
    data = load_classification(DataConfig(train_file=str(reviews_csv), examples_per_class=3), seed=5)
    assert len(data.validation) == 0 and data.validation.texts == [] and len(data.test) == 6
    assert Counter(data.train.labels) == {0: 3, 1: 3, 2: 3}
    same = load_classification(DataConfig(train_file=str(reviews_csv), examples_per_class=3), seed=5)
    assert same.train.texts == data.train.texts
    lines = reviews_csv.read_text().splitlines()
    train, held_out = tmp_path / "train.csv", tmp_path / "validation.csv"
    train.write_text("\n".join([lines[0]] + lines[1:46]) + "\n")
    held_out.write_text("\n".join([lines[0]] + lines[46:]) + "\n")
    given = load_classification(DataConfig(train_file=str(train), validation_file=str(held_out),
                                           examples_per_class=2), seed=5)
    assert len(given.validation) == 15 and len(given.train) == 2 * len(given.label_names)


def test_validation_fraction_zero_means_no_validation_split(reviews_csv):
    data = load_classification(DataConfig(train_file=str(reviews_csv), validation_fraction=0), seed=0)
    assert (len(data.train), len(data.validation), len(data.test)) == (54, 0, 6)


def test_examples_per_class_checks(tiny_model_dir):
    def cfg(**data) -> RunConfig:
        return RunConfig(model=tiny_model_dir, data=DataConfig(train_file="x.csv", **data))

    validate(cfg(examples_per_class=0))
    validate(cfg(examples_per_class=4, max_train_samples=100))  # the sample is drawn from the limited split
    with pytest.raises(ConfigError, match="data.examples_per_class must be 0 or more"):
        validate(cfg(examples_per_class=-1))


def test_the_per_class_sample_is_drawn_from_the_limited_training_split(reviews_csv):
    data = load_classification(DataConfig(train_file=str(reviews_csv), max_train_samples=30, examples_per_class=3),
                               seed=0)
    assert len(data.train) == 9 and len(data.validation) == 0


def test_no_early_stopping_without_a_validation_split(tiny_model_dir, tmp_path):
    cfg = RunConfig(model=tiny_model_dir, train=TrainConfig(patience=1))
    with_validation = loop_callbacks(cfg, None, None, [], validation=True)
    assert any(isinstance(c, EarlyStopping) for c in with_validation)
    assert not any(isinstance(c, EarlyStopping) for c in loop_callbacks(cfg, None, None, [], validation=False))


class LastWeights(Callback):
    """The trainable weights as the last epoch left them, before `fit` puts any best epoch back."""

    def on_fit_end(self, loop) -> None:
        self.weights = {n: p.detach().clone() for n, p in loop.model.named_parameters() if p.requires_grad}


def tiny_cfg(model: str, out: Path, strategy: str = "full", epochs: int = 2, **data) -> RunConfig:
    return RunConfig(model=model, strategy=strategy, output_dir=str(out), data=DataConfig(max_length=16, **data),
                     train=TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, patience=1))


def test_a_few_shot_run_trains_a_fixed_budget_and_keeps_the_last_epoch(tiny_model_dir, reviews_csv, tmp_path,
                                                                       caplog):
    last = LastWeights()
    out = tmp_path / "run"
    with run_logs(caplog):
        results = run(tiny_cfg(tiny_model_dir, out, epochs=3, train_file=str(reviews_csv), examples_per_class=2),
                      Inputs(callbacks=[last]))
    assert ("no validation split (few-shot: 6 training examples): training for a fixed 3 epochs and keeping the "
            "last; give data.validation_file to pick the best epoch") in caplog.messages
    epoch_lines = [m for m in caplog.messages if m.startswith("epoch ")]
    assert len(epoch_lines) == 3 and all("validation" not in m and m.endswith("s)") for m in epoch_lines)
    assert [entry["validation"] for entry in results.history] == [{}, {}, {}]  # patience=1 stopped nothing
    assert results.timing["best_epoch"] == 3
    trained = dict(results.model.named_parameters())
    assert all(torch.equal(trained[name], weights) for name, weights in last.weights.items())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["examples"] == {"train": 6, "validation": 0, "test": 6}
    assert set(metrics["epochs"][0]) >= {"epoch", "train_loss", "validation", "train_loss_curve"}


def test_frozen_runs_without_a_validation_split(tiny_model_dir, reviews_csv, tmp_path, caplog):
    with run_logs(caplog):
        results = run(tiny_cfg(tiny_model_dir, tmp_path / "run", strategy="frozen", train_file=str(reviews_csv),
                               validation_fraction=0))
    assert any(m.startswith("no validation split (data.validation_fraction=0): training for a fixed 2 epochs")
               for m in caplog.messages)
    assert [entry["validation"] for entry in results.history] == [{}, {}]
    assert results.timing["best_epoch"] == 2 and 0 <= results.test_metrics["accuracy"] <= 1


def test_multilabel_without_a_validation_split_uses_thresholds_of_one_half(tiny_model_dir, tmp_path, caplog):
    with run_logs(caplog):
        cfg = tiny_cfg(tiny_model_dir, tmp_path / "run", epochs=1, train_file=str(TOPICS), label_column="labels",
                       examples_per_class=2)
        cfg.task = "multilabel"
        results = run(cfg)
    assert any(m.startswith("thresholds could not be tuned: no validation split") and "threshold=0.5" in m
               for m in caplog.messages)
    assert not any(m.startswith("thresholds tuned") for m in caplog.messages)
    thresholds = [row["threshold"] for row in results.test_metrics["per_class"].values()]
    assert thresholds and all(t == 0.5 for t in thresholds)
    assert [entry["validation"] for entry in results.history] == [{}]


class StopAfterSecondEpoch(Callback):
    """As if the run were killed right after its second epoch's checkpoint."""

    def on_epoch_end(self, loop, metrics, train_loss, improved):
        if loop.state.epoch == 3:
            raise KeyboardInterrupt


def test_a_resumed_run_without_validation_keeps_its_last_epoch_not_the_checkpoint_s(tiny_model_dir, reviews_csv,
                                                                                     tmp_path):
    cfg = tiny_cfg(tiny_model_dir, tmp_path / "run", epochs=3, train_file=str(reviews_csv), examples_per_class=2)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, Inputs(callbacks=[StopAfterSecondEpoch()]))
    cfg.resume, last = "auto", LastWeights()
    results = run(cfg, Inputs(callbacks=[last]))
    assert len(results.history) == 3 and results.timing["best_epoch"] == 3
    trained = dict(results.model.named_parameters())
    assert all(torch.equal(trained[name], weights) for name, weights in last.weights.items())
