"""Token classification (NER): a tag per word, scored per entity with seqeval.

Tagged sentences come from CoNLL, JSON(L), the hub or packaged corpora, are converted to IOB2,
tokenized into windows (sentences longer than the limit are split with overlap), trained on the
first sub-token of each word, and scored on the original words and tags.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from .base import Task, TestOutcome

if TYPE_CHECKING:  # the data, engine and metrics modules (pandas, torch, evaluate) load when the task works
    from ..data.conll import TokenData
    from ..engine.tokens import EncodedWords

logger = logging.getLogger("nlptransfer")

SPLITS = ("train", "validation", "test")


class TokenClassification(Task):
    name = "token-classification"
    auto_class_name = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pipeline_tag = "token-classification"
    metrics = ("f1", "precision", "recall", "accuracy")
    headline = "f1"
    unit = "windows"
    features = "tokens"
    distillation = "tokens"
    architecture_suffix = "ForTokenClassification"
    card_metrics = [("precision", "precision", "Precision (entity level)"),
                    ("recall", "recall", "Recall (entity level)"),
                    ("f1", "f1", "F1 (entity level)"), ("accuracy", "accuracy", "Token accuracy")]
    card_unit = "sentences"
    card_predictor = "tagger"
    pipeline_options = ', aggregation_strategy="first"'
    peft_auto_class = "AutoPeftModelForTokenClassification"

    def card_intro(self, label_names: list[str]) -> tuple[str, str, list[str]]:
        return ("named entity recognition (token classification)", "It tags entities of these types",
                sorted({name.split("-", 1)[-1] for name in label_names if name != "O"}))

    def card_limitations(self, cfg, test: dict, sizes: dict[str, int] | None) -> list[str]:
        return [f"Sentences longer than {cfg.data.max_length} tokens are read in overlapping windows."]

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return [
            (cfg.long_text == "truncate",
             "long_text applies to classification; NER always reads long sentences in windows (data.stride)"),
            (cfg.loss.focal_gamma == 0 and cfg.loss.class_weights in (None, "none"),
             "loss.class_weights and loss.focal_gamma apply to classification and multilabel tasks"),
            (0 <= cfg.data.stride <= cfg.data.max_length // 2,
             f"data.stride must be from 0 to half of data.max_length ({cfg.data.max_length // 2})"),
            (cfg.data.backend != "arrow",
             "data.backend=arrow holds single-label classification tables; NER data is read with data.backend=memory "
             "(or auto)"),
        ]

    def load_data(self, cfg, source: tuple | None = None) -> TokenData:
        from ..data.conll import load_token_classification

        return load_token_classification(cfg.data, cfg.seed, source=source)

    def describe_data(self, data: TokenData) -> str:
        return (f"data: {data.source}; {len(data.train)} train / {len(data.validation)} validation / "
                f"{len(data.test)} test sentences; tag scheme {data.scheme}"
                f"{'' if data.scheme == 'IOB2' else ' (converted to IOB2)'}; entity types: "
                f"{', '.join(data.entity_types)}")

    def max_length(self, tokenizer, cfg) -> int:
        """`data.max_length`, capped at what the checkpoint reads (its tokenizer's limit, its position embeddings)."""
        from .. import models

        return models.max_length(tokenizer, cfg.data.max_length)

    def encode(self, data: TokenData, tokenizer, cfg) -> dict[str, EncodedWords]:
        """Tokenize every split into windows once; report how many sentences needed more than one window."""
        from ..engine import tokens

        max_length = self.max_length(tokenizer, cfg)
        encoded = {
            split: tokens.encode_words(getattr(data, split).words, getattr(data, split).tags, tokenizer,
                                       data.label_names, max_length, cfg.data.stride, cfg.data.label_all_subtokens)
            for split in SPLITS
        }
        for split, windows in encoded.items():
            split_sentences = Counter(window.sentence for window in windows.windows)
            long = sum(count > 1 for count in split_sentences.values())
            if long:
                logger.info("%s: %d sentences longer than %d tokens were split into overlapping windows (stride %d)",
                            split, long, max_length, cfg.data.stride)
        return encoded

    def train_loader(self, encoded, tokenizer, cfg):
        from ..engine import tokens

        return tokens.train_loader(encoded, tokenizer, cfg.train.batch_size, cfg.seed, cfg.train.group_by_length)

    def eval_loader(self, encoded, tokenizer, cfg):
        from ..engine import tokens

        return tokens.eval_loader(encoded, tokenizer, cfg.train.eval_batch_size)

    def validator(self, data: TokenData, encoded: dict, cfg, accelerator):
        from .. import metrics
        from ..engine import tokens

        validation = encoded["validation"]

        def validate_on(loader):
            def validate(model) -> dict:
                predicted = tokens.predict_words(model, loader, validation, validation.max_length, accelerator)
                tags = [[data.label_names[i] for i in sentence] for sentence in predicted]
                return metrics.entity_metrics(tags, data.validation.tags, data.entity_types)
            return validate

        return validate_on

    def test(self, model, data: TokenData, encoded: dict, tokenizer, cfg, accelerator) -> TestOutcome:
        from .. import metrics
        from ..engine import tokens

        test = encoded["test"]
        loader = accelerator.prepare(self.eval_loader(test, tokenizer, cfg))
        predicted = tokens.predict_words(model, loader, test, test.max_length, accelerator, desc="testing")
        predicted_tags = [[data.label_names[i] for i in sentence] for sentence in predicted]
        return TestOutcome(metrics.entity_metrics(predicted_tags, data.test.tags, data.entity_types), predicted_tags)

    def report(self, scores: dict, data: TokenData) -> str:
        from .. import metrics

        return metrics.format_entity_report(scores)

    def baselines(self, data: TokenData) -> tuple[dict, str]:
        from .. import metrics

        found = metrics.tagger_baselines(data.train.words, data.train.tags, data.test.words, data.test.tags)
        return found, (f"baselines on the same data: all-O token accuracy {found['all_o_accuracy']:.4f}; most "
                       f"frequent tag per word: entity F1 {found['word_lookup_f1']:.4f}, token accuracy "
                       f"{found['word_lookup_accuracy']:.4f}")

    def prediction_rows(self, data: TokenData, outcome: TestOutcome) -> list[dict]:
        """predictions.jsonl: each test sentence's words, gold tags and predicted tags."""
        return [{"words": sentence.words, "tags": sentence.tags, "predicted": predicted}
                for sentence, predicted in zip(data.test.sentences, outcome.predictions)]

    def data_summary(self, data: TokenData, encoded: dict, cfg) -> dict:
        return {"data": {"source": data.source, "scheme": data.scheme, "label_names": data.label_names,
                         "sentences": {split: len(getattr(data, split)) for split in SPLITS},
                         "dropped_repeats": data.dropped_repeats}}

    def predict_texts(self, predictor, texts: list[str], pairs: list[str] | None, all_scores: bool,
                      batch_size: int) -> list[dict]:
        """`Predictor.predict` rows: per text its entities (type, character span, score, words)."""
        outputs = predictor.pipe(texts, aggregation_strategy="first", stride=predictor.stride, batch_size=batch_size)
        return [{"text": text, "entities": [entity_row(e) for e in found]} for text, found in zip(texts, outputs)]

    def split_texts(self, split) -> list[str]:
        return [" ".join(words) for words in split.words]

    def test_labels(self, data: TokenData) -> list:
        return data.test.tags


def entity_row(entity: dict) -> dict:
    return {"type": entity["entity_group"], "start": int(entity["start"]), "end": int(entity["end"]),
            "score": round(float(entity["score"]), 6), "word": entity["word"]}
