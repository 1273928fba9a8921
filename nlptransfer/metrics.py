"""Held-out metrics through `evaluate`, with the metric modules shipped in this package.

`evaluate.load("accuracy")` fetches its script from the hub; loading the same module by path
works offline. Also the two baselines a transfer-learning result must beat: the majority class
and TF-IDF + logistic regression trained on the same examples.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate
import numpy as np

METRIC_MODULES = Path(__file__).parent / "metric_modules"


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """An evaluate module shipped in `nlptransfer/metric_modules/<name>/`, loaded by path."""
    return evaluate.load(str(METRIC_MODULES / name))


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


def baselines(
    train_texts: list[str], train_labels: list[int], test_texts: list[str], test_labels: list[int]
) -> dict[str, float]:
    """Test accuracy of the majority class and of TF-IDF + logistic regression (same train data)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    majority = np.bincount(train_labels).argmax()
    bag_of_words = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=1000),
    ).fit(train_texts, train_labels)
    return {
        "majority_accuracy": float(np.mean(np.asarray(test_labels) == majority)),
        "tfidf_logreg_accuracy": float(bag_of_words.score(test_texts, test_labels)),
    }


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
    lines.append(f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}")
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

    from .conll import to_iob2

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
