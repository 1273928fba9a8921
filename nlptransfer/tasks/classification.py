"""Text classification: one label per text (`classification`) or any number of labels (`multilabel`).

Texts (and optional text pairs) are read from tables, packaged corpora or the hub, split
stratified and deduplicated, tokenized once (long texts truncated, head+tail or in sliding
windows whose logits are pooled), and scored with accuracy and macro-F1 (multi-label:
micro/macro-F1 at per-label thresholds tuned on the validation split).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..options import LONG_TEXT, POOLING
from .base import Task, TestOutcome, sigmoid

if TYPE_CHECKING:  # numpy and the data, engine and metrics modules (pandas, torch, evaluate) load when the task works
    import numpy as np

    from ..data.classification import ClassificationData, TextSplit
    from ..engine.batches import EncodedSplit

logger = logging.getLogger("nlptransfer")


def fixed_threshold(cfg) -> float | None:
    """The fixed multi-label threshold, or None for `threshold=tune`."""
    if cfg.threshold == "tune":
        return None
    try:
        value = float(cfg.threshold)
    except ValueError:
        raise ConfigError(f"threshold must be 'tune' or a number in [0, 1], got '{cfg.threshold}'") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"threshold must be in [0, 1], got {value}; e.g. threshold=0.5 or threshold=tune")
    return value


def targets(split: TextSplit, data: ClassificationData) -> np.ndarray:
    """A split's labels as an array: label ids, or multi-hot rows for multi-label data."""
    import numpy as np

    from ..engine import batches

    if not data.multilabel:
        return np.asarray(split.labels)
    return np.asarray([batches.multi_hot(row, len(data.label_names)) for row in split.labels])


def joined_texts(split: TextSplit) -> list[str]:
    """The texts, each followed by its pair text if any (for the bag-of-words baseline)."""
    if split.text_pairs is None:
        return list(split.texts)
    return [f"{a} {b}" for a, b in zip(split.texts, split.text_pairs)]


BASELINE_ROWS = {"train": 100_000, "test": 100_000}
"""The most examples the bag-of-words baseline fits and scores: beyond, a seeded sample (TF-IDF on millions of texts
would take longer than a run's training and gigabytes of memory)."""


def sample(split: TextSplit, limit: int) -> TextSplit:
    """At most `limit` examples of a split: a seeded sample in the split's order."""
    if len(split) <= limit:
        return split
    import numpy as np

    return split.take(np.sort(np.random.default_rng(0).choice(len(split), limit, replace=False)))


def split_metrics(logits: np.ndarray, gold: np.ndarray, data: ClassificationData, thresholds=0.5) -> dict:
    """Scores of one split's (pooled) logits: single-label by argmax, multi-label at the thresholds."""
    from .. import metrics

    if data.multilabel:
        return metrics.multilabel_metrics(sigmoid(logits), gold, data.label_names, thresholds)
    return metrics.classification_metrics(logits.argmax(-1).tolist(), gold.tolist(), data.label_names)


class Classification(Task):
    name = "classification"
    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    metrics = ("accuracy", "macro_f1")
    headline = "accuracy"
    features = "first_token"
    pooled_head = True
    multilabel = False
    learning_curves = True
    ensembles = True
    distillation = "softmax"
    architecture_suffix = "ForSequenceClassification"
    card_metrics = [("accuracy", "accuracy", "Accuracy"), ("f1", "macro_f1", "Macro F1")]
    pipeline_options = ", truncation=True"  # the text-classification pipeline does not truncate by itself
    peft_auto_class = "AutoPeftModelForSequenceClassification"

    def checks(self, cfg) -> list[tuple[bool, str]]:
        fixed_threshold(cfg)
        weights = cfg.loss.class_weights
        weights_ok = weights in (None, "none", "balanced") or (
            isinstance(weights, list) and weights and all(isinstance(w, int | float) and w > 0 for w in weights))
        return [
            (cfg.long_text in LONG_TEXT, f"long_text must be one of {', '.join(LONG_TEXT)}"),
            (cfg.data.pooling in POOLING, f"data.pooling must be one of {', '.join(POOLING)}"),
            (cfg.long_text != "sliding" or 0 <= cfg.data.stride <= cfg.data.max_length // 2,
             f"data.stride ({cfg.data.stride}) is the overlap of consecutive windows: it must be from 0 to half of "
             f"data.max_length ({cfg.data.max_length}); e.g. data.stride={cfg.data.max_length // 4}"),
            (cfg.long_text == "truncate" or not cfg.data.text_pair_column,
             "long_text=head_tail|sliding works on single texts; with data.text_pair_column use long_text=truncate"),
            (weights_ok, "loss.class_weights must be none, balanced or a list of positive numbers, e.g. [1, 3.5, 1]"),
            (cfg.loss.focal_gamma >= 0, "loss.focal_gamma must be 0 (cross-entropy) or more"),
            (cfg.data.label_separator != "", "data.label_separator must not be empty; e.g. data.label_separator='|'"),
        ]

    def card_intro(self, label_names: list[str]) -> tuple[str, str, list[str]]:
        return "text classification", "It predicts one of", label_names

    def card_limitations(self, cfg, test: dict, sizes: dict[str, int] | None) -> list[str]:
        items = []
        if sizes and sizes["test"] < 1000 and "accuracy" in test and not self.multilabel:
            margin = 1.96 * math.sqrt(max(test["accuracy"] * (1 - test["accuracy"]), 1e-12) / max(sizes["test"], 1))
            items.append(f"The test split has {sizes['test']:,} examples: the accuracy is uncertain by about "
                         f"±{margin:.3f} (95% interval).")
        items.append({
            "truncate": f"Texts longer than {cfg.data.max_length} tokens are truncated: the rest is not read.",
            "head_tail": f"Texts longer than {cfg.data.max_length} tokens are read by their start and end only.",
            "sliding": f"Texts longer than {cfg.data.max_length} tokens are read in overlapping windows whose "
                       f"scores are pooled ({cfg.data.pooling}).",
        }[cfg.long_text])
        return items

    def load_data(self, cfg, source: tuple | None = None) -> ClassificationData:
        from ..data.arrow import use_arrow
        from ..data.classification import load_classification

        if source is None and use_arrow(cfg.data, self.multilabel):
            from accelerate import PartialState

            with PartialState().local_main_process_first():  # one process per machine streams the files into tables
                return load_classification(cfg.data, cfg.seed, multilabel=self.multilabel)
        return load_classification(cfg.data, cfg.seed, multilabel=self.multilabel, source=source)

    def describe_data(self, data: ClassificationData) -> str:
        return (f"data: {data.source}; {len(data.train)} train / {len(data.validation)} validation / "
                f"{len(data.test)} test; labels: {', '.join(data.label_names)}")

    def encode(self, data: ClassificationData, tokenizer, cfg) -> dict[str, EncodedSplit]:
        """Tokenize every split once, reading long texts as `cfg.long_text` says; report how many exceed the limit."""
        from .. import models
        from ..data.arrow import TableColumn
        from ..engine import batches, token_cache

        num_labels = len(data.label_names) if data.multilabel else None
        max_length = models.max_length(tokenizer, cfg.data.max_length)
        def encode(split: str) -> EncodedSplit:
            texts, stride = getattr(data, split), min(cfg.data.stride, max_length // 2)
            if isinstance(texts.texts, TableColumn):  # data.backend=arrow: tokens in the disk cache, in processes
                return token_cache.encode_table(texts, tokenizer, max_length, cfg.long_text, stride, num_labels,
                                                name=split, folder=cfg.data.token_cache, num_proc=cfg.data.num_proc)
            return batches.encode_split(texts, tokenizer, max_length, cfg.long_text, stride, num_labels)

        encoded = {split: encode(split) for split in ("train", "validation", "test")}
        over = {split: split_encoded.over_limit for split, split_encoded in encoded.items()}
        if any(over.values()):
            how = {"truncate": "only their first tokens are read (long_text=truncate)",
                   "head_tail": "their start and end are read (long_text=head_tail)",
                   "sliding": f"they are read in windows sharing {cfg.data.stride} tokens, pooled by "
                              f"{cfg.data.pooling} (long_text=sliding; {len(encoded['train'])} training windows)"}
            logger.info("texts over data.max_length=%d tokens: %s; %s", max_length,
                        ", ".join(f"{n} of {len(getattr(data, split))} {split}" for split, n in over.items()),
                        how[cfg.long_text])
        return encoded

    def train_loader(self, encoded, tokenizer, cfg):
        from ..engine import batches

        return batches.train_loader(encoded, tokenizer, cfg.train.batch_size, cfg.seed, cfg.train.group_by_length)

    def eval_loader(self, encoded, tokenizer, cfg):
        from ..engine import batches

        return batches.eval_loader(encoded, tokenizer, cfg.train.eval_batch_size)

    def loss_fn(self, data: ClassificationData, cfg):
        from ..engine import losses

        return losses.build_loss(cfg.loss, targets(data.train, data).tolist(), data.label_names, data.multilabel)

    def validator(self, data: ClassificationData, encoded: dict, cfg, accelerator):
        """`validate_on(loader)`: fit's validation function on a loader of validation inputs; None without a
        validation split (the loop then trains its fixed budget and keeps the last epoch)."""
        from ..engine import batches, loop

        gold, documents = targets(data.validation, data), encoded["validation"].documents
        fixed = fixed_threshold(cfg)

        def validate_on(loader):
            if not len(data.validation):
                return None

            def validate(model) -> dict:
                logits = batches.pool_windows(loop.predict(model, loader, accelerator), documents, cfg.data.pooling)
                return split_metrics(logits, gold, data, 0.5 if fixed is None else fixed)
            return validate

        return validate_on

    def test(self, model, data: ClassificationData, encoded: dict, tokenizer, cfg, accelerator) -> TestOutcome:
        """The test split's pooled logits and metrics; multi-label thresholds fixed, or tuned on validation first
        (0.5 without a validation split)."""
        from .. import metrics
        from ..engine import batches, loop

        def logits_of(split: str, desc: str) -> np.ndarray:
            loader = accelerator.prepare(self.eval_loader(encoded[split], tokenizer, cfg))
            return batches.pool_windows(loop.predict(model, loader, accelerator, desc=desc), encoded[split].documents,
                                        cfg.data.pooling)

        test_logits = logits_of("test", "testing")
        thresholds = fixed_threshold(cfg)
        if data.multilabel and thresholds is None and not len(data.validation):
            logger.info("thresholds could not be tuned: no validation split; every label's threshold is 0.5 "
                        "(set threshold=0.5 to say so, or give data.validation_file to tune them)")
        elif data.multilabel and thresholds is None:
            validation_probabilities = sigmoid(logits_of("validation", "tuning thresholds"))
            thresholds = metrics.tune_thresholds(validation_probabilities, targets(data.validation, data))
            logger.info("thresholds tuned on the validation split: %s",
                        ", ".join(f"{n} {t:.2f}" for n, t in zip(data.label_names, thresholds)))
        scores = split_metrics(test_logits, targets(data.test, data), data, 0.5 if thresholds is None else thresholds)
        return TestOutcome(scores, test_logits)

    def report(self, scores: dict, data: ClassificationData) -> str:
        from .. import metrics

        return metrics.format_report(scores, data.label_names)

    def baselines(self, data: ClassificationData) -> tuple[dict, str]:
        """Majority class and TF-IDF + logistic regression; on a seeded sample of a large split (see BASELINE_ROWS)."""
        from .. import metrics

        if len(data.train) > BASELINE_ROWS["train"] or len(data.test) > BASELINE_ROWS["test"]:
            sizes = {split: len(getattr(data, split)) for split in BASELINE_ROWS}
            data = dataclasses.replace(data, **{split: sample(getattr(data, split), limit)
                                                for split, limit in BASELINE_ROWS.items()})
            used = ", ".join(f"{len(getattr(data, split)):,} of {sizes[split]:,} {split} examples"
                             if sizes[split] > len(getattr(data, split)) else f"all {sizes[split]:,} {split} examples"
                             for split in BASELINE_ROWS)
            what = f"baselines on a seeded sample ({used})"
        else:
            what = "baselines on the same data"
        if len({str(label) for label in data.train.labels}) < 2:
            return {}, "baselines: none (the training split has fewer than two labels to learn from)"
        found = metrics.baselines(joined_texts(data.train), targets(data.train, data), joined_texts(data.test),
                                  targets(data.test, data))
        return found, (f"{what}: majority class {found['majority_accuracy']:.4f}, "
                       f"TF-IDF + logistic regression {found['tfidf_logreg_accuracy']:.4f}")

    def prediction_rows(self, data: ClassificationData, outcome: TestOutcome) -> list[dict]:
        """predictions.jsonl: each test text (and pair) with its gold and predicted label(s) and scores."""
        import numpy as np
        import torch

        names, test_logits = data.label_names, outcome.predictions
        if data.multilabel:
            thresholds = np.asarray([outcome.metrics["per_class"][name]["threshold"] for name in names])
            probabilities = sigmoid(test_logits)
            rows = [{"labels": [names[i] for i in gold],
                     "predicted": [name for name, p, t in zip(names, row, thresholds) if p >= t],
                     "scores": {name: round(float(p), 6) for name, p in zip(names, row)}}
                    for gold, row in zip(data.test.labels, probabilities)]
        else:
            probabilities = torch.softmax(torch.from_numpy(test_logits), dim=-1).numpy()
            rows = [{"label": names[gold], "predicted": names[int(p.argmax())], "score": round(float(p.max()), 6)}
                    for gold, p in zip(data.test.labels, probabilities)]
        pairs = data.test.text_pairs or [None] * len(rows)
        return [{"text": text} | ({"text_pair": pair} if pair is not None else {}) | row
                for text, pair, row in zip(data.test.texts, pairs, rows)]

    def inference_settings(self, cfg, scores: dict, data: ClassificationData) -> dict:
        """How `nlptransfer.predict` reads long texts and which multi-label thresholds it applies."""
        settings = {"long_text": cfg.long_text, "max_length": cfg.data.max_length, "stride": cfg.data.stride,
                    "pooling": cfg.data.pooling}
        if data.multilabel:
            settings["thresholds"] = [scores["per_class"][name]["threshold"] for name in data.label_names]
        return settings

    def data_summary(self, data: ClassificationData, encoded: dict, cfg) -> dict:
        """For metrics.json: the data, the long-text policy, texts over the limit and inputs (windows) per split."""
        return {"data": {"source": data.source, "label_names": data.label_names,
                         "examples": {split: len(getattr(data, split)) for split in ("train", "validation", "test")},
                         "dropped_repeats": data.dropped_repeats,
                         "long_text": cfg.long_text, "max_length": cfg.data.max_length,
                         "over_max_length": {split: e.over_limit for split, e in encoded.items()},
                         "inputs": {split: len(e) for split, e in encoded.items()}}}

    def predict_texts(self, predictor, texts: list[str], pairs: list[str] | None, all_scores: bool,
                      batch_size: int) -> list[dict]:
        """`Predictor.predict` rows: per text its label and score (multi-label: labels over their thresholds)."""
        import torch

        with torch.inference_mode():
            probabilities = predictor.probabilities(texts, pairs, batch_size)  # an ensemble's: its members' combined
        rows = [classification_row(predictor, p, all_scores) for p in probabilities]
        return [{"text": text} | ({"text_pair": pairs[i]} if pairs else {}) | row
                for i, (text, row) in enumerate(zip(texts, rows))]

    def text_probabilities(self, predictor, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return class_probabilities(predictor, texts, pairs, batch_size)

    def split_texts(self, split: TextSplit) -> list[str]:
        return split.texts

    def test_labels(self, data: ClassificationData) -> list:
        names = data.label_names
        if data.multilabel:
            return [[names[i] for i in row] for row in data.test.labels]
        return [names[i] for i in data.test.labels]


class MultiLabel(Classification):
    name = "multilabel"
    metrics = ("micro_f1", "macro_f1", "samples_f1", "accuracy")
    multilabel = True
    distillation = "sigmoid"
    learning_curves = False
    # sigmoid scores per label in the model's own loss and in transformers' pipeline()
    extra_model_options = {"problem_type": "multi_label_classification"}
    card_metrics = [("accuracy", "subset_accuracy", "Subset accuracy"), ("f1", "micro_f1", "Micro F1"),
                    ("f1", "macro_f1", "Macro F1")]

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return super().checks(cfg) + [
            (cfg.data.backend != "arrow", "data.backend=arrow holds single-label tables; multi-label data is read "
                                          "with data.backend=memory (or auto)")]

    def card_intro(self, label_names: list[str]) -> tuple[str, str, list[str]]:
        return "multi-label text classification", "It predicts any number of", label_names


def class_probabilities(predictor, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
    """Per text, every label's probability; long texts read as the run did (truncate, head_tail, sliding)."""
    import torch

    from ..engine import batches

    model, tokenizer, settings = predictor.pipe.model, predictor.pipe.tokenizer, predictor.settings
    long_text = settings.get("long_text", "truncate") if pairs is None else "truncate"
    max_length = tokenizer.model_max_length
    if long_text == "head_tail":
        texts = batches.head_tail_texts(texts, tokenizer, max_length)
    sliding = long_text == "sliding"
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length,
                        stride=min(predictor.stride, max_length // 2) if sliding else 0,
                        return_overflowing_tokens=sliding)
    documents = encoded.pop("overflow_to_sample_mapping", list(range(len(texts))))
    rows = [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(documents))]
    logits = []
    for start in range(0, len(rows), batch_size):
        batch = tokenizer.pad(rows[start:start + batch_size], return_tensors="pt").to(model.device)
        logits.append(model(**batch).logits.float().cpu())
    pooled = torch.from_numpy(batches.pool_windows(torch.cat(logits).numpy(), documents,
                                                   settings.get("pooling", "mean")))
    return (torch.sigmoid(pooled) if predictor.multilabel else torch.softmax(pooled, dim=-1)).numpy()


def classification_row(predictor, probabilities: np.ndarray, all_scores: bool) -> dict:
    import numpy as np

    names = predictor.label_names
    scores = {name: round(float(p), 6) for name, p in sorted(zip(names, probabilities), key=lambda x: -x[1])}
    if predictor.multilabel:
        thresholds = predictor.settings.get("thresholds") or [0.5] * len(names)
        return {"labels": [n for n, p, t in zip(names, probabilities, thresholds) if p >= t], "scores": scores}
    best = int(np.argmax(probabilities))
    row = {"label": names[best], "score": round(float(probabilities[best]), 6)}
    return row | ({"scores": scores} if all_scores else {})
