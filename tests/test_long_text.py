"""Long documents (truncate, head_tail, sliding windows pooled per document) and text pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from nlptransfer import load_model
from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.data.classification import TextSplit
from nlptransfer.engine.batches import encode_split, head_tail_texts, pool_windows
from nlptransfer.pipeline import run

pytestmark = pytest.mark.usefixtures("one_thread")
WORDS = "the match was a great game and the team won the season while the market price fell".split()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def long_text(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(i + offset) % len(WORDS)] for i in range(n))


@pytest.mark.parametrize("n_words, max_length, stride", [(57, 16, 4), (200, 32, 8), (30, 12, 0), (14, 16, 4)])
def test_sliding_windows_cover_every_token_exactly(tokenizer, n_words, max_length, stride):
    text = long_text(n_words)
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    encoded = encode_split(TextSplit([text, "short one"], [1, 0]), tokenizer, max_length, "sliding", stride)
    windows = [f["input_ids"][1:-1] for f, doc in zip(encoded.features, encoded.documents) if doc == 0]
    assert all(len(w) <= max_length - 2 for w in windows)
    # consecutive windows share exactly `stride` tokens; dropping the repeats gives the text back
    rebuilt = windows[0] + [t for w in windows[1:] for t in w[stride:]]
    assert rebuilt == tokens
    assert encoded.over_limit == (len(windows) > 1)
    assert all(f["labels"] == 1 for f, doc in zip(encoded.features, encoded.documents) if doc == 0)
    assert encoded.documents.count(1) == 1


def test_truncate_and_head_tail_keep_one_input_per_text(tokenizer):
    text = long_text(60)
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    truncated = encode_split(TextSplit([text], [0]), tokenizer, 16, "truncate")
    assert truncated.features[0]["input_ids"][1:-1] == tokens[:14] and truncated.over_limit == 1
    head_tail = encode_split(TextSplit([text], [0]), tokenizer, 16, "head_tail")
    kept = head_tail.features[0]["input_ids"][1:-1]
    assert len(head_tail) == 1 and head_tail.over_limit == 1 and len(kept) <= 14
    assert kept[:3] == tokens[:3] and kept[-10:] == tokens[-10:]  # 14 tokens: head 3, tail 11
    assert head_tail_texts(["short text"], tokenizer, 16) == ["short text"]


def test_window_logits_pool_to_one_row_per_document():
    logits = np.array([[1.0, 0.0], [3.0, 4.0], [0.5, 0.5], [2.0, -2.0]])
    documents = [1, 1, 0, 1]
    assert pool_windows(logits, documents, "mean") == pytest.approx(np.array([[0.5, 0.5], [2.0, 2 / 3]]))
    assert pool_windows(logits, documents, "max") == pytest.approx(np.array([[0.5, 0.5], [3.0, 4.0]]))
    assert pool_windows(logits[:2], [1, 0]) == pytest.approx(logits[[1, 0]])  # no windows: reordered only


def long_csv(tmp_path):
    rows = [f"{long_text(40 + i % 30, i)},{'ab'[i % 2]}" for i in range(40)]
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("policy", ["sliding", "head_tail"])
def test_long_text_run_predicts_one_row_per_document(policy, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model=tiny_model_dir, output_dir=str(out), long_text=policy,
                  data=DataConfig(train_file=str(long_csv(tmp_path)), max_length=16, stride=4, pooling="max"),
                  train=TrainConfig(epochs=1, batch_size=8, max_steps=2)))
    saved = json.loads((out / "metrics.json").read_text())
    data = saved["data"]
    assert data["long_text"] == policy and data["over_max_length"]["test"] == data["examples"]["test"]
    if policy == "sliding":
        assert data["inputs"]["train"] > data["examples"]["train"]  # trained on every window
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == data["examples"]["test"]
    predictor = load_model(out)
    assert predictor.settings["long_text"] == policy
    row = predictor.predict([long_text(80)], all_scores=True)[0]
    assert set(row["scores"]) == {"a", "b"} and sum(row["scores"].values()) == pytest.approx(1, abs=1e-5)


def test_pairs_are_tokenized_together(tokenizer):
    split = TextSplit(["the match was great"], [0], text_pairs=["the team won"])
    features = encode_split(split, tokenizer, 32).features[0]
    text = tokenizer.decode(features["input_ids"])
    assert text == "[CLS] the match was great [SEP] the team won [SEP]"
    assert features["token_type_ids"] == [0] * 6 + [1] * 4  # the second text is segment 1


def test_pair_run_and_prediction(tiny_model_dir, tmp_path):
    rows = [f"the match {i},the team {'won' if i % 2 else 'lost'},{'yes' if i % 2 else 'no'}" for i in range(30)]
    path = tmp_path / "pairs.csv"
    path.write_text("premise,hypothesis,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    run(RunConfig(model=tiny_model_dir, output_dir=str(out),
                  data=DataConfig(train_file=str(path), text_column="premise", text_pair_column="hypothesis",
                                  max_length=16),
                  train=TrainConfig(epochs=1, batch_size=8, max_steps=1)))
    first = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert first["text"].startswith("the match") and first["text_pair"].startswith("the team")
    predicted = load_model(out).predict(["the match 1"], text_pairs=["the team won"])
    assert predicted[0]["text_pair"] == "the team won" and predicted[0]["label"] in {"yes", "no"}


@pytest.mark.parametrize("strategy", ["frozen", "lora"])
def test_every_strategy_takes_windows_weights_and_label_lists(strategy, tiny_model_dir, tmp_path):
    rows = [f'{{"text": "{long_text(30 + i % 20, i)}", "labels": {["a", "b"] if i % 3 else ["a"]}}}'.replace("'", '"')
            for i in range(36)]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    run(RunConfig(model=tiny_model_dir, output_dir=str(out), strategy=strategy, task="multilabel",
                  long_text="sliding", threshold="0.4",
                  loss={"class_weights": "balanced", "focal_gamma": 2.0},
                  data=DataConfig(train_file=str(path), label_column="labels", max_length=16, stride=4),
                  train=TrainConfig(epochs=1, batch_size=8, max_steps=2)))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"]["inputs"]["test"] > saved["data"]["examples"]["test"]
    assert {row["threshold"] for row in saved["test"]["per_class"].values()} == {0.4}
    assert len((out / "predictions.jsonl").read_text().splitlines()) == saved["data"]["examples"]["test"]
