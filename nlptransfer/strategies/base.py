"""The transfer-strategy protocol: which weights move, and how.

A strategy is one object, registered by name in `strategies/__init__.py`. It owns its option
sections (fields of `RunConfig`), their checks, its default learning rate, how it prepares the
model (what trains), how it trains (the loop with its callbacks, or something else: `frozen`
fits the head on cached features), its part of the checkpoint fingerprint, how it saves the
model, and its sentences in the log, the model card and `compare`. Code outside this folder
asks the object; it never compares a strategy's name.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..engine.hooks import Callback

if TYPE_CHECKING:  # torch and the loop load when a strategy works, not when the config reads its options
    from accelerate import Accelerator
    from torch import nn
    from torch.utils.data import DataLoader

    from ..engine.loop import FitResult, OptimizerSettings

logger = logging.getLogger("nlptransfer")


@dataclass
class Fitting:
    """Everything a strategy needs to train one run: built by the pipeline, read by `Strategy.train`."""

    model: nn.Module
    cfg: Any
    """The run's `RunConfig`."""
    task: Any
    """The run's `Task` (its loaders, features and validation)."""
    encoded: dict
    """The encoded splits (`train`, `validation`, `test`)."""
    tokenizer: Any
    accelerator: Accelerator
    lr: float
    validate_on: Callable[[DataLoader], Callable[[nn.Module], dict]]
    """`validate_on(loader)` is fit's validation function for a loader of validation inputs."""
    loss_fn: nn.Module | None = None
    callbacks: list[Callback] = field(default_factory=list)
    model_source: str | None = None
    """Where the checkpoint was loaded from (identifies its weights, e.g. for the feature cache); default cfg.model."""
    """Checkpointing, early stopping, tracking and the user's own; the strategy adds its own."""
    data: Any = None
    """The task's data (texts and labels of each split), for strategies that read the texts themselves (stacking)."""

    def loader(self, split: str) -> DataLoader:
        """Evaluation batches (ordered, no shuffling) of a split, prepared for the accelerator."""
        return self.accelerator.prepare(self.task.eval_loader(self.encoded[split], self.tokenizer, self.cfg))


class Strategy:
    """Base of every transfer strategy: plain fine-tuning of what `prepare` leaves trainable."""

    name: ClassVar[str]
    summary: ClassVar[str]
    """One line for --help, the log and `compare`: what trains."""
    card_text: ClassVar[str]
    """The model card's sentence after "Transfer strategy: `name`,"."""
    card_tag: ClassVar[str]
    card_verb: ClassVar[str] = "fine-tuned for"
    """How the card's first line says what was done to the checkpoint ("... fine-tuned for text classification")."""
    card_note: ClassVar[str | None] = None
    """An extra line of the model card's training section, if any."""
    default_lr: ClassVar[float]
    sections: ClassVar[dict[str, type]] = {}
    """Option sections this strategy owns: `RunConfig` gets a field of each type under its name."""
    layerwise_lr: ClassVar[bool] = False
    """Accepts `train.layer_lr_decay` and `train.head_lr` (discriminative learning rates)."""
    adapter: ClassVar[bool] = False
    """Saves a peft adapter (`adapter/`) beside the merged `model/`."""
    default_pooling: ClassVar[str] = "model"
    """`head.pooling` when unset: `model` (the architecture's own head) or `auto` (a sentence embedding)."""
    default_normalize: ClassVar[bool | None] = None
    """`head.normalize` when unset (None: as the checkpoint's sentence-transformers modules say)."""
    needs_examples: ClassVar[bool] = True
    """Trains on labeled examples: a run with none (`data.examples_per_class=0`) is refused."""
    sentence_embeddings: ClassVar[bool] = False
    """Trains or reads a pooled sentence embedding: needs a task with a pooled head (classification)."""
    shared_encoder: ClassVar[bool] = False
    """Trains a multi-task model (one encoder shared by several task models) as it trains one model."""
    encoder_trains: ClassVar[bool] = True
    """Changes the encoder's weights (False: its outputs for a text never change, so they can be cached across
    runs, as the active loop caches its pool's)."""

    def checks(self, cfg) -> list[tuple[bool, str]]:
        """Checks of this strategy's own options: (condition that must hold, message if not)."""
        return []

    def training_data(self, data, cfg):
        """The run's data as this strategy trains on it (e.g. with templated examples added); checked here."""
        return data

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        """Make the parameters this strategy trains trainable, and no others; may wrap the model (peft)."""
        return model

    def parameter_counts(self, model: nn.Module, cfg) -> tuple[int, int]:
        """(trainable, total) parameters, logged and reported; tied weights count once."""
        from .. import models

        trainable, total = models.count_parameters(model)
        logger.info("strategy %s: %s trainable of %s parameters (%.2f%%)", self.name, f"{trainable:,}",
                    f"{total:,}", 100 * trainable / total)
        return trainable, total

    def optimization(self, model: nn.Module, cfg, lr: float, accelerator: Accelerator
                     ) -> tuple[OptimizerSettings, list[Callback]]:
        """The optimizer's settings and this strategy's callbacks (none by default)."""
        from ..engine.loop import OptimizerSettings

        return OptimizerSettings(lr), []

    def train(self, fitting: Fitting) -> tuple[nn.Module, FitResult]:
        """Fit the prepared model on the training batches; returns the trained model and the loop state."""
        from ..engine.loop import TrainData, fit

        cfg, accelerator = fitting.cfg, fitting.accelerator
        settings, callbacks = self.optimization(fitting.model, cfg, fitting.lr, accelerator)
        batches = fitting.task.train_loader(fitting.encoded["train"], fitting.tokenizer, cfg)
        data = TrainData(batches, fitting.validate_on(fitting.loader("validation")), fitting.loss_fn)
        fitted = fit(fitting.model, data, cfg.train, settings, accelerator, fitting.callbacks + callbacks)
        return accelerator.unwrap_model(fitting.model), fitted

    def fixed_budget(self, cfg) -> str | None:
        """What trains without a validation split to pick the best epoch (None: nothing trains)."""
        return f"{cfg.train.epochs} epochs" + (f" (at most {cfg.train.max_steps} steps)" if cfg.train.max_steps else "")

    def fingerprint(self, cfg) -> dict:
        """This strategy's part of the checkpoint fingerprint: its own option sections."""
        return {name: dataclasses.asdict(getattr(cfg, name)) for name in self.sections}

    def card_rows(self, cfg) -> list[tuple[str, Any]]:
        """Extra hyperparameter rows of the model card (e.g. the LoRA rank)."""
        return []

    def loads_in_transformers(self, cfg) -> bool:
        """Whether the saved `model/` loads in transformers (a pooled head with trust_remote_code); a model only
        nlptransfer loads (stacked encoders) says so on its card instead of a transformers snippet."""
        return True

    def unused_train_options(self, cfg) -> tuple[str, ...]:
        """The `train.*` options this run does not use (its own section's replace them): the card leaves them out."""
        return ()

    def save(self, model: nn.Module, tokenizer, output_dir: Path, cfg=None) -> tuple[Path, Path | None]:
        """Save `model/` (a plain transformers model) and, for adapter strategies, `adapter/` (its base named by
        the run's `model=`, its task and labels beside it)."""
        from ..outputs import export

        return export.save_model(model, tokenizer, output_dir, adapter=self.adapter,
                                 task=cfg.task if cfg is not None else None,
                                 base_model=cfg.model if cfg is not None else None)
