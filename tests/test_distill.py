"""Distillation (nlptransfer/distillation/, engine/distillation.py, cli/distill.py): the loss against its formula,
the layer-kept student copy, the teachers' soft targets (averaged, cached), a tiny end-to-end distillation whose
folder pipeline() and predict serve, and the inputs it refuses."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nlptransfer.cli.distill import main
from nlptransfer.distillation.objective import Distillation
from nlptransfer.distillation.teachers import check_teachers
from nlptransfer.engine.distillation import (
    distillation_loss,
    join_splits,
    keep_layers,
    layer_indices,
    row_targets,
    soft_loss,
    tempered,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_the_loss_is_the_formula_on_a_hand_example():
    temperature, alpha = 2.0, 0.3
    teacher = [0.7, 0.2, 0.1]
    q = softmax([math.log(p) / temperature for p in teacher])  # the teacher's probabilities softened at T
    student = [2.0, 0.0, -1.0]
    p = softmax([z / temperature for z in student])
    soft = temperature ** 2 * sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))
    hard = -math.log(softmax(student)[0])
    logits, targets = torch.tensor([student]), torch.tensor([q])
    assert np.allclose(tempered(np.array([teacher]), temperature, "softmax"), [q])
    found = distillation_loss(logits, targets, torch.tensor([0]), torch.tensor([True]), temperature, alpha, "softmax")
    assert float(found) == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-5)
    # an unlabeled row has the soft part alone
    unlabeled = distillation_loss(logits, targets, torch.tensor([0]), torch.tensor([False]), temperature, alpha,
                                  "softmax")
    assert float(unlabeled) == pytest.approx(alpha * soft, rel=1e-5)
    # for one model, softening its probabilities is softmax(logits / T)
    z = np.array([[1.5, -0.5, 0.25]])
    assert np.allclose(tempered(np.exp(z) / np.exp(z).sum(), 3.0, "softmax"), np.exp(z / 3) / np.exp(z / 3).sum())


def test_multilabel_and_token_losses_are_their_formulas():
    temperature = 2.0
    q, z = 0.8, 1.0  # one label: binary KL at T
    pt = 1 / (1 + math.exp(-z / temperature))
    expected = temperature ** 2 * (q * math.log(q / pt) + (1 - q) * math.log((1 - q) / (1 - pt)))
    assert float(soft_loss(torch.tensor([[z]]), torch.tensor([[q]]), temperature, "sigmoid")) == pytest.approx(
        expected, rel=1e-5)
    # tokens: positions without a target (all zeros: later sub-tokens, padding) are left out of the mean
    logits = torch.tensor([[[2.0, 0.0], [5.0, -5.0], [0.0, 1.0]]])
    targets = torch.tensor([[[0.6, 0.4], [0.0, 0.0], [0.3, 0.7]]])
    per_word = [sum(t * math.log(t / s) for t, s in zip(target, softmax([v / temperature for v in logit])))
                for target, logit in (([0.6, 0.4], [2.0, 0.0]), ([0.3, 0.7], [0.0, 1.0]))]
    assert float(soft_loss(logits, targets, temperature, "tokens")) == pytest.approx(
        temperature ** 2 * sum(per_word) / 2, rel=1e-5)


def test_a_layer_kept_copy_holds_the_chosen_layers_weights(tiny_model_dir):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig.from_pretrained(tiny_model_dir, num_hidden_layers=4, num_labels=3)
    teacher = BertForSequenceClassification(config)
    student = keep_layers(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert teacher.config.num_hidden_layers == 4 and len(teacher.bert.encoder.layer) == 4  # the teacher is untouched
    for kept, source in zip(student.bert.encoder.layer, [1, 3]):
        original = teacher.bert.encoder.layer[source].state_dict()
        assert all(torch.equal(value, original[name]) for name, value in kept.state_dict().items())
    for part in ("bert.embeddings", "classifier", "bert.pooler"):
        names = [n for n in teacher.state_dict() if n.startswith(part)]
        assert names and all(torch.equal(student.state_dict()[n], teacher.state_dict()[n]) for n in names)
    assert student(input_ids=torch.tensor([[2, 10, 3]])).logits.shape == (1, 3)
    assert layer_indices(6, "every_other") == [0, 2, 4] and layer_indices(6, 3) == [0, 2, 5]
    assert layer_indices(6, 1) == [5] and layer_indices(6, 6) == list(range(6))


def test_rows_get_their_texts_and_words_targets():
    from nlptransfer.engine.batches import EncodedSplit
    from nlptransfer.engine.tokens import EncodedWords, Window

    labeled = EncodedSplit([{"input_ids": [1, 2]}, {"input_ids": [1, 3]}, {"input_ids": [4]}], documents=[0, 0, 1])
    joined = join_splits(labeled, EncodedSplit([{"input_ids": [5]}]), labeled_texts=2)
    assert joined.documents == [0, 0, 1, 2] and [f["distill_row"] for f in joined.features] == [0, 1, 2, 3]
    soft = [np.array([0.9, 0.1]), np.array([0.2, 0.8]), np.array([0.5, 0.5])]
    assert np.allclose(row_targets(soft, joined, "softmax"), [[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    words = EncodedWords([{"input_ids": [2, 7, 8, 9, 3]}], [Window(0, [(0, 1), (1, 3)])], [2], 8)
    targets = row_targets([np.array([[0.6, 0.4], [0.1, 0.9]])], words, "tokens")[0]
    assert np.allclose(targets, [[0, 0], [0.6, 0.4], [0, 0], [0.1, 0.9], [0, 0]])


def test_soft_targets_are_the_teachers_averaged_and_cached(full_run, lora_run, tmp_path, monkeypatch):
    from nlptransfer.data.classification import TextSplit
    from nlptransfer.distillation import objective
    from nlptransfer.predictor import load_model

    texts = ["a great film", "the food was bad", "it was okay"]
    split = TextSplit(texts, [0, 0, 0])
    distillation = Distillation(check_teachers([full_run, lora_run]), [], 2.0, 0.5, 8, "test")
    distillation.kind = "softmax"
    cache = tmp_path / "distill" / "teacher-outputs.npz"
    outputs = distillation.teacher_outputs(cache, {"train": split, "unlabeled": split, "test": split})
    expected = (load_model(full_run).probabilities(texts) + load_model(lora_run).probabilities(texts)) / 2
    assert np.allclose(outputs["train"], expected, atol=1e-6)

    def recompute(*args, **kwargs):
        raise AssertionError("the teachers predicted again")

    monkeypatch.setattr(objective, "probabilities", recompute)
    again = distillation.teacher_outputs(cache, {"train": split, "unlabeled": split, "test": split})
    assert np.allclose(again["train"], expected, atol=1e-6) and np.allclose(again["unlabeled"], expected, atol=1e-6)


def test_a_tiny_distillation_is_a_run_that_pipeline_and_predict_serve(full_run, tmp_path, capsys):
    from transformers import pipeline

    from nlptransfer.cli.predict import main as predict
    from nlptransfer.predictor import load_model

    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("a great film\nthe food was bad\n\nokay i guess\n", encoding="utf-8")
    out = tmp_path / "student"
    assert main([str(full_run), "layers=1", f"unlabeled.file={unlabeled}", "train.epochs=1", "train.max_steps=2",
                 "train.batch_size=8", f"output_dir={out}", "benchmark_texts=4", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    distilled = metrics["distilled_from"]
    assert distilled["teachers"] == [str(full_run)] and distilled["unlabeled_texts"] == 3
    assert "1 of the teacher's 2 layers" in distilled["student"]
    teacher_recorded = json.loads((full_run / "metrics.json").read_text())["test"]["accuracy"]
    assert distilled["teacher_test"]["accuracy"] == pytest.approx(teacher_recorded)  # the same test split
    classifier = pipeline("text-classification", model=str(out / "model"))
    assert classifier("a great film")[0]["label"] in ("neg", "neu", "pos")
    assert classifier.model.config.num_hidden_layers == 1
    assert load_model(out).predict(["a great film"])[0]["label"] in ("neg", "neu", "pos")
    capsys.readouterr()
    assert predict([f"model={out}", "text=the food was bad"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["label"] in ("neg", "neu", "pos")
    report = (out / "report.md").read_text()
    assert "| teacher |" in report and "| **student** |" in report and "texts/s" in report
    assert "distilled from `run`" in (out / "README.md").read_text()
    comparison = json.loads((out / "distill" / "comparison.json").read_text())
    assert comparison["student"]["parameters"] < comparison["teacher"]["parameters"]
    # the cached soft targets are the teacher's probabilities
    with np.load(out / "distill" / "teacher-outputs.npz") as saved:
        assert np.allclose(saved["unlabeled"], load_model(full_run).probabilities(
            ["a great film", "the food was bad", "okay i guess"]), atol=1e-6)


@pytest.fixture(scope="module")
def other_labels(full_run, tmp_path_factory) -> Path:
    """A copy of `full_run` whose metrics.json names other labels."""
    copy = tmp_path_factory.mktemp("other") / "run"
    shutil.copytree(full_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["data"]["label_names"] = ["bad", "good", "meh"]
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


def refusals(full_run: Path, other: Path, tmp: Path) -> list[tuple[list[str], str]]:
    unfinished = tmp / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((full_run / "config.yaml").read_text())
    empty = tmp / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    table = tmp / "texts.csv"
    table.write_text("body\nhello there\n", encoding="utf-8")
    (tmp / "a-file").write_text("x")
    user = tmp / "notes"
    user.mkdir()
    (user / "mine.txt").write_text("x")
    run = str(full_run)
    return [
        ([str(tmp / "missing")], "is not a folder"),
        ([str(unfinished)], "is not a finished run"),
        ([run, str(other)], "other label sets"),
        ([run, "layers=3"], "from 1 to the teacher's 2 layers"),
        ([run, "layers=0"], "at least 1 layer"),
        ([run, "layers=half"], "layers must be every_other or a number"),
        ([run, "model=minilm", "layers=1"], "drop layers="),
        ([run, "temperature=0"], "temperature must be above 0"),
        ([run, "temperature=-1"], "temperature must be above 0"),
        ([run, "alpha=1.5"], "alpha must be from 0"),
        ([run, "alpha=-0.1"], "alpha must be from 0"),
        ([run, f"unlabeled.file={empty}"], "holds no text"),
        ([run, f"unlabeled.file={tmp / 'nowhere.txt'}"], "nowhere.txt"),
        ([run, f"unlabeled.file={table}"], "has no column 'text'"),
        ([run, "unlabeled.unused_rows=true"], "trained on every training row"),
        ([run, f"output_dir={tmp / 'a-file'}"], "a file"),
        ([run, f"output_dir={user}"], "did not write"),
        ([run, f"output_dir={full_run}"], "already holds a finished run"),
        ([run, f"output_dir={full_run}", "overwrite=true"], "an input of this command"),
        ([run, "resume=auto"], "needs the distillation's folder"),
        ([run, f"output_dir={tmp / 'x'}", "resume=auto", "overwrite=true"], "pass one of them"),
        ([], "usage"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(full_run, other_labels, tmp_path, capsys):
    before = sorted(p.name for p in full_run.iterdir())
    for argv, message in refusals(full_run, other_labels, tmp_path):
        listing = sorted(str(p) for p in tmp_path.rglob("*"))
        code = main([*argv, "train.max_steps=1"] if argv else argv)
        error = capsys.readouterr().err.strip()
        assert code == 2, (argv, error)
        assert message in error, (argv, error)
        assert error.startswith("usage") or len(error.splitlines()) == 1, (argv, error)
        assert sorted(str(p) for p in tmp_path.rglob("*")) == listing, argv
    assert sorted(p.name for p in full_run.iterdir()) == before


def test_a_teachers_word_distributions_sit_at_each_words_first_sub_token(ner_run):
    from nlptransfer.distillation.teachers import word_probabilities
    from nlptransfer.predictor import load_model

    tagger = load_model(ner_run)  # its head tags every word B-PER; windows of 16 tokens
    sentences = [["i", "love", "london"], ["zzzq"] + ["the", "new", "phone"] * 8]  # a word of sub-tokens; windows
    found = word_probabilities(tagger, sentences, 4, "test")
    assert [row.shape for row in found] == [(3, 5), (25, 5)]
    assert all(np.allclose(row.sum(-1), 1) and (row.argmax(-1) == 1).all() for row in found)


@pytest.fixture(scope="module")
def char_model_dir(tmp_path_factory) -> str:
    """A 1-layer tiny BERT whose tokenizer knows few whole words: most words split into other sub-tokens."""
    import string

    from conftest import TINY_SIZES, WORDS
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS[:20],
                                *(string.ascii_lowercase + string.punctuation), *(f"##{c}" for c in
                                                                                  string.ascii_lowercase)]))
    folder = tmp_path_factory.mktemp("char-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **TINY_SIZES | {"num_hidden_layers": 1})
              ).save_pretrained(folder)
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    return str(folder)


def test_ner_distils_into_a_student_of_another_tokenizer(tiny_model_dir, char_model_dir, tmp_path):
    from conftest import _tiny_ner_run

    from nlptransfer.predictor import load_model

    teacher = _tiny_ner_run(tiny_model_dir, tmp_path / "teacher", "full")
    unlabeled = tmp_path / "sentences.txt"
    unlabeled.write_text("i love london\nparis is big and new york too\n", encoding="utf-8")
    out = tmp_path / "student"
    assert main([str(teacher), f"model={char_model_dir}", f"unlabeled.file={unlabeled}", "train.epochs=1",
                 "train.max_steps=2", "train.batch_size=8", f"output_dir={out}", "benchmark_texts=2", "--quiet"]) == 0
    distilled = json.loads((out / "metrics.json").read_text())["distilled_from"]
    recorded = json.loads((teacher / "metrics.json").read_text())["test"]
    assert distilled["teacher_test"]["f1"] == pytest.approx(recorded["f1"])
    assert distilled["teacher_test"]["accuracy"] == pytest.approx(recorded["accuracy"])
    assert distilled["unlabeled_texts"] == 2
    assert "entities" in load_model(out).predict(["i love london"])[0]
    with np.load(out / "distill" / "teacher-outputs.npz") as saved:  # per word of the unlabeled sentences
        assert saved["unlabeled"].shape[0] == 3 + 7 and list(saved["unlabeled_lengths"]) == [3, 7]
