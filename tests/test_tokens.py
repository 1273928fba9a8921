"""nlptransfer/tokens.py: sub-token alignment (WordPiece and byte-level BPE), windows, predictions back to words."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, RobertaTokenizer

from nlptransfer.engine import tokens
from nlptransfer.engine.tokens import IGNORED

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
WORDS = ["john", "smithson", "went", "to", "new", "york", "today"]
TAGS = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]


@pytest.fixture(scope="module")
def wordpiece(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A RoBERTa-style byte-level BPE tokenizer trained on a few sentences; it needs the prefix space."""
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(["John Smith went to New York today", "I love Paris in the spring"] * 5,
                                vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder = tmp_path_factory.mktemp("bpe")
    trainer.save_model(str(folder))
    return RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), add_prefix_space=True)


def first_subtokens(tokenizer, words) -> list[int]:
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    return [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
def test_first_subtoken_carries_the_label(name, request):
    tokenizer = request.getfixturevalue(name)
    encoded = tokens.encode_words([WORDS], [TAGS], tokenizer, LABELS, max_length=64, stride=8)
    (feature,) = encoded.features
    labels, ids = feature["labels"], feature["input_ids"]
    starts = first_subtokens(tokenizer, WORDS)
    assert len(ids) > len(WORDS) + 2  # some words are split into several sub-tokens
    assert [labels[i] for i in starts] == [LABELS.index(t) for t in TAGS]
    assert all(label == IGNORED for i, label in enumerate(labels) if i not in starts)
    assert labels[0] == labels[-1] == IGNORED  # special tokens
    assert encoded.windows[0].word_starts == list(enumerate(starts))


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
def test_label_all_subtokens_continues_with_i(name, request):
    tokenizer = request.getfixturevalue(name)
    encoded = tokens.encode_words([WORDS], [TAGS], tokenizer, LABELS, 64, 8, label_all_subtokens=True)
    labels = encoded.features[0]["labels"]
    word_ids = tokenizer(WORDS, is_split_into_words=True).word_ids()
    expected = [IGNORED if w is None else LABELS.index(TAGS[w]) if i in first_subtokens(tokenizer, WORDS)
                else LABELS.index(TAGS[w].replace("B-", "I-")) for i, w in enumerate(word_ids)]
    assert labels == expected
    assert LABELS.index("I-PER") in [labels[i] for i, w in enumerate(word_ids) if w == 0][1:]  # "john" is split


def test_bpe_words_get_the_prefix_space(bpe):
    inner = bpe(["York", "York"], is_split_into_words=True).tokens()[1:-1]
    assert inner[0].startswith("Ġ")  # the first word too, as it would be inside a sentence
    assert inner[:len(inner) // 2] == inner[len(inner) // 2:]


def check_windows(counts: list[int], budget: int, stride: int) -> None:
    windows = tokens.plan_windows(counts, budget, stride)
    owned = [w for _, _, own_start, own_end in windows for w in range(own_start, own_end)]
    assert owned == list(range(len(counts)))  # every word predicted once, in order
    for (start, end, own_start, own_end), following in zip(windows, windows[1:] + [None]):
        assert start <= own_start < own_end <= end
        assert end - start == 1 or sum(counts[start:end]) <= budget
        if following:
            assert start < following[0] and sum(counts[following[0]:end]) <= max(stride, 0)


def test_windows_cover_every_word_once():
    rng = random.Random(0)
    for _ in range(500):
        counts = [rng.choice([1, 1, 1, 2, 3, 5, 12]) for _ in range(rng.randint(1, 40))]
        check_windows(counts, budget=rng.randint(1, 12), stride=rng.randint(0, 6))


def test_a_short_sentence_is_one_window_and_a_long_one_overlaps():
    assert tokens.plan_windows([1] * 5, budget=10, stride=3) == [(0, 5, 0, 5)]
    assert tokens.plan_windows([1] * 12, budget=6, stride=2) == [(0, 6, 0, 5), (4, 10, 5, 9), (8, 12, 9, 12)]
    assert tokens.plan_windows([2, 20, 2], budget=6, stride=2) == [(0, 1, 0, 1), (1, 2, 1, 2), (2, 3, 2, 3)]


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
def test_long_sentences_lose_no_word_and_predictions_map_back(name, request):
    tokenizer = request.getfixturevalue(name)
    rng = random.Random(1)
    sentences = [[rng.choice(WORDS) for _ in range(n)] for n in (3, 40, 75)]
    tags = [[rng.choice(LABELS) for _ in words] for words in sentences]
    encoded = tokens.encode_words(sentences, tags, tokenizer, LABELS, max_length=16, stride=4)
    assert len(encoded) > 3 and max(encoded.lengths) <= 16
    starts = sorted((w.sentence, word) for w in encoded.windows for word, _ in w.word_starts)
    assert starts == [(s, i) for s, words in enumerate(sentences) for i in range(len(words))]
    labeled = sum(sum(label != IGNORED for label in f["labels"]) for f in encoded.features)
    assert labeled == sum(map(len, sentences))  # each word's label is in the loss once

    # logits that score each window's labels highest come back as the gold tags of the words
    logits = np.zeros((len(encoded), 16, len(LABELS)))
    for i, feature in enumerate(encoded.features):
        for position, label in enumerate(feature["labels"]):
            if label != IGNORED:
                logits[i, position, label] = 1.0
    predicted = tokens.word_predictions(logits, encoded)
    assert [[LABELS[i] for i in sentence] for sentence in predicted] == tags


def test_a_word_longer_than_the_window_keeps_its_label(wordpiece):
    words = ["hi", "x" * 40, "there"]  # 40 sub-tokens (x ##x ##x ...)
    encoded = tokens.encode_words([words], [["O", "B-PER", "O"]], wordpiece, LABELS, max_length=10, stride=2)
    assert len(encoded) == 3 and max(encoded.lengths) == 10
    assert [w.word_starts for w in encoded.windows] == [[(0, 1)], [(1, 1)], [(2, 1)]]
    assert encoded.features[1]["labels"][1] == LABELS.index("B-PER")


def test_words_without_subtokens_become_unknown(wordpiece):
    words = ["john", "\u200b", "today"]  # a zero-width space: BERT's normalizer removes it
    assert wordpiece(words, is_split_into_words=True).word_ids().count(1) == 0
    encoded = tokens.encode_words([words], [["B-PER", "O", "O"]], wordpiece, LABELS, 32, 4)
    assert [word for word, _ in encoded.windows[0].word_starts] == [0, 1, 2]
    position = encoded.windows[0].word_starts[1][1]
    assert encoded.features[0]["input_ids"][position] == wordpiece.unk_token_id


def test_loaders_pad_labels_with_ignored(wordpiece):
    sentences = [["john"], WORDS, ["new", "york"]]
    tags = [["B-PER"], TAGS, ["B-LOC", "I-LOC"]]
    encoded = tokens.encode_words(sentences, tags, wordpiece, LABELS, 64, 8)
    for loader in (tokens.train_loader(encoded, wordpiece, 2, seed=0, group_by_length=True),
                   tokens.eval_loader(encoded, wordpiece, 3)):
        for batch in loader:
            assert batch["labels"].shape == batch["input_ids"].shape
            assert (batch["labels"][batch["attention_mask"] == 0] == IGNORED).all()
            assert batch["example_index"].dtype == torch.int64


def test_padded_logits_have_one_length():
    class Model(torch.nn.Module):
        def forward(self, input_ids):
            return type("Output", (), {"logits": torch.ones(*input_ids.shape, 3)})

    padded = tokens.PaddedLogits(Model(), length=10)(input_ids=torch.zeros(2, 4, dtype=torch.long)).logits
    assert padded.shape == (2, 10, 3)
    assert padded[:, :4].eq(1).all() and padded[:, 4:].eq(0).all()
