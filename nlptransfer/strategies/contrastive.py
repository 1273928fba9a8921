"""`contrastive`: few-shot training as SetFit does it, at a cost linear in the examples.

Phase 1 trains the encoder on the pooled sentence embeddings of the labeled examples (every text once per
epoch): with SetFit's pair loss over every pair of each batch (`contrastive.loss=cosine`, the default: each
pair's cosine pulled to 1 for one label, to 0 otherwise) or a supervised contrastive loss (`supcon`); phase 2
fits the linear head in closed form, a logistic regression on the embeddings computed once;
`contrastive.end_to_end=true` then fine-tunes encoder and head together. LoRA on the encoder
(`contrastive.lora_r`) trains low-rank updates instead of every weight; they are merged before the head is fitted.
`contrastive.synthetic_per_class` adds templated examples built from the label descriptions
(`labels.descriptions`, `labels.template`): a cold start with few labeled examples or none.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.state import LoopState
from ..errors import DataError
from . import descriptions
from .base import Fitting, Strategy

if TYPE_CHECKING:
    from torch import nn

    from ..engine.loop import FitResult

logger = logging.getLogger("nlptransfer")


@dataclass
class ContrastiveConfig:
    epochs: int = 10
    """Passes of the contrastive phase over the labeled examples (each text once per pass); raised until the phase
    takes min_steps steps."""
    min_steps: int = 0
    """The phase's least number of optimizer steps: with few examples (a batch or two per pass) more passes are run
    so the encoder moves as far as with more; 0: exactly `epochs` passes."""
    batch_size: int = 16
    """Texts per contrastive batch: each is contrasted with the batch's others."""
    loss: str = "cosine"
    """The phase's loss: `cosine` (SetFit's: each pair's cosine pulled to 1 for one label, to 0 otherwise) or
    `supcon` (supervised contrastive: each text against the batch's others, softmax over cosine / temperature)."""
    temperature: float = 0.05
    """Temperature of the supervised contrastive loss (cosine similarity / temperature; not used by `cosine`)."""
    head_c: float = 1.0
    """Inverse L2 strength of the logistic-regression head (scikit-learn's C; SetFit's default 1.0)."""
    end_to_end: bool = False
    """After the head is fitted, fine-tune encoder and head together (train.epochs, train.lr)."""
    lora_r: int = 0
    """Train LoRA updates of this rank on the encoder's attention instead of every weight; 0: every weight."""
    synthetic_per_class: int = 0
    """Add this many templated examples per label (labels.template with each description) to the training data."""


class Contrastive(Strategy):
    name = "contrastive"
    summary = "few-shot: contrastive sentence-embedding training, then a logistic-regression head"
    card_text = ("few-shot contrastive training: the encoder learned, on the labeled examples, to embed texts of "
                 "one label close together and texts of different labels apart, then a logistic-regression head was "
                 "fitted on the embeddings")
    card_tag = "few-shot"
    default_lr = 1e-4  # measured on the tuning sets (benchmarks/FEWSHOT.md): 2e-5 trailed setfit by 0.5 to 2.3 points
    # the loss too: on the tweets at k=16, cosine pairs 0.584 against supcon's 0.549 (5 seeds; setfit 0.559)
    sections = {"contrastive": ContrastiveConfig}
    default_pooling = "auto"
    sentence_embeddings = True

    def checks(self, cfg) -> list[tuple[bool, str]]:
        c = cfg.contrastive
        return [(c.epochs >= 1, "contrastive.epochs must be at least 1"),
                (c.min_steps >= 0, "contrastive.min_steps must be 0 (exactly contrastive.epochs) or more"),
                (c.batch_size >= 2, "contrastive.batch_size must be at least 2: a text is contrasted with others"),
                (c.loss in LOSSES, f"contrastive.loss must be one of {', '.join(LOSSES)}"),
                (0.01 <= c.temperature <= 1, "contrastive.temperature must be between 0.01 and 1, e.g. 0.05: "
                                             "smaller ones overflow the loss, larger ones hardly tell texts apart"),
                (c.head_c > 0, "contrastive.head_c must be positive, e.g. 1.0"),
                (c.lora_r >= 0, "contrastive.lora_r must be 0 (every weight trains) or a rank of at least 1"),
                (c.synthetic_per_class >= 0, "contrastive.synthetic_per_class must be 0 or more"),
                (not cfg.resume, "strategy=contrastive runs are not resumed: drop resume= and run it again")
                ] + descriptions.checks(cfg)

    def training_data(self, data, cfg):
        if len(set(flat_labels(data.train.labels))) < 2 and not cfg.contrastive.synthetic_per_class:
            raise DataError("strategy=contrastive needs training examples of at least two labels: it learns what "
                            "tells them apart")
        if not cfg.contrastive.synthetic_per_class:
            return data
        return descriptions.with_templated_examples(data, cfg, cfg.contrastive.synthetic_per_class)

    def train(self, fitting: Fitting) -> tuple[nn.Module, FitResult]:
        import numpy as np

        from ..engine import embedding

        cfg, model, accelerator = fitting.cfg, fitting.model, fitting.accelerator
        c = cfg.contrastive
        started = time.perf_counter()
        train = fitting.encoded["train"]
        y = np.asarray([row["labels"] for row in train])
        if has_positive_pairs(y):
            state = self.train_encoder(fitting)
        else:  # the loss is 0 on every batch: the phase would only decay the weights
            logger.warning("contrastive phase skipped: no two training examples share a label, so there is no "
                           "positive pair to learn from; the head is fitted on the checkpoint's own embeddings (give "
                           "a label 2 or more examples, or set contrastive.synthetic_per_class)")
            state = LoopState(best_epoch=0)
        x = embedding.embed(model, accelerator.prepare(fitting.task.eval_loader(train, fitting.tokenizer, cfg)),
                            accelerator)
        num_labels = model.config.num_labels
        weight, bias = embedding.logistic_head(x, y, num_labels, y.ndim == 2, c.head_c)
        embedding.set_head(model.score, weight, bias)
        logger.info("head: logistic regression (C=%g) fitted on %d embeddings", c.head_c, len(x))
        state.train_seconds = time.perf_counter() - started
        if c.end_to_end:
            model, tuned = Strategy.train(self, fitting)
            tuned.train_seconds += state.train_seconds
            return model, tuned
        return model, state

    def train_encoder(self, fitting: Fitting) -> LoopState:
        """Phase 1: the encoder (or its LoRA updates) trained with the contrastive loss for a fixed budget."""
        from ..engine import batches, embedding
        from ..engine.loop import OptimizerSettings, TrainData, fit

        cfg, model, c = fitting.cfg, fitting.model, fitting.cfg.contrastive
        loader = batches.train_loader(fitting.encoded["train"], fitting.tokenizer, c.batch_size, cfg.seed,
                                      group_by_length=False)
        epochs = phase_epochs(c, len(loader))
        phase = dataclasses.replace(cfg.train, epochs=epochs, batch_size=c.batch_size, max_steps=None,
                                    patience=None, group_by_length=False, warmup_ratio=0.1)
        logger.info("contrastive phase: %d epochs over %d examples, batches of %d, lr %g%s", epochs,
                    len(fitting.encoded["train"]), c.batch_size, fitting.lr,
                    f", LoRA rank {c.lora_r} on the encoder" if c.lora_r else "")
        prefix = model.base_model_prefix
        encoder = model.base_model
        if c.lora_r:
            setattr(model, prefix, lora_encoder(encoder, c.lora_r))
        wrapped = embedding.ContrastiveEncoder(model, c.temperature, c.loss)
        state = fit(wrapped, TrainData(loader, None), phase, OptimizerSettings(fitting.lr), fitting.accelerator)
        if c.lora_r:
            setattr(model, prefix, getattr(model, prefix).merge_and_unload())
        model.eval()
        return state

    def unused_train_options(self, cfg) -> tuple[str, ...]:
        """The contrastive phase's own budget replaces these (`train_encoder`), unless an end-to-end phase follows."""
        return () if cfg.contrastive.end_to_end else REPLACED_TRAIN_OPTIONS

    def fixed_budget(self, cfg) -> str | None:
        c = cfg.contrastive
        steps = f" (at least {c.min_steps} steps)" if c.min_steps else ""
        then = f", then {Strategy.fixed_budget(self, cfg)} end to end" if c.end_to_end else ""
        return f"{c.epochs} contrastive epochs{steps}{then}"

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        c = cfg.contrastive
        epochs = f"{c.epochs} (more to take {c.min_steps} steps)" if c.min_steps else c.epochs
        loss = "cosine pairs" if c.loss == "cosine" else f"supervised contrastive, temperature {c.temperature}"
        rows = [("contrastive epochs / batch / loss", f"{epochs} / {c.batch_size} / {loss}"),
                ("head", f"logistic regression, C={c.head_c}" + (", then end-to-end fine-tuning"
                                                                 if c.end_to_end else ""))]
        if c.lora_r:
            rows.append(("LoRA rank on the encoder", c.lora_r))
        if c.synthetic_per_class:
            rows.append(("templated examples per label", c.synthetic_per_class))
        return rows


def phase_epochs(c: ContrastiveConfig, batches_per_epoch: int) -> int:
    """contrastive.epochs, raised to the fewest passes that take contrastive.min_steps optimizer steps."""
    return max(c.epochs, -(-c.min_steps // max(batches_per_epoch, 1)))


LOSSES = ("cosine", "supcon")
"""`contrastive.loss`: SetFit's pair cosine regression, or the supervised contrastive loss."""

REPLACED_TRAIN_OPTIONS = ("epochs", "max_steps", "batch_size", "warmup_ratio", "patience", "group_by_length")
"""The train options the contrastive phase sets itself (contrastive.epochs and batch_size, warmup 0.1, no stopping)."""


def lora_encoder(encoder: nn.Module, rank: int) -> nn.Module:
    """The encoder with LoRA updates on its attention projections (peft's defaults for the architecture)."""
    from peft import LoraConfig

    from .lora import add_peft

    return add_peft(encoder, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.1), "LoRA", "contrastive.lora_r")


def has_positive_pairs(labels) -> bool:
    """Whether two training examples share a label (multi-hot rows: one of their labels), as the contrastive loss
    needs."""
    import numpy as np

    labels = np.asarray(labels)
    counts = labels.sum(axis=0) if labels.ndim == 2 else np.unique(labels, return_counts=True)[1]
    return bool(len(counts)) and int(counts.max()) >= 2


def flat_labels(labels: list) -> list:
    return [label for row in labels for label in (row if isinstance(row, list) else [row])]
