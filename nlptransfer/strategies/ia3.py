"""`ia3`: peft (IA)^3 adapters (Liu et al., 2022): learned vectors rescale the attention keys and values and the
feed-forward activations; the new head trains and is saved with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import Strategy
from .lora import add_peft

if TYPE_CHECKING:
    from torch import nn

    from ..engine.loop import OptimizerSettings

VECTOR_NAMES = (".ia3_l.default",)
"""How peft names the (IA)^3 scaling vectors (of its default adapter)."""


@dataclass
class IA3Settings:
    target_modules: list[str] | None = None
    """Module names to rescale (IA3); default: peft's for the architecture (BERT: key, value, output.dense)."""
    feedforward_modules: list[str] | None = None
    """Those of ia3.target_modules scaled on their input (feed-forward); default: peft's (BERT: output.dense)."""


def add_ia3(model: nn.Module, settings: IA3Settings, peft_task_type: str) -> nn.Module:
    """`model` with (IA)^3 vectors; its head (`modules_to_save`) trains in full and is saved with them."""
    from peft import IA3Config

    from .. import models

    config = IA3Config(task_type=peft_task_type, target_modules=settings.target_modules,
                       feedforward_modules=settings.feedforward_modules,
                       modules_to_save=models.head_module_names(model))
    return add_peft(model, config, "IA3", "ia3.target_modules=[...] and ia3.feedforward_modules")


class IA3(Strategy):
    name = "ia3"
    summary = "IA3: vectors rescaling attention keys, values and feed-forward activations, and the new head train"
    card_text = ("(IA)^3: learned vectors rescaling the attention keys and values and the feed-forward activations, "
                 "and the new head, trained")
    card_tag = "ia3"
    # The (IA)^3 paper (T-Few) trained its vectors at 3e-3. They start at 1 and act multiplicatively, so an
    # (Adam-normalized) step of lr changes a feature's scale by about lr: LoRA's 5e-4 would barely move them in a
    # few epochs. 3e-3 keeps the paper's value, 6x LoRA's here; the new head trains at it too (frozen: 1e-2).
    # No weight decay on the vectors: it would pull them towards 0, not towards their start, 1.
    default_lr = 3e-3
    shared_encoder = True
    sections = {"ia3": IA3Settings}
    adapter = True
    card_note = ("The IA3 vectors are merged into the model weights; the adapter alone, with its head, is in "
                 "`adapter/` (a folder of its own when only the adapter is shared).")

    def checks(self, cfg) -> list[tuple[bool, str]]:
        targets, feedforward = cfg.ia3.target_modules, cfg.ia3.feedforward_modules
        return [
            (targets is None or len(targets) >= 1,
             "ia3.target_modules must name at least one module (or be null: peft's default for the architecture)"),
            (targets is None or feedforward is None or set(feedforward) <= set(targets),
             "ia3.feedforward_modules must be a subset of ia3.target_modules"),
        ]

    def prepare(self, model: nn.Module, cfg, task) -> nn.Module:
        return add_ia3(model, cfg.ia3, task.peft_task_type)

    def optimization(self, model: nn.Module, cfg, lr: float, accelerator) -> tuple[OptimizerSettings, list]:
        from ..engine.loop import NO_DECAY, OptimizerSettings

        return OptimizerSettings(lr, no_decay=NO_DECAY + VECTOR_NAMES), []

    def card_rows(self, cfg) -> list[tuple[str, object]]:
        default = "peft default for the architecture"
        targets, feedforward = cfg.ia3.target_modules, cfg.ia3.feedforward_modules
        return [("IA3 target modules", default if targets is None else ", ".join(targets)),
                ("IA3 feed-forward modules", default if feedforward is None else ", ".join(feedforward) or "none")]
