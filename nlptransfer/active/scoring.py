"""What a model says about the pool: class probabilities and pooled embeddings from one forward pass per batch.

A round's trained run (or an earlier run's model) gives both; a bare checkpoint (the cold start) gives embeddings only,
and with the label descriptions zero-shot probabilities (cosine similarity to each label's prompt, as
`strategies/zeroshot.py` scores). The embeddings are the encoder's last hidden states, mean-pooled, caught by a hook on
the model's encoder, so any head (transformers' own, nlptransfer's pooled one) needs no second pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .. import catalog, models
from ..modeling_nlptransfer import pool
from ..options import LabelsConfig
from ..strategies.descriptions import label_prompts, mean_rows

logger = logging.getLogger("nlptransfer")


@dataclass
class Scorer:
    """A model that scores texts; `label_names` None for a bare encoder (embeddings only)."""

    model: Any
    tokenizer: Any
    label_names: list[str] | None = None
    multilabel: bool = False

    def length_order(self, texts: list, max_length: int, split_words: bool = False) -> np.ndarray:
        """The positions of `texts` shortest first (their token counts, truncated at `max_length`; stable): batches
        drawn in this order pad to like lengths, not each to its longest text (tweets: most far shorter)."""
        if not texts:
            return np.zeros(0, dtype=int)
        ids = self.tokenizer(texts, truncation=True, max_length=max_length, is_split_into_words=split_words)
        return np.argsort([len(row) for row in ids["input_ids"]], kind="stable")

    def batches(self, texts: list, batch_size: int, max_length: int, split_words: bool = False):
        """(positions in `texts`, their batch tokenized on the model's device), `batch_size` texts at a time in
        length order (`length_order`): the caller puts each result back at its positions."""
        order = self.length_order(texts, max_length, split_words)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            yield rows, self.tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length,
                                       padding=True, return_tensors="pt", is_split_into_words=split_words
                                       ).to(self.model.device)

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        logits = logits.float()
        return (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)).cpu().numpy()

    @torch.inference_mode()
    def score(self, texts: list[str], batch_size: int = 64, max_length: int = 128, on_encoder=None
              ) -> tuple[np.ndarray | None, np.ndarray]:
        """(probabilities or None, embeddings) of `texts`, in their order (the batches run in length order);
        `on_encoder(outputs, attention_mask, rows)` is shown each batch's encoder outputs and the batch's positions
        in `texts` (the pool cache keeps what the head reads)."""
        caught: list = []
        encoder = self.model.base_model
        hook = encoder.register_forward_hook(lambda module, args, output: caught.append(output))
        probabilities = np.zeros((len(texts), len(self.label_names or [])), dtype=np.float32)
        embeddings = None
        try:
            self.model.eval()
            for rows, batch in self.batches(texts, batch_size, max_length):
                caught.clear()
                outputs = self.model(**batch)
                pooled = pool(caught[0][0], batch["attention_mask"], "mean").float().cpu().numpy()
                if embeddings is None:
                    embeddings = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
                embeddings[rows] = pooled
                if on_encoder is not None:
                    on_encoder(caught[0], batch["attention_mask"], rows)
                if self.label_names is not None:
                    probabilities[rows] = self.probabilities(outputs.logits)
        finally:
            hook.remove()
        embeddings = np.zeros((0, 1), dtype=np.float32) if embeddings is None else embeddings
        return (None if self.label_names is None else probabilities), embeddings

    @torch.inference_mode()
    def dropout_probabilities(self, texts: list[str], passes: int, batch_size: int = 64, max_length: int = 128,
                              seed: int = 0) -> np.ndarray:
        """(passes, texts, labels): the probabilities of `passes` forward passes with dropout on (MC dropout, for
        BALD), each batch (in length order) tokenized once and run `passes` times; seeded, so a rerun gives the same
        passes."""
        found = np.zeros((passes, len(texts), len(self.label_names or [])), dtype=np.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model.train()  # dropout on; no weight changes (inference mode)
            try:
                for rows, batch in self.batches(texts, batch_size, max_length):
                    found[:, rows] = np.stack([self.probabilities(self.model(**batch).logits) for _ in range(passes)])
            finally:
                self.model.eval()
        return found


def trained_scorer(model_dir: str | Path) -> Scorer:
    """The scorer of a trained model folder (a round's run, or an earlier run given as model=)."""
    from ..predictor import load_model

    predictor = load_model(str(model_dir))
    return Scorer(predictor.pipe.model, predictor.pipe.tokenizer, predictor.label_names, predictor.multilabel)


def start_scorer(model: str, label_names: list[str]) -> Scorer:
    """Before the first round: an earlier run's model with these labels scores as trained; any other checkpoint gives
    embeddings only (its head, if any, knows other labels)."""
    path = catalog.resolve_model(model)
    if catalog.run_model(model) is not None or (Path(path) / "config.json").is_file() and has_head(Path(path)):
        scorer = trained_scorer(path)
        if scorer.label_names == label_names:
            logger.info("the first batch is scored by %s, trained on these labels", model)
            return scorer
        return Scorer(scorer.model, scorer.tokenizer)
    from transformers import AutoModel

    tokenizer = models.load_tokenizer(model, path=path)
    return Scorer(AutoModel.from_pretrained(path), tokenizer)


def has_head(folder: Path) -> bool:
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(name.endswith(("ForSequenceClassification", "ForTokenClassification"))
               for name in config.get("architectures") or [])


def zero_shot(scorer: Scorer, embeddings: np.ndarray, label_names: list[str], descriptions: dict | None,
              temperature: float = 0.05) -> np.ndarray:
    """Zero-shot probabilities: softmax over the cosine similarity of each text to each label's prompts (their
    embeddings averaged), each label's mean similarity over the pool subtracted (as `zeroshot.calibrate` does)."""
    prompts = label_prompts(label_names, SimpleNamespace(labels=LabelsConfig(descriptions=descriptions)))
    _, prompt_embeddings = Scorer(scorer.model, scorer.tokenizer).score([text for each in prompts for text in each])
    texts = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = texts @ mean_rows(prompt_embeddings, [len(each) for each in prompts]).T
    logits = (similarity - similarity.mean(axis=0, keepdims=True)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)
