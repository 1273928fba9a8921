"""Continual learning (`nlptransfer.stages`, `python -m nlptransfer.continual`): the accuracy matrix's summaries by
hand, the replay buffer, EWC's Fisher diagonal and penalty by hand, a grown head, adapters leaving the encoder and
earlier stages untouched, a 2-stage sequence killed at its second stage and resumed, adding a class to a run."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import write
from torch import nn

from nlptransfer.options import DataConfig, TrainConfig
from nlptransfer.stages import methods, scores, sequence
from nlptransfer.stages.settings import ContinualConfig, ReplaySettings, StageConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_matrix_summaries_on_a_hand_made_matrix():
    matrix = [[0.9, 0.1, 0.2],
              [0.6, 0.8, 0.3],
              [0.5, 0.7, 0.9]]
    before = [0.3, 0.2, 0.1]
    assert scores.average_accuracy(matrix) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert scores.backward_transfer(matrix) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert scores.forgetting(matrix) == [pytest.approx(0.4), pytest.approx(0.1), None]
    assert scores.average_forgetting(matrix) == pytest.approx(0.25)
    assert scores.forward_transfer(matrix, before) == pytest.approx(((0.1 - 0.2) + (0.3 - 0.1)) / 2)
    assert scores.backward_transfer([[0.7]]) is None and scores.forward_transfer([[0.7]], [0.1]) is None


def test_the_replay_buffer_takes_n_per_stage_seeded_over_its_labels():
    labels = ["a"] * 10 + ["b"] * 4 + ["c"] * 6
    picked = methods.replay_indices(labels, 6, seed=1)
    assert len(picked) == 6 and picked == methods.replay_indices(labels, 6, seed=1)
    assert Counter(labels[i] for i in picked) == {"a": 2, "b": 2, "c": 2}
    assert methods.replay_indices(labels, 6, seed=2) != picked
    assert methods.replay_indices(labels, 50, seed=1) == list(range(20))
    assert methods.replay_indices(labels, 0, seed=1) == []


def test_a_balanced_buffer_repeats_each_label_up_to_the_new_stages_share():
    labels = ["a", "b", "a", "c", "c", "c"]
    assert methods.balanced(labels, 4) == [0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5]  # a: 0,2,0,2; b: 1 x4; c: 3,4,5,3
    picked = methods.balanced(labels, 4)
    assert Counter(labels[i] for i in picked) == {"a": 4, "b": 4, "c": 4}
    assert methods.balanced(labels, 0) == list(range(6))  # replay.balance=false: each stored example once
    assert methods.balanced(labels, 2) == [0, 1, 1, 2, 3, 4, 5]  # c keeps its 3, b doubles


class Logistic(nn.Module):
    """p(y=1|x) = sigmoid(w . x): its log-likelihood gradient is (y - p) x, by hand."""

    def __init__(self, weights):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(weights))

    def forward(self, x, labels):
        return SimpleNamespace(loss=nn.functional.binary_cross_entropy_with_logits((self.w * x).sum(-1), labels))


def test_ewc_fisher_diagonal_and_penalty_equal_the_formula_by_hand():
    examples = [([1.0, 2.0], 1.0), ([-1.0, 0.5], 0.0), ([0.5, -1.5], 1.0)]
    w = [0.3, -0.2]
    expected = [0.0, 0.0]
    for x, y in examples:
        p = 1 / (1 + math.exp(-(w[0] * x[0] + w[1] * x[1])))
        expected = [f + ((p - y) * xi) ** 2 / len(examples) for f, xi in zip(expected, x)]
    model = Logistic(w)
    fisher = methods.fisher_diagonal(model, ({"x": torch.tensor([x]), "labels": torch.tensor([y])}
                                             for x, y in examples))
    assert fisher["w"].tolist() == pytest.approx(expected, rel=1e-5)
    anchor = {"w": model.w.detach().clone()}
    assert methods.ewc_penalty(model.named_parameters(), fisher, anchor, 10.0).item() == 0.0
    with torch.no_grad():
        model.w += torch.tensor([0.5, -1.0])
    by_hand = 10.0 / 2 * (expected[0] * 0.5 ** 2 + expected[1] * 1.0 ** 2)
    assert methods.ewc_penalty(model.named_parameters(), fisher, anchor, 10.0).item() == pytest.approx(by_hand, 1e-5)
    grown = Logistic([*model.w.tolist(), 7.0])  # a grown head: only its anchored (old) rows are penalized
    assert methods.ewc_penalty(grown.named_parameters(), fisher, anchor, 10.0).item() == pytest.approx(by_hand, 1e-5)


def test_a_grown_head_keeps_the_old_rows_exactly(tiny_model_dir):
    from nlptransfer import models, tasks

    model = models.load_model(tiny_model_dir, tasks.get("classification"), ["neg", "pos"])
    weight, bias = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    inputs = {"input_ids": torch.tensor([[2, 10, 11, 3]])}
    before = model.eval()(**inputs).logits
    methods.grow_head(model, ["neu"], seed=0)
    assert model.classifier.weight.shape == (3, weight.shape[1])
    assert torch.equal(model.classifier.weight[:2], weight) and torch.equal(model.classifier.bias[:2], bias)
    assert model.config.id2label == {0: "neg", 1: "pos", 2: "neu"} and model.config.label2id["neu"] == 2
    assert torch.equal(model(**inputs).logits[:, :2], before)


def stage_config(tiny_model_dir, reviews_csv, out: Path, methods_=("replay",), scenario="class-incremental",
                 **options) -> ContinualConfig:
    data = DataConfig(train_file=str(reviews_csv), max_length=32)
    return ContinualConfig(stages=[StageConfig("a", data, ["pos", "neg"]), StageConfig("b", data, ["neu"])],
                           scenario=scenario, methods=list(methods_), model=tiny_model_dir, output_dir=str(out),
                           train=TrainConfig(epochs=1, batch_size=8), replay=ReplaySettings(per_stage=4), **options)


def test_a_sequence_killed_at_its_second_stage_resumes_there_as_if_never_killed(tiny_model_dir, reviews_csv,
                                                                               tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import pipeline

    whole = sequence.learn(stage_config(tiny_model_dir, reviews_csv, tmp_path / "whole"))
    trained_on = []
    fit_stage = sequence.fit_stage

    def counting(module, groups, *args):
        trained_on.append({head: Counter(examples.labels) for head, examples in groups.items()})
        return fit_stage(module, groups, *args)

    def killed(index, *args):
        if index == 1:
            raise KeyboardInterrupt
        return learn_stage(index, *args)

    learn_stage = sequence.learn_stage
    monkeypatch.setattr(sequence, "fit_stage", counting)
    monkeypatch.setattr(sequence, "learn_stage", killed)
    cfg = stage_config(tiny_model_dir, reviews_csv, tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        sequence.learn(cfg)
    out = tmp_path / "killed"
    assert len(json.loads((out / "state.json").read_text())["methods"]["replay"]["rows"]) == 1
    assert (out / "checkpoints" / "replay" / "stage-0.pt").is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(sequence, "learn_stage", learn_stage)
    sequence.learn(cfg)
    # 4 stored of stage a (2 a label), each label's repeated up to the new stage's 16 a label (replay.balance)
    assert trained_on[-1] == {"all": Counter({"neu": 16}) + Counter({"pos": 16, "neg": 16})}
    resumed, straight = (json.loads((path / "metrics.json").read_text()) for path in (out, whole))
    assert resumed["methods"]["replay"]["matrix"] == straight["methods"]["replay"]["matrix"]
    weights = [load_file(path / "model" / "model.safetensors") for path in (out, whole)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[1])
    assert len(resumed["methods"]["replay"]["matrix"]) == 2 and (out / "accuracy-matrices.png").is_file()
    assert "backward_transfer" in resumed["methods"]["replay"] and "## replay" in (out / "report.md").read_text()
    classify = pipeline("text-classification", model=str(out / "model"))
    assert classify("the film was great")[0]["label"] in {"pos", "neg", "neu"}


def test_adapters_leave_the_encoder_and_earlier_stages_exactly_as_they_were(tiny_model_dir, reviews_csv, tmp_path):
    from safetensors.torch import load_file

    from nlptransfer import models
    from nlptransfer.stages.learner import Learner
    from nlptransfer.stages.stage_data import read_stages

    cfg = stage_config(tiny_model_dir, reviews_csv, tmp_path / "unused", ("adapters",), "domain-incremental")
    for stage in cfg.stages:
        stage.labels = None  # the same labels in both stages, an adapter and head each
    stages = read_stages(cfg)
    tokenizer = models.load_tokenizer(tiny_model_dir)
    learner = Learner(cfg.scenario, True, stages, tokenizer, 32).build(tiny_model_dir, cfg.seed, cfg.adapters)
    sequence.learn_stage(0, learner, ["adapters"], cfg, {})
    first = learner.probabilities("a", stages[0].test.texts, 8)
    sequence.learn_stage(1, learner, ["adapters"], cfg, {})
    assert (learner.probabilities("a", stages[0].test.texts, 8) == first).all()
    checkpoint = load_file(Path(tiny_model_dir) / "model.safetensors")
    for head in learner.heads.values():
        encoder = {key.replace(".base_layer", ""): value for key, value in
                   head.base_model.model.bert.state_dict().items() if "lora_" not in key}
        assert set(encoder) == set(checkpoint)
        assert all(torch.equal(encoder[key], checkpoint[key]) for key in checkpoint)


def test_adding_a_class_to_a_finished_run(full_run, tmp_path):
    from nlptransfer.predictor import load_model

    rows = ["text,label"] + [f"the {a} phone and {b} computer software,tech" for a in ("new", "old", "big", "small")
                             for b in ("good", "bad", "first", "last", "high")]
    new = write(tmp_path / "new.csv", "\n".join(rows) + "\n")
    cfg = ContinualConfig(extend=str(full_run), data=DataConfig(train_file=str(new), max_length=32),
                          methods=["replay+lwf"], replay=ReplaySettings(per_stage=6), output_dir=str(tmp_path / "out"),
                          train=TrainConfig(epochs=1, batch_size=8))
    out = sequence.learn(cfg)
    found = json.loads((out / "metrics.json").read_text())
    recorded = json.loads((full_run / "metrics.json").read_text())
    extended = found["extend"]["replay+lwf"]
    assert extended["old_classes_before"] == pytest.approx(recorded["test"]["accuracy"])
    assert set(extended) >= {"old_classes_after", "old_classes_change", "new_classes_after"}
    old = recorded["data"]["label_names"]
    assert load_model(out).label_names == [*old, "tech"]
