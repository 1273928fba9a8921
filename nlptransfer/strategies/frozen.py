"""`frozen`: the encoder is frozen and only the head trains, on encoder features computed once (feature extraction)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Fitting, Strategy

if TYPE_CHECKING:
    from torch import nn

    from ..engine.loop import FitResult

STACK_POOLING = ("auto", "mean", "max", "cls")


@dataclass
class StackSettings:
    """Model stacking: several frozen encoders' pooled features (and TF-IDF) concatenated under one head."""

    models: list[str] | None = None
    """Encoders stacked after model= (short names, folders, run folders, hub ids), each reading the text with its own
    tokenizer; their pooled features are concatenated and one head trains on all; e.g. [runs/adapt/adapted-encoder]"""
    tfidf: bool = False
    """Add the text's TF-IDF features as one more member (fitted on the training split only)"""
    tfidf_features: int = 10000
    """The TF-IDF member's vocabulary size (the most frequent words and word pairs of the training split)"""
    pooling: str = "auto"
    """How each encoder's token states become one vector: auto (its sentence-transformers pooling, else mean), mean,
    max, cls"""


def stacking(cfg) -> bool:
    """Whether the run stacks encoders (stack.models) or TF-IDF (stack.tfidf) with model=."""
    return cfg.stack.models is not None or cfg.stack.tfidf


class Frozen(Strategy):
    name = "frozen"
    summary = "frozen encoder (feature extraction): only the new head trains"
    card_text = "a frozen encoder (feature extraction): only the new head trained"
    card_tag = "frozen-encoder"
    default_lr = 1e-2
    sections = {"stack": StackSettings}
    shared_encoder = True
    encoder_trains = False

    def checks(self, cfg) -> list[tuple[bool, str]]:
        if not stacking(cfg):
            return []
        from .. import tasks

        stack = cfg.stack
        checks = [
            (stack.models != [], "stack.models is an empty list: name the encoders to stack with model=, e.g. "
                                 "stack.models=[runs/adapt/adapted-encoder], or drop it (stack.tfidf=true alone "
                                 "stacks TF-IDF features with model=)"),
            (stack.pooling in STACK_POOLING, f"stack.pooling must be one of {', '.join(STACK_POOLING)}; "
                                             f"got '{stack.pooling}'"),
            (stack.tfidf_features >= 1, "stack.tfidf_features must be at least 1, e.g. stack.tfidf_features=10000"),
            (tasks.get(cfg.task).pooled_head,
             f"stacking concatenates one pooled vector per text from each member under one head, but task={cfg.task} "
             "has " + ("several tasks' heads" if tasks.get(cfg.task).several_tasks else "a head per token (word-level "
                       "stacked features are not implemented)") + ": stack for classification or multilabel, or drop "
             "stack.models/stack.tfidf"),
            (cfg.long_text == "truncate", "stacking reads each text's first data.max_length tokens in every member: "
                                          "set long_text=truncate (head_tail and sliding windows are not stacked)"),
            (cfg.data.backend != "arrow", "stacking numbers the examples in memory: use data.backend=memory"),
        ]
        if all(ok for ok, _ in checks):  # each member's checkpoint, before the run writes anything
            from ..engine import stacking as stacked

            for name in stack.models or ():
                stacked.check_member(name, cfg.trust_remote_code)
        return checks

    def loads_in_transformers(self, cfg) -> bool:
        return not stacking(cfg)

    def card_rows(self, cfg) -> list[tuple[str, Any]]:
        if not stacking(cfg):
            return []
        members = [cfg.model, *(cfg.stack.models or ())]
        return [("stacked members", ", ".join(members) + (" + TF-IDF" if cfg.stack.tfidf else "")),
                ("stack pooling", cfg.stack.pooling),
                ("loading", "a stacked model loads with nlptransfer (load_model, predict) only: plain transformers "
                            "refuses its model type (nlptransfer-stacked)")]

    def save(self, model: nn.Module, tokenizer, output_dir: Path, cfg=None) -> tuple[Path, Path | None]:
        if cfg is None or not stacking(cfg):
            return super().save(model, tokenizer, output_dir, cfg)
        from ..outputs import export

        export.save_pretrained(model, tokenizer, output_dir / "model")  # the stack's own save_pretrained
        return output_dir / "model", None

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        from .. import models

        models.freeze(model.base_model)
        return model

    def train(self, fitting: Fitting) -> tuple[nn.Module, FitResult]:
        """Run the encoder once over train and validation (through the disk cache), then fit the head alone.

        A task without a feature kind (`features` None: multitask, whose heads read one encoder under several
        tasks, while the cache holds one model's features) trains its heads over the frozen encoder in the loop.
        """
        from ..engine import features

        cfg, task = fitting.cfg, fitting.task
        if task.features is None:
            return super().train(fitting)
        if stacking(cfg):
            from ..engine import stacking as stack

            model, fitted = stack.train(fitting, cfg.stack)
            fitted.train_tokens = sum(fitting.encoded["train"].lengths) * len(fitted.history)
            return model, fitted
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

