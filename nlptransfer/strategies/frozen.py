"""`frozen`: the encoder is frozen and only the head trains, on encoder features computed once (feature extraction)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Fitting, Strategy

if TYPE_CHECKING:
    from torch import nn

    from ..engine.loop import FitResult


class Frozen(Strategy):
    name = "frozen"
    summary = "frozen encoder (feature extraction): only the new head trains"
    card_text = "a frozen encoder (feature extraction): only the new head trained"
    card_tag = "frozen-encoder"
    default_lr = 1e-2

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        from .. import models

        models.freeze(model.base_model)
        return model

    def train(self, fitting: Fitting) -> tuple[nn.Module, FitResult]:
        """Run the encoder once over train and validation (through the disk cache), then fit the head alone."""
        from ..engine import features

        cfg, task = fitting.cfg, fitting.task
        extraction = features.for_model(fitting.model, task.features)
        cached_extract = features.cached_extraction(extraction.extract, extraction.kind,
                                                    fitting.model_source or cfg.model,
                                                    cfg.data.max_length, cfg.train.mixed_precision,
                                                    fitting.tokenizer)
        model, fitted = features.fit_head_on_features(
            fitting.model, fitting.loader("train"), fitting.loader("validation"), cached_extract,
            extraction.loaders, fitting.validate_on, cfg.train, cfg.seed, fitting.lr, fitting.accelerator,
            fitting.callbacks, fitting.loss_fn)
        fitted.train_tokens = sum(fitting.encoded["train"].lengths) * len(fitted.history)  # what features stand for
        return model, fitted

