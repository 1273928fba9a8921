"""`lora`: peft LoRA adapters on the attention projections; the new head trains and is saved with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Strategy

if TYPE_CHECKING:
    from torch import nn


@dataclass
class LoraSettings:
    r: int = 8
    """Rank of the LoRA update matrices."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.1
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Module names to adapt; default: peft's attention projections for the architecture."""


def add_peft(model: nn.Module, peft_config, what: str, option: str) -> nn.Module:
    """Wrap `model` with peft adapters; an architecture peft cannot adapt is a one-line error naming `option`."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise ConfigError(f"cannot add {what} to {model.config.model_type}: {str(e).splitlines()[0]}; "
                          f"set {option}=[...] to the module names to adapt") from None


def add_lora(model: nn.Module, settings: LoraSettings, peft_task_type: str) -> nn.Module:
    """`model` with LoRA adapters; its head (`modules_to_save`) trains in full and is saved with them."""
    from peft import LoraConfig

    from .. import models

    config = LoraConfig(task_type=peft_task_type, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=settings.target_modules,
                        modules_to_save=models.head_module_names(model))
    return add_peft(model, config, "LoRA", "lora.target_modules")


class Lora(Strategy):
    name = "lora"
    summary = "LoRA: low-rank adapters on the attention projections and the new head train"
    card_text = "LoRA: low-rank adapters on the attention projections and the new head trained"
    card_tag = "lora"
    default_lr = 5e-4
    shared_encoder = True
    sections = {"lora": LoraSettings}
    adapter = True
    card_note = ("The LoRA update is merged into the model weights; the adapter alone, with its head, is in "
                 "`adapter/` (a folder of its own when only the adapter is shared).")

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return [(cfg.lora.r >= 1, "lora.r must be at least 1"),
                (0 <= cfg.lora.dropout < 1, "lora.dropout must be in [0, 1)")]

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        return add_lora(model, cfg.lora, task.peft_task_type)

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        return [("LoRA r / alpha / dropout", f"{cfg.lora.r} / {cfg.lora.alpha} / {cfg.lora.dropout}"),
                ("LoRA target modules", ", ".join(cfg.lora.target_modules or ["peft default (attention)"]))]
