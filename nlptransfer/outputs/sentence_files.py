"""The files that make a pooled model's folder load in sentence-transformers and SetFit as well.

A model with a pooling head (`modeling_nlptransfer.PooledForSequenceClassification`) keeps its
encoder's own weight names, so its `model/` folder is also a sentence-transformers folder once
`modules.json` and the pooling settings sit beside it, and a SetFit folder once its head is there
as `model_head.pkl` (a scikit-learn classifier with the same weights) with `config_setfit.json`.
Its config.json names a model type transformers does not know (see `modeling_nlptransfer`), so
sentence_bert_config.json points transformers' config reader at `encoder_config.json` instead
(`config_kwargs`: `_configuration_file`, the name transformers' `PretrainedConfig.get_config_dict`
reads its file by): no code of the folder runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..modeling_nlptransfer import ENCODER_CONFIG_FILE
from .files import write_bytes, write_json

SETFIT_HEAD = "model_head.pkl"
POOLING_FLAGS = {"mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens", "cls": "pooling_mode_cls_token"}


def write_sentence_files(folder: Path, model, max_length: int) -> None:
    """modules.json, 1_Pooling/, 2_Normalize/ (if normalized), the sentence-transformers configs, and SetFit's
    config_setfit.json and model_head.pkl, for the pooled classifier `model` saved in `folder`."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if model.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(folder / "modules.json", modules)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    write_json(folder / "1_Pooling" / "config.json",
               {"word_embedding_dimension": model.config.hidden_size, "pooling_mode_mean_sqrt_len_tokens": False}
               | {flag: mode == model.pooling_mode for mode, flag in POOLING_FLAGS.items()})
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False,
                                                      "config_kwargs": {"_configuration_file": ENCODER_CONFIG_FILE}})
    write_json(folder / "config_sentence_transformers.json",
               {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    id2label = model.config.id2label
    labels = [id2label[i] for i in sorted(id2label)]
    multilabel = model.config.problem_type == "multi_label_classification"
    thresholds = (getattr(model.config, "nlptransfer", None) or {}).get("thresholds")
    write_json(folder / "config_setfit.json", {"labels": labels, "normalize_embeddings": False}
               | ({"multi_target_strategy": "one-vs-rest"} if multilabel else {}))
    write_bytes(folder / SETFIT_HEAD, pickled(sklearn_head(model.score, multilabel, thresholds)))


def pickled(estimator) -> bytes:
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


@torch.no_grad()
def sklearn_head(score: torch.nn.Linear, multilabel: bool, thresholds: list[float] | None = None):
    """A fitted scikit-learn classifier computing what the linear head `score` computes on an embedding.

    Single-label: a multinomial `LogisticRegression` with the head's weights (softmax of the same
    logits; for two labels the difference of the two rows, whose sigmoid is that softmax). Multi-label:
    a `OneVsRestClassifier` of one logistic regression per label, each threshold folded into its
    intercept so that `predict` (probability 0.5) picks the labels the run's thresholds pick.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    weight, bias = score.weight.double().cpu().numpy(), score.bias.double().cpu().numpy()
    labels, width = weight.shape
    if not multilabel:
        head = LogisticRegression().fit(*dummy_data(width, labels))
        if labels == 2:
            head.coef_, head.intercept_ = weight[1:] - weight[:1], bias[1:] - bias[:1]
        else:
            head.coef_, head.intercept_ = weight.copy(), bias.copy()
        head.classes_ = np.arange(labels)
        return head
    x, y = dummy_data(width, labels)
    head = OneVsRestClassifier(LogisticRegression()).fit(x, np.eye(labels, dtype=int)[y])
    cuts = np.zeros(labels) if thresholds is None else np.log(np.clip(thresholds, 1e-6, 1 - 1e-6)) - np.log1p(
        -np.clip(thresholds, 1e-6, 1 - 1e-6))
    for k, estimator in enumerate(head.estimators_):
        estimator.coef_, estimator.intercept_ = weight[k:k + 1].copy(), np.array([bias[k] - cuts[k]])
    return head


def dummy_data(width: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """A few points of every label, only to give scikit-learn's estimators their fitted shape."""
    y = np.repeat(np.arange(labels), 2)
    return np.random.default_rng(0).normal(size=(len(y), width)), y
