"""Model stacking (strategy=frozen stack.models=[...] stack.tfidf=true): members with their own tokenizers, their
cached pooled features concatenated under one head; the saved model predicts with all members."""

from __future__ import annotations

import json
import string

import pytest
import torch
from conftest import ASSETS, TINY_SIZES

from nlptransfer.cli.run import main
from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.pipeline import run
from nlptransfer.predictor import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory) -> str:
    """A second tiny random BERT with another (character-level) vocabulary and another hidden size."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, *string.digits,
             *string.punctuation, *(f"##{c}" for c in string.ascii_lowercase + string.digits)]
    folder = tmp_path_factory.mktemp("other-bert")
    torch.manual_seed(1)
    sizes = TINY_SIZES | {"hidden_size": 16, "intermediate_size": 32}
    BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=256, **sizes)).save_pretrained(folder)
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    return str(folder)


def stacked_config(model: str, output_dir, members=None, tfidf=True, **options) -> RunConfig:
    return RunConfig(model=model, strategy="frozen", output_dir=str(output_dir),
                     data=DataConfig(train_file=str(ASSETS / "reviews.csv"), max_length=32),
                     train=TrainConfig(epochs=2, batch_size=8), stack={"models": members, "tfidf": tfidf},
                     **options)


@pytest.fixture(scope="module")
def stacked_run(tiny_model_dir, other_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stacked") / "run"
    return run(stacked_config(tiny_model_dir, out, [other_model_dir]))


def test_stacked_features_are_the_concatenation_of_each_members_cached_features(tiny_model_dir, other_model_dir):
    from accelerate import Accelerator

    from nlptransfer import config, tasks
    from nlptransfer.engine import cache, stacking

    cfg = config.validate(stacked_config(tiny_model_dir, "unused", [other_model_dir]))
    task, accelerator = tasks.get("classification"), Accelerator(cpu=True)
    data = task.load_data(cfg)
    first = stacking.load_member(tiny_model_dir, tiny_model_dir, "mean")
    second = stacking.load_member(other_model_dir, other_model_dir, "max")
    assert len(first.tokenizer) != len(second.tokenizer)  # each member reads the text with its own tokenizer
    encoded = [task.encode(data, m.tokenizer, cfg) for m in (first, second)]
    tfidf = stacking.TfidfMember.fit(data.train.texts, 50)
    stacked, sparse = stacking.stacked_features([first, second], encoded, tfidf, data.test.texts, "test", task,
                                                cfg, accelerator)
    cached = []
    for member, member_encoded in zip((first, second), encoded):
        key = cache.feature_key(member.path, member_encoded["test"], cfg.data.max_length,
                                f"pooled_{member.pooling['mode']}", member.tokenizer,
                                precision=cfg.train.mixed_precision)
        rows = cache.load(cache.entry_path(key, cache.cache_folder()), key)  # written by the stacking above
        cached.append(torch.stack([row["encoder_hidden"][0] for row in rows]))
    assert stacked.shape == (len(data.test), 32 + 16)
    torch.testing.assert_close(stacked, torch.cat(cached, dim=1), rtol=0, atol=0)
    assert sparse.shape == (len(data.test), tfidf.size)  # TF-IDF: one more member, its vocabulary from train only
    assert set(tfidf.vectorizer.vocabulary) <= {w for text in data.train.texts for w in text.lower().split()} | {
        " ".join(pair) for text in data.train.texts for pair in zip(text.lower().split(), text.lower().split()[1:])}


def test_a_stacked_run_trains_tests_saves_and_predicts_with_all_members(stacked_run, other_model_dir):
    from transformers import AutoModelForSequenceClassification

    out = stacked_run.output_dir
    assert (out / "metrics.json").is_file() and stacked_run.history
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["model_type"] == "nlptransfer-stacked"
    assert [m["name"] for m in saved["stack"]["members"]][1:] == [other_model_dir]
    tfidf = json.loads((out / "model" / "tfidf.json").read_text())  # JSON, never a pickle
    assert tfidf["vocabulary"] and len(tfidf["idf"]) == len(tfidf["vocabulary"])
    assert not list((out / "model").rglob("*.pkl")) and not list((out / "model").rglob("*.bin"))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    predicted = load_model(out).predict([row["text"] for row in rows])
    assert [p["label"] for p in predicted] == [row["predicted"] for row in rows]
    assert [p["score"] for p in predicted] == pytest.approx([row["score"] for row in rows], abs=1e-4)
    card = (out / "README.md").read_text()
    assert "stacked members" in card and other_model_dir in card
    assert "library_name: nlptransfer" in card and "pipeline(" not in card and "load_model(" in card
    with pytest.raises((ValueError, KeyError, OSError)):  # plain transformers refuses it, never a random head
        AutoModelForSequenceClassification.from_pretrained(out / "model")


def test_a_stacked_multilabel_run_predicts_its_labels(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    results = run(RunConfig(model=tiny_model_dir, task="multilabel", strategy="frozen", output_dir=str(out),
                            data=DataConfig(train_file=str(ASSETS / "topics_multilabel.jsonl"), label_column="labels",
                                            max_length=32),
                            train=TrainConfig(epochs=2, batch_size=8), stack={"tfidf": True}))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    predicted = load_model(results.output_dir).predict([row["text"] for row in rows])
    assert [sorted(p["labels"]) for p in predicted] == [sorted(row["predicted"]) for row in rows]


@pytest.mark.parametrize(("overrides", "expected"), [
    (lambda t: ["stack.models=[]"], "stack.models is an empty list"),
    (lambda t: [f"stack.models=[{t / 'not-there'}]"], "the folder does not exist"),
    (lambda t: [f"stack.models=[{(t / 'empty').mkdir() or t / 'empty'}]"], "has no config.json"),
    (lambda t: ["stack.tfidf=true", "long_text=sliding"], "set long_text=truncate"),
    (lambda t: ["stack.models=[minilm]", "strategy=full"], "stack"),
])
def test_bad_stacking_is_one_line_exit_2_and_writes_nothing(overrides, expected, tmp_path, tiny_model_dir, capsys):
    run_dir = tmp_path / "run"
    argv = ["recipe=sentiment", f"model={tiny_model_dir}", f"data.train_file={ASSETS / 'reviews.csv'}",
            "data.name=null", "strategy=frozen", "train.max_steps=1", f"output_dir={run_dir}", "--quiet"]
    assert main(argv + overrides(tmp_path)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and expected in error
    assert not run_dir.exists()


def test_stacking_ner_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    argv = ["recipe=ner", f"model={tiny_model_dir}", f"data.train_file={ASSETS / 'ner_tiny.conll'}", "data.name=null",
            "strategy=frozen", "stack.tfidf=true", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "word-level stacked features are not implemented" in error
    assert not (tmp_path / "run").exists()
