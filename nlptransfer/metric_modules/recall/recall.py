"""Recall: the share of true positives that are found.

Shipped with nlptransfer so that evaluate loads it offline, by path.

Same inputs and outputs as the hub's `evaluate-metric/recall` module; computed by scikit-learn.
"""

import datasets
import evaluate
from sklearn.metrics import recall_score


class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Recall: the share of true positives that are found.",
            citation="",
            inputs_description="predictions and references: lists of integer class ids.",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None,
                 zero_division=0):
        score = recall_score(
            references, predictions, labels=labels, pos_label=pos_label, average=average,
            sample_weight=sample_weight, zero_division=zero_division,
        )
        return {"recall": score.tolist() if hasattr(score, "tolist") else float(score)}
