"""nlptransfer/engine/batches.py: tokenization, length-grouped training batches, sorted evaluation batches."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoTokenizer

from nlptransfer.data.classification import TextSplit
from nlptransfer.engine.batches import (
    LengthGroupedBatches,
    ShuffledBatches,
    encode_split,
    eval_loader,
    model_inputs,
    sorted_batches,
    train_loader,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def lengths():
    rng = random.Random(0)
    return [rng.randint(3, 120) for _ in range(1000)]


def padding(batches, lengths):
    return sum(max(lengths[i] for i in batch) * len(batch) - sum(lengths[i] for i in batch) for batch in batches)


def test_encode_split_truncates_and_keeps_labels(tokenizer):
    long_text = " ".join(["good"] * 50)
    split = TextSplit(texts=["good movie", long_text, "bad"], labels=[2, 0, 1])
    encoded = encode_split(split, tokenizer, max_length=16)
    assert len(encoded) == 3
    assert encoded.lengths == [4, 16, 3]  # [CLS] good movie [SEP] / truncated / [CLS] bad [SEP]
    assert [f["labels"] for f in encoded] == [2, 0, 1]
    assert [f["example_index"] for f in encoded] == [0, 1, 2]
    truncated = encoded[1]["input_ids"]
    assert (truncated[0], truncated[-1]) == (tokenizer.cls_token_id, tokenizer.sep_token_id)
    assert tokenizer.unk_token_id not in encoded[0]["input_ids"]


def test_encode_split_tokenizes_pairs_together(tokenizer):
    split = TextSplit(texts=["good movie"], labels=[0], text_pairs=["bad book"])
    feature = encode_split(split, tokenizer, max_length=32)[0]
    assert feature["input_ids"] == tokenizer("good movie", "bad book")["input_ids"]
    assert feature["input_ids"].count(tokenizer.sep_token_id) == 2
    assert feature["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_length_grouped_batches_cover_every_index_once(lengths):
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=3)
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 125
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        assert all(len(batch) == 8 for batch in batches)


def test_uneven_last_batch_is_kept():
    sampler = LengthGroupedBatches(list(range(1, 11)), batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    assert sorted(len(b) for b in batches) == [2, 4, 4]


def test_length_grouped_batches_are_seeded_per_epoch(lengths):
    def batches(seed, epoch):
        sampler = LengthGroupedBatches(lengths, batch_size=8, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(3, 1) == batches(3, 1)
    assert batches(3, 1) != batches(3, 2)
    assert batches(3, 1) != batches(4, 1)


def test_length_grouping_reduces_padding(lengths):
    grouped = padding(list(LengthGroupedBatches(lengths, batch_size=8, seed=0)), lengths)
    shuffled = padding(list(ShuffledBatches(lengths, batch_size=8, seed=0)), lengths)
    assert grouped < shuffled / 4


def test_shuffled_batches_cover_every_index_once(lengths):
    batches = list(ShuffledBatches(lengths, batch_size=7, seed=0))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))


def test_sorted_batches_cover_all_indices_longest_first():
    lengths = [5, 9, 1, 7, 3, 8, 2]
    batches = sorted_batches(lengths, batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths, reverse=True)


def test_loaders_pad_dynamically(tokenizer):
    split = TextSplit(texts=["good", "a very good movie", "bad book", "fine"], labels=[0, 1, 2, 0])
    encoded = encode_split(split, tokenizer, max_length=32)
    batch = next(iter(eval_loader(encoded, tokenizer, batch_size=2)))
    assert batch["input_ids"].shape == (2, 6)  # the two longest, padded to the longer
    assert batch["example_index"].tolist() == [1, 2]
    assert batch["labels"].tolist() == [1, 2]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert "example_index" not in model_inputs(batch)
    loader = train_loader(encoded, tokenizer, batch_size=2, seed=0, group_by_length=True)
    seen = torch.cat([b["example_index"] for b in loader]).tolist()
    assert sorted(seen) == [0, 1, 2, 3]
