"""Held-out metrics through `evaluate`, with the metric modules shipped in this package.

`evaluate.load("accuracy")` fetches its script from the hub; loading the same module by path
works offline. Also the two baselines a transfer-learning result must beat: the majority class
and TF-IDF + logistic regression trained on the same examples.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import evaluate
import numpy as np

METRIC_MODULES = Path(__file__).parent / "metric_modules"


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """An evaluate module shipped in `nlptransfer/metric_modules/<name>/`, loaded by path.

    `keep_in_memory`: each `compute` holds its predictions in memory, not in an Arrow cache file behind a file
    lock (whose debug lines, a few hundred a run, would reach a caller's root logger at DEBUG)."""
    return evaluate.load(str(METRIC_MODULES / name), keep_in_memory=True)


def classification_metrics(
    predictions: list[int], references: list[int], label_names: list[str]
) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""
    labels = list(range(len(label_names)))
    args = {"predictions": predictions, "references": references}
    per_class = {
        name: load_metric(name).compute(**args, labels=labels, average=None)[name]
        for name in ("precision", "recall", "f1")
    }
    matrix = load_metric("confusion_matrix").compute(**args, labels=labels)["confusion_matrix"]
    return {
        "accuracy": load_metric("accuracy").compute(**args)["accuracy"],
        "macro_f1": load_metric("f1").compute(**args, labels=labels, average="macro")["f1"],
        "per_class": {
            label: {metric: per_class[metric][i] for metric in per_class} | {
                "support": int(np.asarray(matrix)[i].sum())
            }
            for i, label in enumerate(label_names)
        },
        "confusion_matrix": np.asarray(matrix).tolist(),
    }


def multilabel_metrics(probabilities: np.ndarray, references: np.ndarray, label_names: list[str],
                       thresholds: np.ndarray | float = 0.5) -> dict:
    """Multi-label scores at per-label `thresholds`: micro/macro/sample F1, subset accuracy, per-label P/R/F1."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    references = np.asarray(references).astype(int)
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(label_names),))
    predicted = (np.asarray(probabilities) >= thresholds).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(references, predicted, average=None,
                                                                     zero_division=0)
    subset_accuracy = float(accuracy_score(references, predicted))
    return {
        "accuracy": subset_accuracy,
        "subset_accuracy": subset_accuracy,
        "micro_f1": float(f1_score(references, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(references, predicted, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(references, predicted, average="samples", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i]), "threshold": float(thresholds[i])}
            for i, name in enumerate(label_names)
        },
    }


def tune_thresholds(probabilities: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Per label, the probability threshold (0.05 .. 0.95) with the best F1 on these (validation) examples.

    A label without positives here keeps 0.5: any threshold would score the same.
    """
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    references = np.asarray(references).astype(int)
    thresholds = np.full(references.shape[1], 0.5)
    for label in range(references.shape[1]):
        if references[:, label].any():
            scores = [f1_score(references[:, label], probabilities[:, label] >= t, zero_division=0) for t in grid]
            thresholds[label] = grid[int(np.argmax(scores))]
    return thresholds


def baselines(train_texts: list[str], train_labels: list, test_texts: list[str], test_labels: list) -> dict[str, float]:
    """Test accuracy of the majority class and of TF-IDF + logistic regression (same train data).

    Multi-hot (multi-label) labels: the most frequent label set, and one logistic regression per
    label; both scored by subset accuracy. When several classes tie as the most frequent (a balanced
    few-shot sample), none is the majority: the baseline is the expected accuracy of guessing one of
    them (the mean of their test accuracies), and `majority_tied_classes` says how many tied.
    """
    from collections import Counter

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    multilabel = train_labels.ndim == 2
    rows = [tuple(row) for row in train_labels] if multilabel else train_labels.tolist()
    counts = Counter(rows)
    tied = [np.asarray(label) for label, count in counts.items() if count == max(counts.values())]
    classifier = LogisticRegression(max_iter=1000)
    bag_of_words = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        OneVsRestClassifier(classifier) if multilabel else classifier,
    )
    with warnings.catch_warnings():  # "label present in all training examples": fine for a baseline
        warnings.simplefilter("ignore", UserWarning)
        bag_of_words.fit(train_texts, train_labels)
    hits = [(test_labels == label).all(axis=1) if multilabel else test_labels == label for label in tied]
    return {
        "majority_accuracy": float(np.mean([np.mean(hit) for hit in hits])),
        "tfidf_logreg_accuracy": float(bag_of_words.score(test_texts, test_labels)),
    } | ({"majority_tied_classes": len(tied)} if len(tied) > 1 else {})


def format_report(metrics: dict, label_names: list[str]) -> str:
    """A plain-text table of per-class precision/recall/F1 for the console and logs."""
    width = max(len(name) for name in label_names + ["label"])
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for name in label_names:
        row = metrics["per_class"][name]
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {row['support']:7d}"
        )
    lines.append(f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}"
                 + (f"   micro-F1 {metrics['micro_f1']:.4f}" if "micro_f1" in metrics else ""))
    return "\n".join(lines)


def entity_metrics(predictions: list[list[str]], references: list[list[str]], entity_types: list[str]) -> dict:
    """Entity-level precision/recall/F1 (strict IOB2, seqeval) overall and per type, and token accuracy.

    Every type in `entity_types` gets a row, with zeros when the split has none of it.
    """
    scores = load_metric("seqeval").compute(predictions=predictions, references=references)
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 0}
    types = list(entity_types) + sorted(k for k in scores if not k.startswith("overall_") and k not in entity_types)
    return {
        "precision": scores["overall_precision"],
        "recall": scores["overall_recall"],
        "f1": scores["overall_f1"],
        "accuracy": scores["overall_accuracy"],
        "per_type": {
            kind: {metric: value for metric, value in scores.get(kind, zero).items() if metric != "number"}
            | {"support": scores.get(kind, zero)["number"]}
            for kind in types
        },
    }


def format_entity_report(metrics: dict) -> str:
    """A plain-text table of per-type entity precision/recall/F1 for the console and logs."""
    width = max(len(name) for name in [*metrics["per_type"], "entity type"])
    lines = [f"{'entity type':<{width}}  precision  recall     f1  support"]
    for name, row in metrics["per_type"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
                     f"  {row['support']:7d}")
    lines.append(f"entities: precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}  "
                 f"F1 {metrics['f1']:.4f}   token accuracy {metrics['accuracy']:.4f}")
    return "\n".join(lines)


def tagger_baselines(
    train_words: list[list[str]], train_tags: list[list[str]], test_words: list[list[str]], test_tags: list[list[str]]
) -> dict[str, float]:
    """Test scores of two trivial taggers a NER model must beat: all `O`, and each word's most frequent
    training tag (unknown words `O`; an I- that starts an entity read as B-)."""
    from collections import Counter, defaultdict

    from .data.conll import to_iob2

    seen: dict[str, Counter] = defaultdict(Counter)
    for words, tags in zip(train_words, train_tags):
        for word, tag in zip(words, tags):
            seen[word][tag] += 1
    lookup = [to_iob2([seen[w].most_common(1)[0][0] if w in seen else "O" for w in words]) for words in test_words]
    scores = load_metric("seqeval").compute(predictions=lookup, references=test_tags)
    all_o = [["O"] * len(tags) for tags in test_tags]
    return {
        "all_o_accuracy": load_metric("seqeval").compute(predictions=all_o, references=test_tags)["overall_accuracy"],
        "word_lookup_f1": scores["overall_f1"],
        "word_lookup_accuracy": scores["overall_accuracy"],
    }
