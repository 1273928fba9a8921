"""`bitfit`: BitFit (Ben Zaken et al., 2022): only the encoder's bias terms and the new head train."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Strategy

if TYPE_CHECKING:
    from torch import nn


def bias_only(model: nn.Module) -> int:
    """Train every parameter of the head and, in the encoder, the bias terms alone (those of the attention
    projections, the feed-forward layers, the LayerNorms and the pooler); returns how many encoder biases train."""
    encoder = {id(p) for p in model.base_model.parameters()}
    biases = 0
    for name, parameter in model.named_parameters():
        is_bias = id(parameter) in encoder and name.endswith("bias")
        parameter.requires_grad_(is_bias or id(parameter) not in encoder)
        biases += is_bias
    return biases


class BitFit(Strategy):
    name = "bitfit"
    summary = "BitFit: only the encoder's bias terms and the new head train"
    card_text = "BitFit: only the bias terms of the encoder and the new head trained, every other weight frozen"
    card_tag = "bitfit"
    # Ben Zaken et al. searched 1e-4..1e-3 for BitFit on BERT-base/large, against 1e-5..5e-5 for full fine-tuning:
    # with about 0.1% of the weights training, bias-only tuning takes rates one to two orders larger. Full
    # fine-tuning of the small packaged MiniLM already runs at 1e-4 here (the bottom of BitFit's range), so bitfit
    # gets the top of it, 1e-3, 10x full; the new head trains at it too.
    default_lr = 1e-3
    shared_encoder = True

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        if not bias_only(model):
            raise ConfigError(f"strategy=bitfit trains the encoder's bias terms, but {model.config.model_type} "
                              "has none; use strategy=frozen (the head alone) or lora")
        return model
