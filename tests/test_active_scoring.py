"""The pool scored in length order (`active/scoring.py`, `active/ner.py`): batches of like lengths, each text's scores
put back in the pool's order, equal to scoring each text alone."""

from __future__ import annotations

import numpy as np
import torch

from nlptransfer.active.ner import word_probabilities
from nlptransfer.active.scoring import Scorer

# lengths from 1 word to 60, shuffled so that pool order and length order differ
TEXTS = ["good", "a " * 60 + "end", "the film was fine", "bad " * 25, "ok then", "so " * 40 + "long", "x", "nice day"]


def tiny(model_dir: str, head: str, dropout: float | None = None) -> Scorer:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    kind = AutoModelForTokenClassification if head == "tokens" else AutoModelForSequenceClassification
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    torch.manual_seed(3)
    model = kind.from_pretrained(model_dir, num_labels=3, **extra)
    return Scorer(model, AutoTokenizer.from_pretrained(model_dir), ["a", "b", "c"])


def test_length_order_batches_short_texts_together(tiny_model_dir):
    scorer = tiny(tiny_model_dir, "text")
    order = scorer.length_order(TEXTS, 128)
    lengths = [len(scorer.tokenizer(TEXTS[i])["input_ids"]) for i in order]
    assert lengths == sorted(lengths) and TEXTS[order[-1]].startswith("a a a")
    batches = list(scorer.batches(TEXTS, 3, 128))
    assert sorted(np.concatenate([rows for rows, _ in batches]).tolist()) == list(range(len(TEXTS)))
    assert batches[0][1]["input_ids"].shape[1] < 10  # the short texts pad to each other, not to 60 words


def test_scores_in_length_order_equal_one_text_at_a_time_in_pool_order(tiny_model_dir):
    scorer = tiny(tiny_model_dir, "text")
    seen: list = []
    probabilities, embeddings = scorer.score(TEXTS, 3, 128, on_encoder=lambda out, mask, rows: seen.extend(rows))
    alone = [scorer.score([text], 1, 128) for text in TEXTS]
    assert np.allclose(probabilities, np.concatenate([p for p, _ in alone]), atol=1e-5)
    assert np.allclose(embeddings, np.concatenate([e for _, e in alone]), atol=1e-5)
    assert sorted(seen) == list(range(len(TEXTS))) and seen != list(range(len(TEXTS)))
    without_dropout = tiny(tiny_model_dir, "text", dropout=0.0)  # dropout passes then repeat the plain scores
    passes = without_dropout.dropout_probabilities(TEXTS, 2, 3, 128)
    assert passes.shape == (2, len(TEXTS), 3)
    assert np.allclose(passes[1], without_dropout.score(TEXTS, 1, 128)[0], atol=1e-5)


def test_ner_word_scores_in_length_order_equal_one_sentence_at_a_time(tiny_model_dir):
    scorer = tiny(tiny_model_dir, "tokens")
    rows, embeddings = word_probabilities(scorer, [text.strip() for text in TEXTS], 3, 128)
    for text, row, embedding in zip(TEXTS, rows, embeddings):
        (alone,), alone_embedding = word_probabilities(scorer, [text.strip()], 1, 128)
        assert row.shape == (len(text.split()), 3) and np.allclose(row, alone, atol=1e-5)
        assert np.allclose(embedding, alone_embedding[0], atol=1e-5)


def test_an_empty_list_scores_to_empty_arrays(tiny_model_dir):
    probabilities, embeddings = tiny(tiny_model_dir, "text").score([])
    assert probabilities.shape == (0, 3) and len(embeddings) == 0
