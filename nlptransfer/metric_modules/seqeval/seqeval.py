"""seqeval: entity-level precision, recall and F1 of tagged sequences, per entity type and overall.

Shipped with nlptransfer so that evaluate loads it offline, by path.

Same inputs and outputs as the hub's `evaluate-metric/seqeval` module, but strict IOB2 by default:
an entity counts only when its B- and I- tags and its type all match the reference exactly, and
an I- tag that does not continue an entity starts none. Token accuracy is the share of tags right.
"""

import warnings

import datasets
import evaluate
from seqeval import scheme as schemes
from seqeval.metrics import accuracy_score, classification_report


class Seqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level precision, recall and F1 (seqeval), per type and overall, and token accuracy.",
            citation="",
            inputs_description="predictions and references: per sentence, a list of tags such as O, B-PER, I-PER.",
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
                "references": datasets.Sequence(datasets.Value("string", id="label"), id="sequence"),
            }),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions, references, mode="strict", scheme="IOB2", suffix=False, zero_division=0):
        """`mode=None` scores like conlleval (lenient about invalid tag sequences); `scheme` names a seqeval scheme."""
        scheme_class = getattr(schemes, scheme) if mode == "strict" else None
        with warnings.catch_warnings():  # no entity at all gives undefined averages, reported as 0
            warnings.simplefilter("ignore")
            report = classification_report(references, predictions, mode=mode, scheme=scheme_class, suffix=suffix,
                                           output_dict=True, zero_division=zero_division)
        overall = report.pop("micro avg")
        report.pop("macro avg", None)
        report.pop("weighted avg", None)
        scores = {
            entity_type: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                          "f1": float(row["f1-score"]), "number": int(row["support"])}
            for entity_type, row in report.items()
        }
        return scores | {
            "overall_precision": float(overall["precision"]),
            "overall_recall": float(overall["recall"]),
            "overall_f1": float(overall["f1-score"]),
            "overall_accuracy": float(accuracy_score(references, predictions)),
        }
