"""The loop's plug-in protocol: `Callback` (the hooks a plug-in overrides) and `Loop` (what a hook sees).

Kept apart from `loop.py` and free of torch at import time: strategies declare their callbacks
(gradual unfreezing) and the Python API exports `nlptransfer.Callback` without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import nn

    from ..options import TrainConfig
    from .state import LoopState


class Callback:
    """A plug-in of the loop (checkpoints, early stopping, unfreezing, tracking, yours): override the hooks you need.

    Each hook gets the `Loop` (model, optimizer, scheduler, state...); set `loop.should_stop = True`
    to end training after the current epoch.
    """

    def on_fit_start(self, loop: Loop) -> None:
        """After the model, optimizer and data are prepared, before the first epoch (a resume loads here)."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before each epoch's first batch (`loop.state.epoch` is the epoch about to run)."""

    def on_step_end(self, loop: Loop, loss: torch.Tensor, lr: float) -> None:
        """After each optimizer step (`loop.state.optimizer_steps` counts it)."""

    def on_epoch_end(self, loop: Loop, metrics: dict, train_loss: float, improved: bool) -> None:
        """After validation; `loop.state.epoch` is already the next epoch, `improved` says if this one is the best.

        Without a validation split `metrics` is empty and `improved` is always true: the last epoch is kept.
        """

    def on_fit_end(self, loop: Loop) -> None:
        """After the last epoch, before the best weights are put back."""


@dataclass
class Loop:
    """What callbacks see: the prepared objects and the state; `should_stop = True` ends training after the epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Accelerator
    cfg: TrainConfig
    state: LoopState
    total_steps: int
    best_weights: dict[str, torch.Tensor] | None = None
    trained: set[str] | None = None
    """With layer-wise rates, the names of every parameter the optimizer holds (frozen or not)."""
    should_stop: bool = False
