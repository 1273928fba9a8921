"""Query strategies and the stopping suggestion on hand-made probabilities and embeddings: each picks what a hand
computation picks."""

from __future__ import annotations

import numpy as np
import pytest

from nlptransfer.active import options, queries, stopping
from nlptransfer.active.queries import PoolScores, pick
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
