"""strategy=contrastive: the supervised contrastive loss, its linear cost, the closed-form head, and the
saved model loading in nlptransfer, transformers, sentence-transformers and SetFit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from helpers import run_logs

from nlptransfer import models, tasks
from nlptransfer.config import RunConfig
from nlptransfer.data.classification import TextSplit
from nlptransfer.engine import batches, embedding
from nlptransfer.engine.loop import OptimizerSettings, TrainData, fit
from nlptransfer.modeling_nlptransfer import PooledForSequenceClassification
from nlptransfer.options import TrainConfig
from nlptransfer.pipeline import run

MEAN = {"mode": "mean", "normalize": True}
FILLER = ["the", "a", "movie", "food", "day", "time", "people", "thing", "book", "music", "phone", "week"]
MARKERS = {"neg": "awful", "neu": "okay", "pos": "great"}


def toy_texts(marker: str, count: int = 8, seed: int = 0) -> list[str]:
    """Texts of five filler words shared by every label, plus the label's one marker word: a random encoder's
    mean-pooled embeddings are dominated by the filler, so labels do not yet cluster."""
    rng = np.random.default_rng(seed + len(marker))
    return [" ".join([*rng.choice(FILLER, 5), marker]) for _ in range(count)]


TOY = {name: toy_texts(marker) for name, marker in MARKERS.items()}


def toy_split(per_label: int | None = None) -> tuple[TextSplit, list[str]]:
    names = sorted(TOY)
    texts, labels = [], []
    for label, name in enumerate(names):
        for text in TOY[name][:per_label]:
            texts.append(text)
            labels.append(label)
    return TextSplit(texts, labels), names


def pooled_model(tiny_model_dir: str, names: list[str]) -> PooledForSequenceClassification:
    torch.manual_seed(0)
    return models.load_model(tiny_model_dir, tasks.get("classification"), names, pooling=MEAN)


def split_embeddings(model, encoded, tokenizer, accelerator) -> np.ndarray:
    return embedding.embed(model, accelerator.prepare(batches.eval_loader(encoded, tokenizer, 64)), accelerator)


def nearest_neighbour_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy under cosine similarity."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = z @ z.T
    np.fill_diagonal(similarity, -np.inf)
    return float((y[similarity.argmax(1)] == y).mean())


def test_the_loss_is_low_when_labels_cluster_and_high_when_they_mix():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    mixed = clustered[[0, 2, 1, 3]]
    low = embedding.supervised_contrastive_loss(clustered, labels, 0.1)
    high = embedding.supervised_contrastive_loss(mixed, labels, 0.1)
    assert low < 0.1 < high
    multi_hot = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]])  # multi-label: positives share a label
    assert torch.isfinite(embedding.supervised_contrastive_loss(clustered, multi_hot, 0.1))
    alone = embedding.supervised_contrastive_loss(clustered.requires_grad_(), torch.tensor([0, 1, 2, 3]), 0.1)
    assert alone == 0 and alone.requires_grad  # no anchor has a positive: nothing to learn, still a graph


def test_the_pair_cosine_loss_is_what_a_hand_computation_gives():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])  # cosines: (0,1) 0.6, (0,2) 0.0, (1,2) 0.8
    labels = torch.tensor([0, 0, 1])
    positive, negative = (1 - 0.6) ** 2, (0.0 ** 2 + 0.8 ** 2) / 2  # each kind's mean counts once
    assert float(embedding.pair_cosine_loss(z, labels)) == pytest.approx(positive + negative)
    multi_hot = torch.tensor([[1, 0], [1, 1], [0, 1]])  # (0,1) and (1,2) share a label, (0,2) not
    assert float(embedding.pair_cosine_loss(z, multi_hot)) == pytest.approx(((0.4 ** 2 + 0.2 ** 2) / 2) + 0.0)
    alone = embedding.pair_cosine_loss(z[:1].requires_grad_(), labels[:1])
    assert alone == 0 and alone.requires_grad  # one text: no pair, still a graph


@pytest.mark.parametrize("loss", ["supcon", "cosine"])
def test_contrastive_training_pulls_same_label_texts_together(loss, tiny_model_dir):
    from transformers import AutoTokenizer

    split, names = toy_split()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = batches.encode_split(split, tokenizer, 16)
    model, accelerator = pooled_model(tiny_model_dir, names), Accelerator(cpu=True)
    y = np.asarray(split.labels)

    def loss_and_accuracy() -> tuple[float, float]:
        x = split_embeddings(model, encoded, tokenizer, accelerator)
        z, labels = torch.from_numpy(x), torch.from_numpy(y)
        value = (embedding.supervised_contrastive_loss(z, labels, 0.05) if loss == "supcon"
                 else embedding.pair_cosine_loss(z, labels))
        return float(value), nearest_neighbour_accuracy(x, y)

    loss_before, accuracy_before = loss_and_accuracy()
    loader = batches.train_loader(encoded, tokenizer, 12, seed=0, group_by_length=False)
    cfg = TrainConfig(epochs=15, batch_size=12, patience=None, warmup_ratio=0.0)
    lr = 1e-3 if loss == "supcon" else 3e-3  # supcon's cosines are scaled by 1 / temperature (20): larger gradients
    fit(embedding.ContrastiveEncoder(model, 0.05, loss), TrainData(loader, None), cfg, OptimizerSettings(lr),
        accelerator)
    loss_after, accuracy_after = loss_and_accuracy()
    # supcon's least loss: each text's 7 positives coincide with it, far from the rest; cosine's 0
    floor, share = (math.log(len(TOY["pos"]) - 1), 0.3) if loss == "supcon" else (0.0, 0.4)
    assert loss_after - floor < share * (loss_before - floor), (loss_before, loss_after)
    assert accuracy_after > accuracy_before and accuracy_after >= 0.9, (accuracy_before, accuracy_after)


@pytest.mark.parametrize("per_label", [2, 4, 8])
def test_the_contrastive_phase_runs_each_text_through_the_encoder_once_per_epoch(per_label, tiny_model_dir):
    """Linear cost: texts encoded = epochs x examples (SetFit's pairs would grow with the square)."""
    from transformers import AutoTokenizer

    from nlptransfer.strategies.contrastive import Contrastive

    split, names = toy_split(per_label)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = pooled_model(tiny_model_dir, names)
    encoded_texts = []
    model.base_model.register_forward_hook(lambda module, args, kwargs, out: encoded_texts.append(
        len(kwargs["input_ids"])), with_kwargs=True)
    cfg = RunConfig(model=tiny_model_dir, strategy="contrastive", contrastive={"epochs": 3, "batch_size": 4})
    fitting = type("F", (), {"cfg": cfg, "model": model, "tokenizer": tokenizer, "lr": 1e-4,
                             "accelerator": Accelerator(cpu=True),
                             "encoded": {"train": batches.encode_split(split, tokenizer, 16)}})()
    Contrastive().train_encoder(fitting)
    assert sum(encoded_texts) == 3 * len(split)
    assert len(encoded_texts) == 3 * math.ceil(len(split) / 4)


@pytest.mark.parametrize("epochs, min_steps, batches_per_epoch, expected", [
    (10, 0, 2, 10), (10, 50, 2, 25), (10, 51, 2, 26), (10, 50, 12, 10), (3, 7, 1, 7)])
def test_min_steps_raises_the_passes_to_the_fewest_that_take_that_many_steps(epochs, min_steps, batches_per_epoch,
                                                                             expected):
    from nlptransfer.strategies.contrastive import ContrastiveConfig, phase_epochs

    assert phase_epochs(ContrastiveConfig(epochs=epochs, min_steps=min_steps), batches_per_epoch) == expected


def test_the_logistic_head_computes_what_scikit_learn_fitted():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    for classes in (2, 3):
        y = np.arange(30) % classes
        weight, bias = embedding.logistic_head(x, y, classes, multilabel=False, c=1.0)
        expected = LogisticRegression(max_iter=1000).fit(x, y).predict_proba(x)
        logits = x @ weight.T + bias
        got = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(got / got.sum(1, keepdims=True), expected, atol=1e-6)
    multi_hot = np.stack([np.arange(30) % 2, np.ones(30)], axis=1)  # the second label: every example has it
    weight, bias = embedding.logistic_head(x, multi_hot, 2, multilabel=True, c=1.0)
    assert (x @ weight[1] + bias[1] > 10).all()


def test_positive_pairs_are_two_examples_sharing_a_label():
    from nlptransfer.strategies.contrastive import has_positive_pairs

    assert not has_positive_pairs([0, 1, 2]) and has_positive_pairs([0, 1, 0])
    assert not has_positive_pairs([[1, 0], [0, 1]]) and has_positive_pairs([[1, 1], [0, 1]])


def test_one_example_per_class_skips_the_phase_it_cannot_learn_from(tiny_model_dir, reviews_csv, tmp_path, caplog):
    from transformers import AutoModel

    with run_logs(caplog):
        results = run(RunConfig(model=tiny_model_dir, strategy="contrastive", output_dir=str(tmp_path / "run"),
                                data={"train_file": str(reviews_csv), "examples_per_class": 1, "max_length": 16},
                                contrastive={"epochs": 2, "batch_size": 3}))
    assert "contrastive phase skipped: no two training examples share a label" in caplog.text
    checkpoint = AutoModel.from_pretrained(tiny_model_dir).state_dict()
    encoder = results.model.base_model.state_dict()
    assert all(torch.equal(encoder[name], value) for name, value in checkpoint.items() if name in encoder)
    assert len(results.predictions) > 0  # the head is fitted on the checkpoint's embeddings


@pytest.fixture(scope="module")
def few_shot_run(tiny_model_dir, reviews_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("contrastive") / "run"
    return run(RunConfig(model=tiny_model_dir, strategy="contrastive", output_dir=str(out), seed=3,
                         data={"train_file": str(reviews_csv), "examples_per_class": 4, "max_length": 32},
                         contrastive={"epochs": 2, "batch_size": 6}))


def test_a_few_shot_run_trains_on_the_sample_and_saves_a_pooled_model(few_shot_run):
    results = few_shot_run
    metrics = json.loads((results.output_dir / "metrics.json").read_text())
    assert metrics["data"]["examples"]["train"] == 12 and metrics["data"]["examples"]["validation"] == 0
    config = json.loads((results.model_dir / "config.json").read_text())
    assert config["architectures"] == ["PooledForSequenceClassification"]
    assert config["pooling"] == {"mode": "mean", "normalize": False}  # the tiny checkpoint declares no pooling
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_nlptransfer.")
    assert config["model_type"] == "nlptransfer-pooled" and config["encoder_model_type"] == "bert"
    assert config["auto_map"]["AutoConfig"] == "modeling_nlptransfer.PooledConfig"
    encoder = json.loads((results.model_dir / "encoder_config.json").read_text())
    assert encoder["model_type"] == "bert" and "auto_map" not in encoder
    card = (results.output_dir / "README.md").read_text()
    assert "Few-shot model: trained on 12 labeled examples (4 per label" in card
    assert "trust_remote_code=True" in card and "SetFitModel" in card and "- custom_code" in card
    assert "transformers refuses the model and says to pass it" in card
    assert "There was no validation split" in card and "| best epoch by | none (the last epoch) |" in card
    assert "best validation epoch" not in card
    # what trained, not train.*'s defaults
    assert "| contrastive epochs / batch / loss | 2 / 6 / cosine pairs |" in card
    assert not any(row in card for row in ("| epochs |", "| batch size |", "| max steps |", "| warmup ratio |"))
    assert "| learning rate |" in card and "| seed | 3 |" in card


def test_the_saved_few_shot_model_predicts_the_same_everywhere(few_shot_run):
    """nlptransfer.predict, transformers with trust_remote_code and the run's own test predictions agree."""
    from transformers import pipeline

    from nlptransfer import load_model

    results = few_shot_run
    texts = [row["text"] for row in results.predictions[:8]]
    ours = [row["label"] for row in load_model(results.output_dir).predict(texts)]
    assert ours == [row["predicted"] for row in results.predictions[:8]]
    classifier = pipeline("text-classification", model=str(results.model_dir), trust_remote_code=True)
    assert [row["label"] for row in classifier(texts, truncation=True)] == ours


@pytest.mark.parametrize("trust", [None, False])
def test_without_trust_remote_code_transformers_refuses_the_pooled_model(few_shot_run, trust):
    """Never the encoder under a new, random classifier: transformers refuses and says to pass trust_remote_code."""
    from transformers import AutoModelForSequenceClassification, pipeline

    options = {} if trust is None else {"trust_remote_code": trust}
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("text-classification", model=str(few_shot_run.model_dir), **options)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoModelForSequenceClassification.from_pretrained(str(few_shot_run.model_dir), **options)


def test_a_pooled_model_folder_is_a_base_checkpoint_without_its_code(few_shot_run):
    """model=runs/.../model of a pooled run: its encoder loads by the installed classes (no trust_remote_code)."""
    names = ["neg", "neu", "pos"]
    plain = models.load_model(str(few_shot_run.model_dir), tasks.get("classification"), names)
    assert type(plain).__name__ == "BertForSequenceClassification"
    kept = models.load_model(str(few_shot_run.model_dir), tasks.get("classification"), names, pooling=MEAN,
                             keep_head=True)
    assert isinstance(kept, PooledForSequenceClassification) and kept.normalize
    torch.testing.assert_close(kept.score.weight, few_shot_run.model.score.weight)
    assert models.load_tokenizer(str(few_shot_run.model_dir)).model_max_length == 32


def test_the_saved_model_loads_in_sentence_transformers_and_setfit(few_shot_run):
    sentence_transformers = pytest.importorskip(
        "sentence_transformers", reason="sentence-transformers is not installed (pip install 'nlptransfer[test]')")
    setfit = pytest.importorskip("setfit", reason="setfit is not installed (pip install 'nlptransfer[benchmark]')")
    from nlptransfer import load_model

    results = few_shot_run
    texts = [row["text"] for row in results.predictions[:8]]
    body = sentence_transformers.SentenceTransformer(str(results.model_dir), device="cpu")
    model = results.model.eval()
    inputs = results.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        ours = model.embed(**inputs).numpy()
    np.testing.assert_allclose(body.encode(texts), ours, atol=1e-5)
    few_shot = setfit.SetFitModel.from_pretrained(str(results.model_dir), device="cpu")
    predicted = [row["label"] for row in load_model(results.output_dir).predict(texts)]
    assert list(few_shot.predict(texts)) == predicted


def test_lora_on_the_encoder_trains_and_merges(tiny_model_dir, reviews_csv, tmp_path):
    results = run(RunConfig(model=tiny_model_dir, strategy="contrastive", output_dir=str(tmp_path / "run"),
                            data={"train_file": str(reviews_csv), "examples_per_class": 3, "max_length": 32},
                            contrastive={"epochs": 1, "batch_size": 6, "lora_r": 2}))
    names = {name for name, _ in results.model.named_parameters()}
    assert not any("lora" in name for name in names)  # merged into the weights
    assert results.model_dir.joinpath("model.safetensors").is_file()


def test_multilabel_and_text_pairs_train(tiny_model_dir, tmp_path):
    from nlptransfer.api import run as api_run

    rows = [{"text": f"good great {i}", "labels": ["a"]} for i in range(6)] + \
           [{"text": f"bad awful {i}", "labels": ["b"]} for i in range(6)] + \
           [{"text": f"good bad {i}", "labels": ["a", "b"]} for i in range(6)]
    import pandas as pd

    frame = pd.DataFrame(rows)
    multi = api_run(task="multilabel", model=tiny_model_dir, strategy="contrastive", data=frame, threshold="0.5",
                    output_dir=str(tmp_path / "multi"), data_options={"label_column": "labels", "max_length": 16,
                                                                       "validation_fraction": 0},
                    contrastive={"epochs": 1, "batch_size": 6})
    assert "micro_f1" in multi.test_metrics
    pairs = pd.DataFrame({"text": [f"good {i}" for i in range(20)] + [f"bad {i}" for i in range(20)],
                          "pair": ["great"] * 20 + ["awful"] * 20, "label": ["yes"] * 20 + ["no"] * 20})
    paired = api_run(model=tiny_model_dir, strategy="contrastive", data=pairs, output_dir=str(tmp_path / "pairs"),
                     data_options={"text_pair_column": "pair", "examples_per_class": 5, "max_length": 16},
                     contrastive={"epochs": 1, "batch_size": 6})
    assert paired.predictions[0]["text_pair"] in ("great", "awful")
