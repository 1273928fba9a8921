"""`full`: every weight trains (optionally with the embeddings or the bottom K layers frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import Strategy

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import nn

    from ..engine.hooks import Callback
    from ..engine.loop import OptimizerSettings


@dataclass
class FreezeConfig:
    embeddings: bool = False
    """Freeze the embedding layer (with strategy=full)."""
    layers: int = 0
    """Freeze the bottom K encoder layers (with strategy=full)."""


def layerwise_settings(model: nn.Module, cfg, lr: float, trained: set[str], encoder_scale: float = 1.0
                       ) -> OptimizerSettings:
    """Discriminative learning rates (`train.layer_lr_decay`, `train.head_lr`) over the `trained` parameters."""
    from .. import models
    from ..engine.loop import OptimizerSettings

    layers = {name: layer for name, layer in models.parameter_layers(model).items() if name in trained}
    head_scale = (cfg.train.head_lr or lr) / lr
    return OptimizerSettings(lr, models.layer_lr_scales(layers, cfg.train.layer_lr_decay, head_scale, encoder_scale))


class Full(Strategy):
    name = "full"
    summary = "full fine-tuning: every weight trains"
    card_text = "full fine-tuning: every weight of the encoder and the new head trained"
    card_tag = "full-fine-tuning"
    default_lr = 1e-4
    sections = {"freeze": FreezeConfig}
    layerwise_lr = True
    shared_encoder = True

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return [(cfg.freeze.layers >= 0, "freeze.layers must be 0 or more")]

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        from .. import models

        models.freeze_bottom(model, cfg.freeze.embeddings, cfg.freeze.layers)
        return model

    def optimization(self, model: nn.Module, cfg, lr: float, accelerator: Accelerator
                     ) -> tuple[OptimizerSettings, list[Callback]]:
        if cfg.train.layer_lr_decay is None and cfg.train.head_lr is None:
            return super().optimization(model, cfg, lr, accelerator)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        return layerwise_settings(model, cfg, lr, trained), []

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        if cfg.freeze.embeddings or cfg.freeze.layers:
            return [("frozen", f"embeddings: {cfg.freeze.embeddings}, bottom layers: {cfg.freeze.layers}")]
        return []
