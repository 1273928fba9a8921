"""Query strategies and the stopping suggestion on hand-made probabilities and embeddings: each picks what a hand
computation picks."""

from __future__ import annotations

import numpy as np
import pytest

from nlptransfer.active import options, queries, stopping
from nlptransfer.active.loop import ActiveLoop
from nlptransfer.active.options import ActiveOptions
from nlptransfer.active.queries import PoolScores, pick
from nlptransfer.active.state import ActiveFolder
from nlptransfer.errors import ConfigError

PROBABILITIES = np.array([
    [0.90, 0.05, 0.05],  # 0: sure
    [0.50, 0.49, 0.01],  # 1: a near tie between two labels
    [0.34, 0.33, 0.33],  # 2: flat: least confident, highest entropy
    [0.60, 0.20, 0.20],  # 3
    [0.45, 0.10, 0.45],  # 4: an exact tie
])


def test_every_named_strategy_exists():
    assert set(options.QUERY_NAMES) == set(queries.RANKERS) | set(queries.SETS)


def test_uncertainty_strategies_pick_what_a_hand_computation_picks():
    scores = PoolScores(probabilities=PROBABILITIES)
    # least confidence: 1 - max = .10 .50 .66 .40 .55
    assert pick("least_confidence", scores, 3) == [2, 4, 1]
    # breaking ties: margins .85 .01 .01 .40 .00
    assert pick("breaking_ties", scores, 3) == [4, 1, 2]
    entropy = -(PROBABILITIES * np.log(PROBABILITIES)).sum(axis=1)
    assert pick("entropy", scores, 5) == list(np.argsort(-entropy))
    assert pick("entropy", scores, 1) == [2]


def test_random_is_seeded_and_distinct():
    scores = PoolScores(probabilities=np.full((50, 2), 0.5))
    first = pick("random", scores, 10, seed=3)
    assert first == pick("random", scores, 10, seed=3) != pick("random", scores, 10, seed=4)
    assert len(set(first)) == 10


def test_multilabel_uncertainty_looks_at_each_labels_threshold():
    sigmoid = np.array([[0.99, 0.01], [0.55, 0.02], [0.7, 0.6]])
    scores = PoolScores(probabilities=sigmoid, multilabel=True)
    assert pick("breaking_ties", scores, 1) == [1]  # 0.55 is the closest to 0.5
    assert pick("least_confidence", scores, 1) == [2]  # mean of 1-max(p,1-p): .01, .235, .35
    cardinal = PoolScores(probabilities=sigmoid, multilabel=True, labeled_cardinality=1.0)
    assert pick("cardinality", cardinal, 1) == [2]  # two labels predicted where one is usual, and unsure


def test_ner_aggregates_token_uncertainty_per_sentence():
    sure, unsure = [0.98, 0.01, 0.01], [0.4, 0.3, 0.3]
    sentences = [np.array([sure] * 6), np.array([sure] * 5 + [unsure]), np.array([[0.6, 0.3, 0.1]] * 3)]
    scores = PoolScores(token_probabilities=sentences)
    assert pick("least_confidence", scores, 1, aggregate="max") == [1]  # one token at 0.6 uncertainty
    assert pick("least_confidence", scores, 1, aggregate="mean") == [2]  # 0.4 on average beats 0.12
    assert pick("least_confidence", scores, 3, aggregate="sum")[:2] == [2, 1]


def test_class_balancing_favours_the_rare_class():
    probabilities = np.array([[0.9, 0.1]] * 6 + [[0.05, 0.95]] * 2)
    priority_only = pick("least_confidence", PoolScores(probabilities=probabilities), 2)
    assert all(i < 6 for i in priority_only)  # the common class is the less sure
    scores = PoolScores(probabilities=probabilities, labeled_counts=np.array([30, 2]))
    chosen = pick("least_confidence", scores, 2, balance=True)
    assert 6 in chosen or 7 in chosen  # the class with 2 labels gets a place
    with pytest.raises(ConfigError, match="balance=true"):
        pick("coreset", PoolScores(embeddings=np.eye(3)), 2, balance=True)


CLUSTERS = np.array([[10, 0], [10.2, 0], [9.9, 0.1], [0, 10], [0.1, 10.1], [0, 9.8], [-10, 0.2]], dtype=float)


def test_embedding_kmeans_covers_each_cluster():
    chosen = pick("embedding_kmeans", PoolScores(embeddings=CLUSTERS), 3, seed=0)
    groups = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "b", 6: "c"}
    assert sorted(groups[i] for i in chosen) == ["a", "b", "c"]


def test_coreset_takes_the_farthest_from_the_labeled():
    labeled = np.array([[1.0, 0.0]])  # the x-axis cluster is covered
    chosen = pick("coreset", PoolScores(embeddings=CLUSTERS, labeled_embeddings=labeled), 2)
    assert chosen[0] == 6  # (-1, 0) direction: farthest from (1, 0)
    assert chosen[1] in (3, 4, 5)  # then the y-axis cluster


def test_badge_starts_with_the_longest_gradient_and_spreads():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    probabilities = np.array([[0.99, 0.01], [0.98, 0.02], [0.55, 0.45], [0.6, 0.4]])
    chosen = pick("badge", PoolScores(probabilities=probabilities, embeddings=embeddings), 2, seed=0)
    assert chosen[0] == 2  # the most unsure has the longest gradient embedding
    assert len(set(chosen)) == 2


def test_unknown_strategy_and_empty_batch():
    with pytest.raises(ConfigError, match="unknown query strategy 'smart'"):
        pick("smart", PoolScores(probabilities=PROBABILITIES), 2)
    assert pick("entropy", PoolScores(probabilities=PROBABILITIES), 0) == []
    assert len(pick("entropy", PoolScores(probabilities=PROBABILITIES), 99)) == 5


def test_kappa_and_the_stopping_suggestion():
    assert stopping.kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert stopping.kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == pytest.approx(0.0)
    curve = [(16, 0.50), (32, 0.60), (48, 0.70)]
    assert stopping.slope(curve) == pytest.approx(62.5)  # 0.2 accuracy over 32 labels: 62.5 points per 100
    assert stopping.suggestion([0.8, 0.995, 0.999], curve)["stop"] is True
    assert stopping.suggestion([0.995, 0.98], curve)["stop"] is False


PASSES = np.array([  # (passes, candidates, labels): two dropout passes over three texts
    [[0.9, 0.1], [0.5, 0.5], [0.8, 0.2]],
    [[0.1, 0.9], [0.5, 0.5], [0.6, 0.4]],
])


def test_bald_picks_what_a_hand_computation_picks():
    # H(mean) - mean H, in nats: text 0 .6931 - .3251 = .3681 (each pass sure, the passes disagree);
    # text 1 .6931 - .6931 = 0 (unsure, but every pass agrees); text 2 .6109 - (.5004 + .6730) / 2 = .0242
    scores = PoolScores(probabilities=PASSES.mean(axis=0), pass_probabilities=PASSES)
    assert queries.bald(scores) == pytest.approx([0.3681, 0.0, 0.0242], abs=1e-4)
    assert pick("bald", scores, 3) == [0, 2, 1]
    assert 1 in pick("entropy", PoolScores(probabilities=PASSES.mean(axis=0)), 2)  # entropy asks the agreeing one
    with pytest.raises(ConfigError, match="query=bald needs"):
        pick("bald", PoolScores(probabilities=PROBABILITIES), 2)


def test_bald_is_zero_when_every_pass_is_the_same(tiny_model_dir, tmp_path):
    """A tiny classifier with dropout off gives equal passes, so BALD's score is 0; with dropout on the passes differ
    (and a seed repeats them), and a round with query=bald picks by them."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from nlptransfer.active.scoring import Scorer

    texts = ["a good film", "a bad day", "so so"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def scorer(dropout: float) -> Scorer:
        config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=3, hidden_dropout_prob=dropout,
                                            attention_probs_dropout_prob=dropout, classifier_dropout=dropout)
        torch.manual_seed(0)
        return Scorer(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, config=config), tokenizer,
                      ["neg", "neu", "pos"])

    off = scorer(0.0).dropout_probabilities(texts, passes=4)
    assert off.shape == (4, 3, 3) and np.allclose(off, off[0])
    assert queries.bald(PoolScores(pass_probabilities=off)) == pytest.approx([0, 0, 0], abs=1e-6)
    on = scorer(0.5)
    passes = on.dropout_probabilities(texts, passes=4, seed=1)
    assert not np.allclose(passes, passes[0]) and (queries.bald(PoolScores(pass_probabilities=passes)) > 0).all()
    assert np.array_equal(passes, on.dropout_probabilities(texts, passes=4, seed=1))
    assert not on.model.training  # scoring goes on with dropout off
    loop = ActiveLoop(ActiveFolder(tmp_path / "al").open(), texts, on.label_names,
                      ActiveOptions(query="bald", mc_passes=4, batch_size=1, seed=0))
    probabilities, embeddings, passes = loop.score_pool(on, texts, 1)  # the round's passes are seeded seed + round
    assert np.array_equal(passes, on.dropout_probabilities(texts, passes=4, seed=1))
    record = loop.pick(1, texts, {}, probabilities, embeddings, on, passes)
    assert record["picks"] == [texts[int(np.argmax(queries.bald(PoolScores(pass_probabilities=passes))))]]
    loop.folder.close()
