"""Feature extraction for `strategy=frozen`: run the frozen encoder once, then train only the head.

A frozen encoder gives the same outputs every epoch, so recomputing them is waste. The
encoder inside the model is swapped for `FeatureReplay`, which hands the model's own head
the cached features of the batch: the head's code (pooler, dropout, classifier, loss) runs
unchanged for every architecture, and `restore()` puts the real encoder back for saving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..modeling_nlptransfer import PooledForSequenceClassification, pool
from ..options import TrainConfig
from ..outputs.console import progress_bar
from . import cache
from .batches import EncodedSplit, LengthGroupedBatches, model_inputs, sorted_batches
from .loop import Callback, FitResult, OptimizerSettings, TrainData, fit


class FeatureReplay(nn.Module):
    """Stands in for the encoder: returns the features set for the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: BaseModelOutputWithPooling | None = None

    def forward(self, *args, **kwargs) -> BaseModelOutputWithPooling:
        return self.outputs


class HeadOnFeatures(nn.Module):
    """The task model with its encoder replaced by cached features; only the head has parameters."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.__dict__["encoder"] = model.base_model  # kept out of this module's parameters
        self.replay = FeatureReplay()
        setattr(model, model.base_model_prefix, self.replay)

    def forward(self, encoder_hidden, encoder_pooled=None, labels=None):
        self.replay.outputs = BaseModelOutputWithPooling(last_hidden_state=encoder_hidden,
                                                         pooler_output=encoder_pooled)
        return self.model(labels=labels)

    def restore(self) -> PreTrainedModel:
        """The original model with its real encoder back in place."""
        setattr(self.model, self.model.base_model_prefix, self.encoder)
        return self.model


def head_inputs(outputs, attention_mask: torch.Tensor | None, pooling: str | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a sequence-classification head reads of the encoder's outputs: (the first token's hidden state, or the
    pooled states for a pooled head, as a one-token sequence; the pooler output, if any)."""
    hidden = (outputs.last_hidden_state[:, :1] if pooling is None
              else pool(outputs.last_hidden_state, attention_mask, pooling)[:, None])
    return hidden, getattr(outputs, "pooler_output", None)


def head_pooling(model: nn.Module) -> str | None:
    """A pooled head's pooling mode (mean, max, cls); None for an architecture's own head (first token, pooler)."""
    return model.pooling_mode if isinstance(model, PooledForSequenceClassification) else None


@torch.no_grad()
def extract(encoder: nn.Module, batches: DataLoader, accelerator: Accelerator, pooling: str | None = None
            ) -> EncodedSplit:
    """Run the encoder once over a split; per example, the first token's hidden state and pooler output.

    Sequence classification heads read only the first token (`[CLS]`/`<s>`) or the pooler; a pooled
    head (`pooling`: mean, max, cls) reads the pooled states, kept as a one-token sequence.
    """
    encoder.eval()
    rows: dict[int, dict] = {}
    for batch in progress_bar(accelerator, batches, desc="extracting features", leave=False):
        inputs = {k: v.to(accelerator.device) for k, v in model_inputs(batch).items() if k != "labels"}
        with accelerator.autocast():
            outputs = encoder(**inputs)
        hidden, pooled = head_inputs(outputs, inputs.get("attention_mask"), pooling)
        gathered = accelerator.gather_for_metrics({
            "encoder_hidden": hidden.float(),
            "labels": batch["labels"].to(accelerator.device),
            "example_index": batch["example_index"].to(accelerator.device),
        } | ({"encoder_pooled": pooled.float()} if pooled is not None else {}))
        for i, index in enumerate(gathered["example_index"].tolist()):
            rows[index] = {key: value[i].cpu() for key, value in gathered.items()}
    return EncodedSplit([rows[i] for i in sorted(rows)])


def feature_loaders(
    train: EncodedSplit, validation: EncodedSplit, batch_size: int, eval_batch_size: int, seed: int
) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches and ordered validation batches of cached features."""
    same_length = [1] * len(train)
    train_batches = DataLoader(train, batch_sampler=LengthGroupedBatches(same_length, batch_size, seed))
    validation_batches = DataLoader(validation, batch_sampler=sorted_batches([1] * len(validation), eval_batch_size))
    return train_batches, validation_batches


@torch.no_grad()
def extract_tokens(encoder: nn.Module, batches: DataLoader, accelerator: Accelerator) -> EncodedSplit:
    """Run the encoder once over a split of windows; per window, every real token's last hidden state.

    Token classification heads read each token's hidden state. Padding is dropped here (the
    attention mask says where it is) and added again per batch by `pad_token_features`.
    """
    encoder.eval()
    rows: dict[int, dict] = {}
    for batch in progress_bar(accelerator, batches, desc="extracting token features", leave=False):
        inputs = {k: v.to(accelerator.device) for k, v in model_inputs(batch).items() if k != "labels"}
        with accelerator.autocast():
            hidden = encoder(**inputs).last_hidden_state.float()
        padded = {  # processes pad to different lengths; gathering needs one
            "encoder_hidden": accelerator.pad_across_processes(hidden, dim=1),
            "labels": accelerator.pad_across_processes(batch["labels"].to(accelerator.device), dim=1, pad_index=-100),
            "mask": accelerator.pad_across_processes(inputs["attention_mask"], dim=1),
            "example_index": batch["example_index"].to(accelerator.device),
        }
        gathered = accelerator.gather_for_metrics(padded)
        for i, index in enumerate(gathered["example_index"].tolist()):
            real = gathered["mask"][i].bool()
            rows[index] = {"encoder_hidden": gathered["encoder_hidden"][i][real].cpu(),
                           "labels": gathered["labels"][i][real].cpu(), "example_index": index}
    return EncodedSplit([rows[i] for i in sorted(rows)])


def pad_token_features(rows: list[dict]) -> dict[str, torch.Tensor]:
    """A batch of cached token features: hidden states padded with zeros, labels with -100 (ignored)."""
    return {
        "encoder_hidden": pad_sequence([row["encoder_hidden"] for row in rows], batch_first=True),
        "labels": pad_sequence([row["labels"] for row in rows], batch_first=True, padding_value=-100),
        "example_index": torch.tensor([row["example_index"] for row in rows]),
    }


def token_feature_loaders(
    train: EncodedSplit, validation: EncodedSplit, batch_size: int, eval_batch_size: int, seed: int
) -> tuple[DataLoader, DataLoader]:
    """Length-grouped training batches and longest-first validation batches of cached token features."""
    lengths = [len(row["labels"]) for row in train]
    train_batches = DataLoader(train, batch_sampler=LengthGroupedBatches(lengths, batch_size, seed),
                               collate_fn=pad_token_features)
    validation_lengths = [len(row["labels"]) for row in validation]
    validation_batches = DataLoader(validation, batch_sampler=sorted_batches(validation_lengths, eval_batch_size),
                                    collate_fn=pad_token_features)
    return train_batches, validation_batches


@dataclass(frozen=True)
class FeatureExtraction:
    """What a frozen encoder's features are for one kind of head: computed once, cached, batched."""

    kind: str
    """`first_token` (sequence classification) or `tokens` (token classification): part of the cache key."""
    extract: Callable
    """`extract(encoder, loader, accelerator) -> EncodedSplit` of features."""
    loaders: Callable
    """`loaders(train, validation, batch_size, eval_batch_size, seed)` -> (train batches, validation batches)."""


FIRST_TOKEN = FeatureExtraction("first_token", extract, feature_loaders)
TOKENS = FeatureExtraction("tokens", extract_tokens, token_feature_loaders)
EXTRACTIONS = {extraction.kind: extraction for extraction in (FIRST_TOKEN, TOKENS)}
"""The kinds of features a task's head reads (its `features`), by name."""


def for_model(model: nn.Module, kind: str) -> FeatureExtraction:
    """The features `model`'s head reads: a pooled head's pooled states, else the task's kind of features."""
    mode = head_pooling(model)
    if mode is None:
        return EXTRACTIONS[kind]
    return FeatureExtraction(f"pooled_{mode}", lambda encoder, batches, accelerator: extract(
        encoder, batches, accelerator, pooling=mode), feature_loaders)


def cached_extraction(extract_features: Callable, kind: str, model: str, max_length: int, precision: str,
                      tokenizer) -> Callable:
    """`extract_features` through the disk cache: features are reused when this model, split,
    max length, tokenizer and precision were seen before (`kind`: `first_token` or `tokens`)."""

    def extract(encoder: nn.Module, loader: DataLoader, accelerator: Accelerator) -> EncodedSplit:
        # Iterating a DataLoader draws a seed from the global RNG: without the fork, a run that
        # extracts would train with other dropout masks than one that reads the cache.
        with torch.random.fork_rng(devices=[]):
            return extract_features(encoder, loader, accelerator)

    def extract_or_load(encoder: nn.Module, loader: DataLoader, accelerator: Accelerator) -> EncodedSplit:
        key = cache.feature_key(model, loader.dataset, max_length, kind, tokenizer, precision=precision)
        return cache.cached(key, lambda: extract(encoder, loader, accelerator))

    return extract_or_load


def fit_head_on_features(
    model: PreTrainedModel,
    train_batches: DataLoader,
    validation_batches: DataLoader,
    extract_features: Callable,
    make_loaders: Callable,
    validate_on: Callable,
    cfg: TrainConfig,
    seed: int,
    lr: float,
    accelerator: Accelerator,
    callbacks: Sequence[Callback] = (),
    loss_fn: nn.Module | None = None,
) -> tuple[PreTrainedModel, FitResult]:
    """strategy=frozen: run the encoder once over both splits, fit only the head on the cached features,
    then put the encoder back.

    `extract_features`/`make_loaders` come from a `FeatureExtraction` (`FIRST_TOKEN` or `TOKENS`);
    `validate_on(loader)` returns fit's validation function for a loader of validation features.
    """
    head = HeadOnFeatures(model)
    train_features, validation = make_loaders(
        extract_features(head.encoder, train_batches, accelerator),
        extract_features(head.encoder, validation_batches, accelerator),
        cfg.batch_size, cfg.eval_batch_size, seed,
    )
    data = TrainData(train_features, validate_on(accelerator.prepare(validation)), loss_fn)
    fitted = fit(head, data, cfg, OptimizerSettings(lr), accelerator, callbacks)
    return accelerator.unwrap_model(head).restore(), fitted
