"""`gradual`: gradual unfreezing (ULMFiT): the new head trains first, then the encoder from the top layer down."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.hooks import Callback, Loop
from ..errors import ConfigError
from .base import Strategy
from .full import layerwise_settings

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import nn

    from ..engine.loop import OptimizerSettings

logger = logging.getLogger("nlptransfer")


@dataclass
class GradualConfig:
    epochs_per_stage: int = 1
    """strategy=gradual: epochs per stage; stage 0 trains the head alone, each later one unfreezes more layers."""
    layers_per_stage: int | None = None
    """strategy=gradual: layers unfrozen per stage, top first, embeddings last; default: all by the last stage."""
    encoder_lr_factor: float = 1.0
    """strategy=gradual: the encoder's learning rate is train.lr times this factor (e.g. 0.1)."""


def stage_size(cfg: GradualConfig, epochs: int, depth: int) -> int:
    """Layers unfrozen per stage: `gradual.layers_per_stage`, or by default as many as it takes to
    unfreeze all `depth` layers and the embeddings by the last stage of `epochs` (with 2 epochs: the
    head alone, then everything)."""
    if cfg.layers_per_stage is not None:
        return cfg.layers_per_stage
    later_stages = max(math.ceil(epochs / cfg.epochs_per_stage) - 1, 1)
    return math.ceil((depth + 1) / later_stages)


def gradual_layers(epoch: int, cfg: GradualConfig, epochs: int, depth: int) -> int:
    """How many encoder layers (from the top) train in `epoch` (1-based): none in stage 0, then more each stage."""
    return (epoch - 1) // cfg.epochs_per_stage * stage_size(cfg, epochs, depth)


def fully_unfrozen_epoch(model: nn.Module, cfg: GradualConfig, epochs: int) -> int:
    """The first epoch in which gradual unfreezing trains every weight (all layers and the embeddings)."""
    depth = model.config.num_hidden_layers
    return math.ceil((depth + 1) / stage_size(cfg, epochs, depth)) * cfg.epochs_per_stage + 1


def unfreeze_stage(model: nn.Module, epoch: int, cfg: GradualConfig, epochs: int) -> None:
    """Set what trains in `epoch` of `epochs` (the callback calls it before each epoch)."""
    from .. import models

    layers = gradual_layers(epoch, cfg, epochs, model.config.num_hidden_layers)
    models.unfreeze_top(model, layers)
    trainable, total = models.count_parameters(model)
    logger.info("gradual unfreezing, epoch %d: the head and the top %d encoder layers%s train (%s of %s parameters)",
                epoch, min(layers, model.config.num_hidden_layers),
                " and the embeddings" if layers > model.config.num_hidden_layers else "", f"{trainable:,}",
                f"{total:,}")


class Unfreezing(Callback):
    """Before each epoch, unfreeze the layers of its stage."""

    def __init__(self, model: nn.Module, cfg: GradualConfig, epochs: int) -> None:
        self.model, self.cfg, self.epochs = model, cfg, epochs

    def on_epoch_start(self, loop: Loop) -> None:
        unfreeze_stage(self.model, loop.state.epoch, self.cfg, self.epochs)


class Gradual(Strategy):
    name = "gradual"
    summary = "gradual unfreezing: the head first, then the encoder from the top layer down"
    card_text = "gradual unfreezing: the new head trained first, then the encoder unfrozen from the top layer down"
    card_tag = "gradual-unfreezing"
    default_lr = 1e-4
    shared_encoder = True
    sections = {"gradual": GradualConfig}
    layerwise_lr = True

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return [
            (cfg.gradual.epochs_per_stage >= 1, "gradual.epochs_per_stage must be at least 1"),
            (cfg.gradual.layers_per_stage is None or cfg.gradual.layers_per_stage >= 1,
             "gradual.layers_per_stage must be at least 1 (or null: all layers by the last stage)"),
            (cfg.gradual.encoder_lr_factor > 0, "gradual.encoder_lr_factor must be positive, e.g. 0.1"),
        ]

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        from .. import models

        models.unfreeze_top(model, 0)  # the head alone; the callback unfreezes the encoder stage by stage
        return model

    def parameter_counts(self, model: nn.Module, cfg) -> tuple[int, int]:
        """Every weight trains from the last stage on: the total is what is reported as trainable."""
        from .. import models

        trainable, total = models.count_parameters(model)
        logger.info("strategy gradual: %s trainable parameters at first, all %s from epoch %d on", f"{trainable:,}",
                    f"{total:,}", fully_unfrozen_epoch(model, cfg.gradual, cfg.train.epochs))
        logger.info("strategy gradual: %s trainable of %s parameters (100.00%%)", f"{total:,}", f"{total:,}")
        return total, total

    def optimization(self, model: nn.Module, cfg, lr: float, accelerator: Accelerator
                     ) -> tuple[OptimizerSettings, list[Callback]]:
        if accelerator.num_processes > 1:
            raise ConfigError("strategy=gradual runs on one process (DDP cannot add weights to training mid-run); "
                              "use strategy=full with train.layer_lr_decay on several")
        trained = {name for name, _ in model.named_parameters()}
        settings = layerwise_settings(model, cfg, lr, trained, cfg.gradual.encoder_lr_factor)
        return settings, [Unfreezing(model, cfg.gradual, cfg.train.epochs)]

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        g = cfg.gradual
        return [("gradual: epochs / layers per stage, encoder lr factor",
                 f"{g.epochs_per_stage} / {g.layers_per_stage or 'all by the last stage'}, {g.encoder_lr_factor}")]
