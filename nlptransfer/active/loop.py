"""One round of active learning: train on the labels so far (a normal run through the Python API, its data in
memory), score the whole pool, say whether to stop, pick the next batch with the query strategy, write it.

Without enough labels to train (two labels used, one text held out to measure) the round is a cold start: the batch
covers the pool's embeddings (k-means, coreset) or follows zero-shot scores over the label descriptions.
`simulate` runs the same rounds with an oracle's labels revealed for each batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import api
from ..outputs import files
from . import queries, stopping
from .options import ActiveOptions, multilabel, tagging
from .report import write_report
from .state import ActiveFolder, now

logger = logging.getLogger("nlptransfer")

HOLD_OUT_EVERY = 5
"""Without a test file every 5th label (in the order given) is held out to measure the round's model."""
PREDICTIONS = "pool_predictions.json"


@dataclass
class ActiveLoop:
    folder: ActiveFolder
    pool: list[str]
    label_names: list[str]
    options: ActiveOptions
    cfg: Any = None
    """The run's config (`RunConfig` with the user's `train.epochs=...`); None: the defaults."""
    test: dict[str, object] | None = None
    """Text -> label to measure each round on; None: held out from the labels."""
    on_progress: Callable[[str], None] = field(default=lambda message: None)
    """Told what the round is doing (the labeling page shows it)."""

    def __post_init__(self) -> None:
        self.previous_predictions()

    @property
    def multilabel(self) -> bool:
        return multilabel(self.options.task)

    @property
    def tagging(self) -> bool:
        return tagging(self.options.task)

    def next_round(self) -> int:
        return len(self.folder.rounds())

    def splits(self, labels: dict[str, object]) -> tuple[dict, dict]:
        """(train, test) as text -> label: the test file, or every HOLD_OUT_EVERY-th label held out."""
        if self.test is not None:
            return labels, self.test
        items = list(labels.items())
        test = dict(item for i, item in enumerate(items) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1)
        return {text: label for text, label in items if text not in test}, test

    def trainable(self, labels: dict[str, object]) -> bool:
        train, test = self.splits(labels)
        seen = {name for label in train.values() for name in (label if isinstance(label, list) else [label])}
        return len(seen) >= 2 and bool(test)

    def train(self, labels: dict[str, object]) -> tuple[Path, float | None]:
        """A normal run on the labels: its model folder (`round-model/model`) and its test accuracy."""
        import pandas as pd

        train, test = self.splits(labels)
        columns = ("tokens", "tags") if self.tagging else ("text", "label")

        def frame(part: dict) -> pd.DataFrame:
            texts = [text.split(" ") for text in part] if self.tagging else list(part)
            return pd.DataFrame({columns[0]: texts, columns[1]: list(part.values())})

        options, data = self.options, {"train": frame(train), "test": frame(test)}
        if self.tagging:  # token-classification needs a validation split: the labels it trains on (no extra split)
            data["validation"] = data["train"]
        results = api.run(self.cfg, data=data,
                          data_options={"validation_fraction": 0, "label_names": self.label_names,
                                        "text_column": "text", "label_column": "label", "tokens_column": "tokens",
                                        "tags_column": "tags", "dedup_across_splits": not self.tagging},
                          model=options.model, strategy=options.strategy, task=options.task, seed=options.seed,
                          labels={"descriptions": options.descriptions}, output_dir=str(self.folder.path /
                                                                                       "round-model"),
                          overwrite=True, **self.head_options())
        return results.model_dir, results.test_metrics.get("f1" if self.tagging else "accuracy")

    def head_options(self) -> dict:
        """A classifier's rounds read the checkpoint's sentence embedding (`head.pooling=auto`: mean pooling for the
        packaged MiniLM), better features for a few labels than the first token; a tagger, or a head.pooling the user
        set, as given."""
        if self.tagging or (self.cfg is not None and self.cfg.head.pooling is not None):
            return {}
        return {"head": {"pooling": "auto"}}

    def run_round(self) -> dict:
        """Train (when the labels allow), score the pool, pick and write the next batch; returns the round's record."""
        from . import scoring

        number, labels, times = self.next_round(), self.folder.labels(), {}
        started = time.perf_counter()
        accuracy = None
        if self.trainable(labels):
            self.on_progress(f"round {number}: training on {len(self.splits(labels)[0])} labels")
            model_dir, accuracy = self.train(labels)
            scorer = scoring.trained_scorer(model_dir)
        else:
            self.on_progress(f"round {number}: cold start ({len(labels)} labels)")
            scorer = scoring.start_scorer(self.options.model, self.label_names)
        times["train"] = time.perf_counter() - started
        texts = self.scored_texts()
        self.on_progress(f"round {number}: scoring {len(texts)} pool texts")
        probabilities, embeddings, passes = self.score_pool(scorer, texts, number)
        times["score"] = time.perf_counter() - (started + times["train"])
        record = self.pick(number, texts, labels, probabilities, embeddings, scorer, passes)
        times["pick"] = time.perf_counter() - (started + times["train"] + times["score"])
        record |= {"validation_accuracy": accuracy, "seconds": {k: round(v, 3) for k, v in times.items()}}
        record["stop"] = self.stop_suggestion(record, probabilities)
        self.folder.add_round(record)
        write_report(self.folder)
        logger.info("round %d: %d labels, accuracy %s, %d texts to label; %s", number, record["labels"],
                    "n/a" if accuracy is None else f"{accuracy:.4f}", len(record["picks"]), record["stop"]["message"])
        return record

    def score_pool(self, scorer, texts: list[str], number: int):
        """(probabilities or None, embeddings, the MC dropout passes' probabilities or None) of the scored texts; the
        passes (`mc_passes` more forward passes over them) only for query=bald with a trained model."""
        length = self.cfg.data.max_length if self.cfg is not None else 128
        batch_size = self.options.score_batch_size
        if self.tagging and scorer.label_names is not None:
            from .ner import word_probabilities

            return (*word_probabilities(scorer, texts, batch_size, length), None)
        if scorer.label_names is not None and not self.strategy_trains_encoder:  # the encoder's outputs cached
            from . import pool_cache

            probabilities, embeddings = pool_cache.score(scorer, texts, batch_size, length,
                                                         self.folder.path / pool_cache.CACHE, self.options.model)
        else:
            probabilities, embeddings = scorer.score(texts, batch_size, length)
        passes = None
        if self.options.query == "bald" and probabilities is not None:
            self.on_progress(f"round {number}: {self.options.mc_passes} dropout passes over the pool (query=bald)")
            passes = scorer.dropout_probabilities(texts, self.options.mc_passes, batch_size, length,
                                                  seed=self.options.seed + number)
            if len(passes) > 1 and all((p == passes[0]).all() for p in passes[1:]):
                logger.warning("query=bald: the %d dropout passes agree exactly (the model has no dropout?), so every "
                               "BALD score is 0 and the batch follows the pool's order", len(passes))
        return probabilities, embeddings, passes

    @property
    def strategy_trains_encoder(self) -> bool:
        from .. import strategies

        return strategies.get(self.options.strategy).encoder_trains

    def scored_texts(self) -> list[str]:
        """The pool texts a round scores: all, or `score_sample` of them drawn once (seeded), the same every round so
        that kappa compares like with like."""
        import random

        limit = self.options.score_sample
        if limit is None or limit >= len(self.pool):
            return self.pool
        return [self.pool[i] for i in sorted(random.Random(self.options.seed).sample(range(len(self.pool)), limit))]

    def pick(self, number: int, texts: list[str], labels: dict, probabilities, embeddings, scorer,
             passes=None) -> dict:
        """Choose the batch among the unlabeled scored texts and write batch.json; the round's record."""
        import numpy as np

        from . import scoring

        candidates = [i for i, text in enumerate(texts) if text not in labels]
        if len(candidates) < self.options.batch_size:
            logger.info("round %d: %d unlabeled texts are left, fewer than batch_size=%d: the batch takes them all",
                        number, len(candidates), self.options.batch_size)
        labeled_rows = [i for i, text in enumerate(texts) if text in labels]
        counts = np.array([sum(1 for label in labels.values() if name == label or
                               (isinstance(label, list) and name in label)) for name in self.label_names])
        cold = probabilities is None
        query, balance = (self.options.cold_start, False) if cold else (self.options.query, self.options.balance)
        named = query
        if cold and query == "zeroshot":
            probabilities = scoring.zero_shot(scorer, embeddings, self.label_names, self.options.descriptions)
            query, balance, counts = "breaking_ties", True, np.zeros(len(self.label_names))
        shown = None if probabilities is None else [probabilities[i] for i in candidates]
        scores = queries.PoolScores(
            probabilities=None if shown is None or self.tagging else np.array(shown),
            token_probabilities=shown if self.tagging and shown is not None else [],
            embeddings=embeddings[candidates], labeled_embeddings=embeddings[labeled_rows],
            multilabel=self.multilabel, labeled_counts=counts,
            labeled_cardinality=float(counts.sum() / max(1, len(labels))),
            pass_probabilities=None if passes is None or cold else passes[:, candidates])
        chosen = queries.pick(query, scores, self.options.batch_size, seed=self.options.seed + number,
                              balance=balance, aggregate=self.options.aggregate)
        items = [self.item(texts[candidates[i]], None if shown is None else shown[i]) for i in chosen]
        self.folder.write_batch({"round": number, "query": named, "items": items})
        if probabilities is not None and not cold:
            files.write_json(self.folder.path / PREDICTIONS, {"round": number, "predicted": [
                self.suggestion(row) for row in probabilities]})
        return {"round": number, "labels": len(labels), "query": named, "strategy": self.options.strategy,
                "cold_start": cold, "picks": [item["text"] for item in items], "at": now()}

    def suggestion(self, row):
        if self.tagging:
            return [self.label_names[int(j)] for j in row.argmax(axis=1)]
        if self.multilabel:
            return [name for name, p in zip(self.label_names, row) if p >= 0.5]
        return self.label_names[int(row.argmax())]

    def item(self, text: str, row) -> dict:
        if row is None:
            return {"text": text, "suggestion": None, "confidence": None}
        if self.tagging:
            confidence = float(row.max(axis=1).min()) if len(row) else 1.0  # the least sure word's
        else:
            confidence = float(abs(row - 0.5).min() * 2) if self.multilabel else float(row.max())
        return {"text": text, "suggestion": self.suggestion(row), "confidence": round(confidence, 4)}

    def stop_suggestion(self, record: dict, probabilities) -> dict:
        """Kappa between this round's pool predictions and the last trained round's, with the learning curve."""
        earlier = [r for r in self.folder.rounds() if not r.get("cold_start")]
        kappas = [r.get("stop", {}).get("kappa") for r in earlier]
        if probabilities is not None and not record["cold_start"]:
            before = getattr(self, "_before", None)
            after = [str(self.suggestion(row)) for row in probabilities]
            kappas.append(stopping.kappa(before, after) if before is not None else None)
            self._before = after
        curve = [(r["labels"], r.get("validation_accuracy")) for r in [*earlier, record]]
        return stopping.suggestion(kappas, curve, self.options.stop_kappa, self.options.stop_rounds)

    def previous_predictions(self) -> None:
        """Read the last round's pool predictions (a rerun measures kappa against them)."""
        import json

        try:
            saved = json.loads((self.folder.path / PREDICTIONS).read_text(encoding="utf-8"))
            self._before = [str(p) for p in saved["predicted"]]
        except (OSError, ValueError, KeyError):
            self._before = None
        if self._before is not None and len(self._before) != len(self.scored_texts()):
            self._before = None


def simulate(loop: ActiveLoop, oracle: dict[str, object], rounds: int) -> list[dict]:
    """`rounds` rounds, each batch labeled at once from `oracle` (text -> label); the rounds' records."""
    records = []
    for _ in range(rounds):
        record = loop.run_round()
        records.append(record)
        for text in record["picks"]:
            loop.folder.add_label(text, oracle[text], "oracle", record["round"])
    return records
