"""`zeroshot`: classification with no labeled example, by similarity to the labels' descriptions.

Each label's prompt (`labels.template` around its description, `labels.descriptions`) is embedded
by the encoder; a text gets the label whose prompt embedding is most similar (cosine). The head is
the linear layer whose rows are those normalized embeddings (times `zeroshot.scale`), so the model
saves, loads and predicts like any pooled classifier. Multi-label: a label is predicted when its
similarity exceeds `zeroshot.threshold`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.state import LoopState
from ..errors import ConfigError
from . import descriptions
from .base import Fitting, Strategy

if TYPE_CHECKING:
    from torch import nn

    from ..engine.loop import FitResult

logger = logging.getLogger("nlptransfer")
ALIKE = 0.9
"""Label prompts whose embeddings' cosine exceeds this are too alike to separate: a warning says so."""


@dataclass
class ZeroShotConfig:
    scale: float = 20.0
    """Logits are cosine similarities times this (the scores' sharpness; the predicted label does not change)."""
    threshold: float = 0.3
    """Multi-label: predict each label whose cosine similarity with the text exceeds this."""
    calibrate: int = 512
    """Single-label: subtract each label's mean similarity over this many training texts (a seeded sample; their
    labels are not read), so a prompt that every text resembles does not take every text; 0: no calibration."""


class ZeroShot(Strategy):
    name = "zeroshot"
    summary = "zero-shot: no training; the label whose description embeds closest to the text"
    card_text = ("zero-shot classification: no weight was trained; a text gets the label whose description "
                 "(in the prompt below) its sentence embedding is most similar to")
    card_tag = "zero-shot"
    card_verb = "used without training (zero-shot) for"
    default_lr = 1e-5  # unused: nothing trains
    sections = {"zeroshot": ZeroShotConfig}
    default_pooling = "auto"
    default_normalize = True
    needs_examples = False
    sentence_embeddings = True

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return [(cfg.zeroshot.scale > 0, "zeroshot.scale must be positive, e.g. 20"),
                (cfg.zeroshot.calibrate >= 0, "zeroshot.calibrate is a number of training texts: 0 (none) or more"),
                (-1 <= cfg.zeroshot.threshold <= 1, "zeroshot.threshold is a cosine similarity: in [-1, 1]"),
                (not cfg.data.text_pair_column,
                 "strategy=zeroshot compares one text with the label descriptions; data.text_pair_column needs a "
                 "trained strategy (e.g. strategy=contrastive)")] + descriptions.checks(cfg)

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        if not model.normalize:
            raise ConfigError("strategy=zeroshot compares cosine similarities: drop head.normalize=false")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    def fixed_budget(self, cfg) -> str | None:
        return None  # nothing trains

    def train(self, fitting: Fitting) -> tuple[nn.Module, FitResult]:
        """No training: the head's rows become the label prompts' embeddings."""
        import torch

        started = time.perf_counter()
        model, tokenizer, cfg = fitting.model, fitting.tokenizer, fitting.cfg
        if unused := set_options(cfg, self.unused_train_options(cfg)):
            logger.warning("strategy=zeroshot trains nothing: %s not used", ", ".join(unused))
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        prompts = descriptions.label_prompts(names, cfg)
        model.eval()
        inputs = tokenizer([text for each in prompts for text in each], padding=True, truncation=True,
                           max_length=cfg.data.max_length, return_tensors="pt").to(model.device)
        with torch.no_grad():
            embedded = model.embed(**inputs).float().cpu().numpy()
        rows = torch.from_numpy(descriptions.mean_rows(embedded, [len(each) for each in prompts])).float()
        multilabel = model.config.problem_type == "multi_label_classification"
        bias = (torch.full((len(names),), -cfg.zeroshot.threshold) if multilabel
                else -calibration(fitting, rows) if cfg.zeroshot.calibrate else torch.zeros(len(names)))
        with torch.no_grad():
            model.score.weight.copy_(cfg.zeroshot.scale * rows.to(model.device))
            model.score.bias.copy_(cfg.zeroshot.scale * bias.to(model.device))
        closest = (rows @ rows.T).fill_diagonal_(-1).max().item()
        logger.log(logging.WARNING if closest > ALIKE else logging.INFO,
                   "zero-shot: %d labels, %d prompts embedded; the two most similar labels have cosine %.3f%s",
                   len(names), len(embedded), closest,
                   " (prompts this alike are hard to tell apart: describe the labels more distinctly with "
                   "labels.descriptions)" if closest > ALIKE else "")
        state = LoopState(best_epoch=0)
        state.train_seconds = time.perf_counter() - started
        return model, state

    def unused_train_options(self, cfg) -> tuple[str, ...]:
        return TRAINING_OPTIONS

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        return [("label prompt template", cfg.labels.template), ("similarity scale", cfg.zeroshot.scale),
                ("calibrated on training texts (labels unused)", cfg.zeroshot.calibrate or "no")]


def calibration(fitting: Fitting, rows):
    """Each label's mean cosine similarity over a seeded sample of `zeroshot.calibrate` training texts (zeros without
    training texts): what every text shares with the label's prompts, subtracted from its score."""
    import numpy as np
    import torch

    from ..engine import batches, embedding

    train, cfg = fitting.encoded["train"], fitting.cfg
    if not len(train):
        logger.info("zero-shot: no training text to calibrate the label scores on")
        return torch.zeros(len(rows))
    chosen = np.random.default_rng(cfg.seed).permutation(len(train))[:cfg.zeroshot.calibrate]
    sample = batches.EncodedSplit([train[int(i)] for i in sorted(chosen)])
    texts = embedding.embed(fitting.model, fitting.accelerator.prepare(
        fitting.task.eval_loader(sample, fitting.tokenizer, cfg)), fitting.accelerator)
    texts = torch.from_numpy(np.asarray(texts, dtype=np.float32))
    texts = texts / texts.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    shift = (texts @ rows.T).mean(0)
    logger.info("zero-shot: label scores calibrated on %d training texts (their labels unused): mean similarity %s",
                len(sample), ", ".join(f"{value:.3f}" for value in shift.tolist()))
    return shift


TRAINING_OPTIONS = ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_accum_steps",
                    "max_grad_norm", "patience", "group_by_length", "max_nonfinite_steps")
"""The train options of the loop, which zeroshot never runs (train.eval_batch_size and mixed_precision it uses).
A warning, not an error: compare, curve and sweep give every strategy the same options."""


def set_options(cfg, names: tuple[str, ...]) -> list[str]:
    """`train.X=value` for each of the `train` options `names` set away from the config's own defaults (the
    recipe's)."""
    defaults = type(cfg)().train
    return [f"train.{name}={getattr(cfg.train, name)}" for name in names
            if getattr(cfg.train, name) != getattr(defaults, name)]
