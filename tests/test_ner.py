"""recipe=ner end to end on tiny random BERTs: every strategy, the saved model in the HF pipeline, LoRA reload,
frozen feature caching, the CLI, and the entity-level metrics (tasks/token_classification.py, metrics.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import transformers
from accelerate import Accelerator

from nlptransfer import load_recipe, metrics, models, tasks
from nlptransfer.cli.run import main
from nlptransfer.config import load_yaml
from nlptransfer.data.conll import load_token_classification
from nlptransfer.engine import features, precision, tokens
from nlptransfer.errors import ConfigError
from nlptransfer.pipeline import run as run_token_classification
from nlptransfer.tasks.token_classification import TokenClassification

ASSETS = Path(__file__).parent / "assets"
TINY_CONLL = str(ASSETS / "ner_tiny.conll")
LABELS = ["O", "B-company", "I-company", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
TYPES = ["company", "geo-loc", "person"]
HEAD = 32 * len(LABELS) + len(LABELS)  # the classifier on the tiny model's 32-wide hidden states
ENTITY_WORDS = "john smith mary jones bob alice cooper paris london york berlin apple google tesla".split()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


@pytest.fixture(scope="module")
def whole_word_model_dir(tmp_path_factory) -> str:
    """The tiny random BERT of conftest.py with every word of ner_tiny.conll in its vocabulary."""
    from conftest import TINY_SIZES, VOCAB

    folder = tmp_path_factory.mktemp("tiny-bert-ner")
    vocab = list(dict.fromkeys(VOCAB + ENTITY_WORDS))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), max_position_embeddings=128, **TINY_SIZES)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def ner_config(model: str, output_dir: Path, data: dict | None = None, train: dict | None = None, **changes):
    recipe = load_recipe("ner")
    return recipe.Config(model=model, output_dir=str(output_dir),
                         data={"name": None, "train_file": TINY_CONLL, "max_length": 32} | (data or {}),
                         train={"epochs": 1, "batch_size": 8} | (train or {}), **changes)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def saved_model_tags(model_dir: Path, rows: list[dict], max_length: int = 32, stride: int = 16) -> list[list[str]]:
    """Word-level tags of a saved model for the sentences of predictions.jsonl, predicted as the run predicts."""
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(model_dir))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    encoded = tokens.encode_words([r["words"] for r in rows], [r["tags"] for r in rows], tokenizer, LABELS,
                                  max_length, stride)
    loader = tokens.eval_loader(encoded, tokenizer, 16)
    ids = tokens.predict_words(model, loader, encoded, max_length, Accelerator(cpu=True))
    return [[LABELS[i] for i in sentence] for sentence in ids]


def pipeline_groups(tagger, words: list[str]) -> list[tuple[str, str]]:
    return [(group["entity_group"], group["word"]) for group in tagger(" ".join(words))]


def hf_simple_groups(words: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """Entity groups by the HF pipeline's `simple` rules (one token per word): B- or a new type starts a group."""
    groups: list[tuple[str, list[str]]] = []
    for word, tag in zip(words, tags):
        kind = tag[2:] if tag != "O" else "O"
        if groups and tag[0] != "B" and groups[-1][0] == kind:
            groups[-1][1].append(word)
        else:
            groups.append((kind, [word]))
    return [(kind, " ".join(group)) for kind, group in groups if kind != "O"]


@pytest.mark.parametrize("strategy", ["full", "frozen", "lora"])
def test_ner_end_to_end(strategy, tiny_model_dir, tmp_path):
    # half the sentences of char-piece words pass 16 tokens: windows in every split
    cfg = ner_config(tiny_model_dir, tmp_path / "run", data={"max_length": 16, "stride": 4}, strategy=strategy)
    results = run_token_classification(cfg)
    out = tmp_path / "run"
    assert results.output_dir == out
    assert load_yaml(load_recipe("ner").Config(), out / "config.yaml") == precision.resolved(cfg)[0]  # auto: chosen

    written = json.loads((out / "metrics.json").read_text())
    assert written["test"] == results.test_metrics
    assert set(written["test"]) == {"precision", "recall", "f1", "accuracy", "per_type"}
    assert list(written["test"]["per_type"]) == TYPES
    assert 0 <= written["test"]["f1"] <= 1 and results.accuracy == written["test"]["accuracy"]
    assert [epoch["epoch"] for epoch in written["epochs"]] == [1]
    assert 0 <= written["epochs"][0]["validation"]["f1"] <= 1
    assert set(written["baselines"]) == {"all_o_accuracy", "word_lookup_f1", "word_lookup_accuracy"}
    assert written["data"]["scheme"] == "IOB2" and written["data"]["label_names"] == LABELS
    trainable, total = written["parameters"]["trainable"], written["parameters"]["total"]
    assert trainable == {"full": total, "frozen": HEAD, "lora": 2 * 2 * 8 * (32 + 32) + HEAD}[strategy]
    data = load_token_classification(cfg.data, cfg.seed)
    windows = len(tokens.encode_words(data.train.words, data.train.tags, transformers.AutoTokenizer.from_pretrained(
        tiny_model_dir), LABELS, 16, 4))
    assert windows > len(data.train)
    assert written["timing"]["optimizer_steps"] == math.ceil(windows / 8)

    predictions = read_jsonl(out / "predictions.jsonl")
    assert [row["words"] for row in predictions] == data.test.words
    assert [row["tags"] for row in predictions] == data.test.tags
    assert all(len(row["predicted"]) == len(row["words"]) and set(row["predicted"]) <= set(LABELS)
               for row in predictions)
    rescored = metrics.entity_metrics([r["predicted"] for r in predictions], [r["tags"] for r in predictions], TYPES)
    assert rescored == results.test_metrics

    # the saved model (frozen: the real encoder back in place; lora: merged) predicts what the run predicted
    assert saved_model_tags(out / "model", predictions, 16, 4) == [r["predicted"] for r in predictions]
    assert (out / "adapter").is_dir() == (strategy == "lora")
    assert [p.name for p in out.glob(".*")] == [".nlptransfer.json"]  # the marker; no staging leftovers


def test_same_config_gives_the_same_results(tiny_model_dir, tmp_path):
    first, second = (run_token_classification(ner_config(tiny_model_dir, tmp_path / f"run{i}", train={"epochs": 2}))
                     for i in (1, 2))
    assert first.test_metrics == second.test_metrics
    assert [e["train_loss"] for e in first.history] == [e["train_loss"] for e in second.history]
    predictions = [(r.output_dir / "predictions.jsonl").read_text() for r in (first, second)]
    assert predictions[0] == predictions[1]


def test_the_pipeline_groups_entities_with_their_type_names(whole_word_model_dir, tmp_path):
    results = run_token_classification(ner_config(whole_word_model_dir, tmp_path / "run",
                                                  train={"epochs": 12, "lr": 5e-3, "patience": None}))
    tagger = transformers.pipeline("token-classification", model=str(results.model_dir),
                                   aggregation_strategy="simple", device="cpu")
    assert tagger.model.config.id2label == dict(enumerate(LABELS))
    assert pipeline_groups(tagger, "mary jones went to new york last week".split()) == [
        ("person", "mary jones"), ("geo-loc", "new york")]
    assert pipeline_groups(tagger, "john smith said google will win".split()) == [
        ("person", "john smith"), ("company", "google")]
    for row in read_jsonl(results.output_dir / "predictions.jsonl"):
        assert pipeline_groups(tagger, row["words"]) == hf_simple_groups(row["words"], row["predicted"])
    # the card and the README show the strategy predict uses: each word by its first sub-token
    card = (results.output_dir / "README.md").read_text(encoding="utf-8")
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert 'aggregation_strategy="first"' in card and 'aggregation_strategy="simple"' not in card
    assert 'pipeline("token-classification", aggregation_strategy="first")' in readme
    assert 'aggregation_strategy="simple")' not in readme


def test_lora_adapter_reloads_to_the_same_predictions(tiny_model_dir, tmp_path):
    from peft import PeftModel

    results = run_token_classification(ner_config(tiny_model_dir, tmp_path / "run", strategy="lora",
                                                  train={"lr": 5e-2}))  # a large step: the adapter is not ~0
    labels = {"num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)),
              "label2id": {label: i for i, label in enumerate(LABELS)}}
    base = transformers.AutoModelForTokenClassification.from_pretrained(tiny_model_dir, **labels)
    with_adapter = PeftModel.from_pretrained(base, str(results.adapter_dir)).eval()
    merged = transformers.AutoModelForTokenClassification.from_pretrained(str(results.model_dir)).eval()
    untrained = transformers.AutoModelForTokenClassification.from_pretrained(tiny_model_dir, **labels).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(results.adapter_dir))
    inputs = tokenizer([["john", "smith", "went", "to", "paris"], ["i", "love", "tesla"]], is_split_into_words=True,
                       padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted, merged_logits, untrained_logits = (m(**inputs).logits for m in (with_adapter, merged, untrained))
    assert torch.allclose(adapted, merged_logits, atol=1e-5)
    assert not torch.allclose(merged_logits, untrained_logits, atol=1e-3)
    predictions = read_jsonl(results.output_dir / "predictions.jsonl")
    assert saved_model_tags(results.model_dir, predictions) == [r["predicted"] for r in predictions]


def test_cached_token_features_give_the_model_logits(tiny_model_dir):
    """strategy=frozen trains the head on features computed once; they must be the encoder's real outputs."""
    model = models.load_model(tiny_model_dir, tasks.get("token-classification"), LABELS).eval()
    tokenizer = models.load_tokenizer(tiny_model_dir)
    data = load_token_classification(ner_config(tiny_model_dir, Path("unused")).data, seed=0)
    encoded = tokens.encode_words(data.test.words, data.test.tags, tokenizer, LABELS, 32, 16)
    accelerator = Accelerator(cpu=True)
    expected = tokens.predict_words(model, tokens.eval_loader(encoded, tokenizer, 4), encoded, 32, accelerator)
    head = features.HeadOnFeatures(model).eval()
    cached = features.extract_tokens(head.encoder, tokens.eval_loader(encoded, tokenizer, 4), accelerator)
    assert [len(row["labels"]) for row in cached] == encoded.lengths
    _, loader = features.token_feature_loaders(cached, cached, batch_size=4, eval_batch_size=3, seed=0)
    assert tokens.predict_words(head, loader, encoded, 32, accelerator) == expected
    assert head.restore() is model and model.base_model is not head.replay


def test_a_second_frozen_run_reads_token_features_from_the_disk_cache(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NLPTRANSFER_CACHE", str(tmp_path / "cache"))
    extracted = []
    real_extract = features.extract_tokens

    def counting(encoder, loader, accelerator):
        extracted.append(len(loader.dataset))
        return real_extract(encoder, loader, accelerator)

    monkeypatch.setitem(features.EXTRACTIONS, TokenClassification.features,
                        dataclasses.replace(features.TOKENS, extract=counting))
    results = [run_token_classification(ner_config(tiny_model_dir, tmp_path / f"run{i}", strategy="frozen",
                                                   data={"max_length": 16, "stride": 4}))
               for i in (1, 2)]
    assert len(extracted) == 2  # train and validation windows, by the first run only
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2
    assert results[0].test_metrics == results[1].test_metrics
    assert [e["train_loss"] for e in results[0].history] == [e["train_loss"] for e in results[1].history]


def test_cli_runs_the_recipe_with_freezing_options(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["recipe=ner", f"model={tiny_model_dir}", "data.name=null", f"data.train_file={TINY_CONLL}",
                 "data.max_length=32", "train.epochs=1", "train.batch_size=8", "freeze.embeddings=true",
                 "freeze.layers=1", f"output_dir={out}", "--quiet"])
    assert code == 0, capsys.readouterr().err
    written = json.loads((out / "metrics.json").read_text())
    model = models.load_model(tiny_model_dir, tasks.get("token-classification"), LABELS)
    frozen = sum(p.numel() for m in (model.bert.embeddings, model.bert.encoder.layer[0]) for p in m.parameters())
    assert written["parameters"]["trainable"] == written["parameters"]["total"] - frozen
    assert len(read_jsonl(out / "predictions.jsonl")) == written["data"]["sentences"]["test"] > 0


@pytest.mark.parametrize(("train_file", "message"), [
    ("bad.conll", r"bad.conll:2: expected 2 columns like the first line, found 3"),
    ("missing.conll", r"data file not found"),
])
def test_cli_bad_data_is_one_line_and_exit_code_2(tmp_path, capsys, train_file, message):
    (tmp_path / "bad.conll").write_text("john\tB-person\nsmith\tI-person\textra\n")
    code = main(["recipe=ner", f"data.train_file={tmp_path / train_file}", "data.name=null",
                 f"output_dir={tmp_path / 'run'}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err)


@pytest.mark.parametrize(("changes", "message"), [
    ({"task": "ner"}, "task must be one of classification, multilabel, token-classification"),
    ({"train": {"metric_for_best": "macro_f1"}}, "metric_for_best must be one of f1, precision, recall, accuracy"),
    ({"data": {"stride": 20}}, r"data.stride must be from 0 to half of data.max_length \(16\)"),
])
def test_config_errors(changes, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_token_classification(ner_config("unused", tmp_path / "run", **changes))


def test_recipe_defaults():
    cfg = load_recipe("ner").Config()
    assert (cfg.task, cfg.data.name, cfg.model, cfg.train.metric_for_best) == (
        "token-classification", "wnut16", "minilm", "f1")
    assert cfg.train.lr is None  # per strategy: its default_lr


# metrics.py: entity-level scores

def test_entity_metrics_are_strict_iob2_per_type_and_overall():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "B-PER"]]  # I-LOC starts no entity in strict IOB2
    scores = metrics.entity_metrics(predicted, gold, ["LOC", "MISC", "ORG", "PER"])
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3) and scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["PER"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert scores["per_type"]["MISC"]["support"] == 0  # a type absent from the split still gets a row
    assert json.loads(json.dumps(scores)) == scores
    report = metrics.format_entity_report(scores)
    assert len(report.splitlines()) == 6 and "F1 0.6667" in report


def test_tagger_baselines():
    train_words, train_tags = [["Anna", "in", "Oslo"], ["Anna", "Lee"]], [["B-PER", "O", "B-LOC"], ["B-PER", "I-PER"]]
    scores = metrics.tagger_baselines(train_words, train_tags, [["Lee", "in", "Rome"]], [["B-PER", "O", "B-LOC"]])
    assert scores["all_o_accuracy"] == pytest.approx(1 / 3)
    assert scores["word_lookup_accuracy"] == pytest.approx(2 / 3)  # Lee -> I-PER, read as B-PER; Rome unknown
    assert scores["word_lookup_f1"] == pytest.approx(2 / 3)  # finds 1 of the 2 entities, and nothing wrong
