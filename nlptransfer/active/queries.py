"""Query strategies: which unlabeled texts the next batch asks a person to label.

Each strategy reads what the current model says about the pool (`PoolScores`: class probabilities, pooled embeddings,
per-token probabilities for NER) and returns the indices of the `n` candidates to label, best first. Ranking strategies
(`least_confidence`, `breaking_ties`, `entropy`, `bald`, `random`) give a score per candidate, so class balancing can
reorder them; set strategies (`embedding_kmeans`, `coreset`, `badge`) choose a diverse set at once. Numpy and
scikit-learn only; the names are listed, without numpy, in `active.options.QUERY_NAMES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


@dataclass
class PoolScores:
    """What the current model says about the candidates (the unlabeled pool texts)."""

    probabilities: np.ndarray | None = None
    """(candidates, labels): softmax probabilities, or independent sigmoid ones when `multilabel`."""
    embeddings: np.ndarray | None = None
    """(candidates, dim): the pooled sentence embeddings."""
    labeled_embeddings: np.ndarray | None = None
    """(labeled, dim): the labeled texts' embeddings (coreset's centres)."""
    token_probabilities: list[np.ndarray] = field(default_factory=list)
    """NER: per candidate sentence a (tokens, tags) array; its uncertainty is aggregated per sentence."""
    multilabel: bool = False
    labeled_counts: np.ndarray | None = None
    """Per label, how many labeled examples have it (class balancing favours the rare ones)."""
    labeled_cardinality: float | None = None
    """Multi-label: the labeled texts' mean number of labels."""
    pass_probabilities: np.ndarray | None = None
    """BALD: (passes, candidates, labels), the probabilities of each stochastic forward pass (dropout on)."""

    def __len__(self) -> int:
        for value in (self.probabilities, self.embeddings):
            if value is not None:
                return len(value)
        return len(self.token_probabilities)


def entropies(probabilities: np.ndarray, multilabel: bool) -> np.ndarray:
    """Entropy over the last axis (multi-label: the sum of each label's binary entropy)."""
    if multilabel:
        p = np.clip(probabilities, 1e-12, 1 - 1e-12)
        return -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(axis=-1)
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(axis=-1)


def token_uncertainty(probabilities: np.ndarray, measure: str) -> np.ndarray:
    """Per row of `probabilities` (rows sum to 1), how unsure the model is: higher is more unsure."""
    if measure == "least_confidence":
        return 1.0 - probabilities.max(axis=1)
    if measure == "breaking_ties":
        top = np.sort(probabilities, axis=1)
        return -(top[:, -1] - top[:, -2]) if probabilities.shape[1] > 1 else np.zeros(len(probabilities))
    return entropies(probabilities, multilabel=False)


def binary_uncertainty(probabilities: np.ndarray, measure: str) -> np.ndarray:
    """Multi-label (one sigmoid per label): least_confidence averages each label's 1 - max(p, 1-p); breaking_ties
    takes the label closest to its 0.5 threshold; entropy sums the labels' binary entropies."""
    if measure == "least_confidence":
        return (1.0 - np.maximum(probabilities, 1.0 - probabilities)).mean(axis=1)
    if measure == "breaking_ties":
        return -np.abs(probabilities - 0.5).min(axis=1)
    return entropies(probabilities, multilabel=True)


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {"max": np.max, "mean": np.mean, "sum": np.sum}
"""How NER's per-token uncertainty becomes a sentence's: the most unsure token (max), the average, or the total."""


def uncertainty(scores: PoolScores, measure: str, aggregate: str = "max") -> np.ndarray:
    """Per candidate, higher is more unsure, by `measure` (least_confidence, breaking_ties, entropy)."""
    if scores.token_probabilities:
        reduce = AGGREGATES[aggregate]
        return np.array([float(reduce(token_uncertainty(tokens, measure))) if len(tokens) else 0.0
                         for tokens in scores.token_probabilities])
    if scores.probabilities is None:
        raise ConfigError(f"query={measure} needs a trained model's probabilities; label a few texts first (the "
                          "cold start picks by embeddings)")
    if scores.multilabel:
        return binary_uncertainty(scores.probabilities, measure)
    return token_uncertainty(scores.probabilities, measure)


def top(priority: np.ndarray, n: int) -> list[int]:
    """The `n` highest priorities, best first; ties keep the pool's order (a stable sort)."""
    return [int(i) for i in np.argsort(-priority, kind="stable")[:n]]


def balanced(priority: np.ndarray, scores: PoolScores, n: int) -> list[int]:
    """The batch shared among the predicted classes, most to the rarest among the labels (quota proportional to
    1 / (labeled count + 1)), each class's share taken by `priority`; left-over places by priority alone."""
    if scores.probabilities is None or scores.multilabel or scores.labeled_counts is None:
        raise ConfigError("balance=true needs single-label probabilities and the labeled counts: use it after the "
                          "first round of a single-label task")
    predicted = scores.probabilities.argmax(axis=1)
    weights = 1.0 / (np.asarray(scores.labeled_counts, dtype=float) + 1.0)
    quota = np.floor(n * weights / weights.sum()).astype(int)
    chosen: list[int] = []
    for label in np.argsort(-weights, kind="stable"):
        members = np.flatnonzero(predicted == label)
        chosen += [int(members[i]) for i in np.argsort(-priority[members], kind="stable")[:quota[label]]]
    rest = [i for i in top(priority, len(priority)) if i not in set(chosen)]
    return (chosen + rest)[:n]


def normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def needs_embeddings(scores: PoolScores, name: str) -> np.ndarray:
    if scores.embeddings is None:
        raise ConfigError(f"query={name} needs the pool's embeddings; the scorer gave none")
    return scores.embeddings


def kmeans_centres(scores: PoolScores, n: int, rng: np.random.Generator) -> list[int]:
    """Coverage: k-means with `n` clusters over the normalized embeddings, the candidate nearest each centre."""
    from sklearn.cluster import KMeans

    vectors = normalized(needs_embeddings(scores, "embedding_kmeans"))
    n = min(n, len(vectors))
    model = KMeans(n_clusters=n, n_init=3, random_state=int(rng.integers(2**31))).fit(vectors)
    distances = ((vectors[:, None, :] - model.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
    chosen: list[int] = []
    for centre in np.argsort(np.bincount(model.labels_, minlength=n))[::-1]:  # biggest cluster first
        for i in np.argsort(distances[:, centre], kind="stable"):
            if int(i) not in chosen:
                chosen.append(int(i))
                break
    return chosen


def coreset(scores: PoolScores, n: int, rng: np.random.Generator) -> list[int]:
    """Greedy k-centre (Sener and Savarese 2018): again and again the candidate farthest from every labeled text and
    every candidate already chosen; with nothing labeled the first is drawn at random."""
    vectors = normalized(needs_embeddings(scores, "coreset"))
    if scores.labeled_embeddings is not None and len(scores.labeled_embeddings):
        centres = normalized(scores.labeled_embeddings)
        nearest = np.min(((vectors[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)
        chosen: list[int] = []
    else:
        first = int(rng.integers(len(vectors)))
        chosen, nearest = [first], ((vectors - vectors[first]) ** 2).sum(axis=1)
    while len(chosen) < min(n, len(vectors)):
        nearest[chosen] = -1.0
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((vectors - vectors[pick]) ** 2).sum(axis=1))
    return chosen


def badge(scores: PoolScores, n: int, rng: np.random.Generator) -> list[int]:
    """BADGE (Ash et al. 2020): the last layer's gradient embedding (p - onehot(argmax p)) x embedding, seeded by
    k-means++ (each next pick drawn with probability proportional to its squared distance to the nearest pick), so
    the batch is both unsure (long gradients) and diverse."""
    if scores.probabilities is None or scores.multilabel:
        raise ConfigError("query=badge needs single-label probabilities; label a few texts first, or use "
                          "query=embedding_kmeans")
    vectors, probabilities = needs_embeddings(scores, "badge"), scores.probabilities
    residual = probabilities.copy()
    residual[np.arange(len(residual)), probabilities.argmax(axis=1)] -= 1.0
    gradients = (residual[:, :, None] * vectors[:, None, :]).reshape(len(vectors), -1)
    chosen = [int(np.argmax(np.linalg.norm(gradients, axis=1)))]
    nearest = ((gradients - gradients[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(n, len(vectors)):
        nearest[chosen] = 0.0
        if nearest.sum() <= 0:
            pick = int(rng.choice([i for i in range(len(vectors)) if i not in chosen]))
        else:
            pick = int(rng.choice(len(vectors), p=nearest / nearest.sum()))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((gradients - gradients[pick]) ** 2).sum(axis=1))
    return chosen


def cardinality(scores: PoolScores, rng: np.random.Generator) -> np.ndarray:
    """Multi-label (small-text's label cardinality inconsistency): how far a text's predicted number of labels is
    from the labeled texts' mean number, times its mean label uncertainty."""
    if scores.probabilities is None or not scores.multilabel:
        raise ConfigError("query=cardinality is for multi-label tasks (task=multilabel)")
    mean = 1.0 if scores.labeled_cardinality is None else scores.labeled_cardinality
    predicted = (scores.probabilities >= 0.5).sum(axis=1)
    return np.abs(predicted - mean) * binary_uncertainty(scores.probabilities, "least_confidence")


def bald(scores: PoolScores) -> np.ndarray:
    """BALD with MC dropout (Houlsby et al. 2011; Gal et al. 2017; small-text's BALD): the mutual information between
    the label and the model's weights, H(mean_t p_t) - mean_t H(p_t) over T stochastic passes: high where the passes
    are each sure but disagree; 0 where every pass says the same."""
    passes = scores.pass_probabilities
    if passes is None or passes.ndim != 3:
        raise ConfigError("query=bald needs a trained model's probabilities from several dropout passes; label a few "
                          "texts first (the cold start picks by embeddings)")
    return entropies(passes.mean(axis=0), scores.multilabel) - entropies(passes, scores.multilabel).mean(axis=0)


RANKERS: dict[str, Callable[[PoolScores, np.random.Generator, str], np.ndarray]] = {
    "random": lambda scores, rng, aggregate: rng.random(len(scores)),
    "least_confidence": lambda scores, rng, aggregate: uncertainty(scores, "least_confidence", aggregate),
    "breaking_ties": lambda scores, rng, aggregate: uncertainty(scores, "breaking_ties", aggregate),
    "entropy": lambda scores, rng, aggregate: uncertainty(scores, "entropy", aggregate),
    "cardinality": lambda scores, rng, aggregate: cardinality(scores, rng),
    "bald": lambda scores, rng, aggregate: bald(scores),
}
"""Strategies that score every candidate (higher: ask sooner)."""

SETS: dict[str, Callable[[PoolScores, int, np.random.Generator], list[int]]] = {
    "embedding_kmeans": kmeans_centres, "coreset": coreset, "badge": badge}
"""Strategies that choose a diverse batch as a whole."""


def pick(name: str, scores: PoolScores, n: int, seed: int = 0, balance: bool = False,
         aggregate: str = "max") -> list[int]:
    """The `n` candidates (indices into `scores`) that query strategy `name` asks about next, best first."""
    rng = np.random.default_rng(seed)
    n = min(n, len(scores))
    if n <= 0:
        return []
    if name in SETS:
        if balance:
            raise ConfigError(f"balance=true reorders ranking strategies ({', '.join(RANKERS)}); query={name} "
                              "chooses a diverse batch itself: drop balance=true")
        return SETS[name](scores, n, rng)
    if name not in RANKERS:
        raise ConfigError(f"unknown query strategy '{name}'; choose one of {', '.join([*RANKERS, *SETS])}")
    priority = RANKERS[name](scores, rng, aggregate)
    return balanced(priority, scores, n) if balance else top(priority, n)
