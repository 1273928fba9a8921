"""The loop's standard plug-ins: checkpoints and exact resume, early stopping, experiment tracking.

Strategies add their own (gradual unfreezing); users pass theirs to `nlptransfer.run(callbacks=[...])`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..outputs.tracking import scalars
from .checkpoint import Checkpoints
from .loop import Callback, Loop, samples_per_second, trainable_state

logger = logging.getLogger("nlptransfer")


class Checkpointing(Callback):
    """Saves checkpoints as `checkpoint.*` says and, given `resume_from`, restores one at the start:
    same weights, optimizer, scheduler, RNG and next batch, so the resumed run is bit for bit the same."""

    def __init__(self, checkpoints: Checkpoints, resume_from: Path | None = None, force: bool = False) -> None:
        self.checkpoints, self.resume_from, self.force = checkpoints, resume_from, force

    def on_fit_start(self, loop: Loop) -> None:
        if self.resume_from is None:
            return
        # with layer-wise rates (gradual unfreezing) the best epoch saved only what had trained by then;
        # the other weights of `trained` were still initial
        initial = trainable_state(loop.model, loop.trained) if loop.trained else {}
        loop.state = self.checkpoints.load(self.resume_from, loop.model, loop.optimizer, loop.scheduler, self.force)
        best = self.checkpoints.best_weights(loop.state)
        loop.best_weights = None if best is None else initial | best

    def on_step_end(self, loop: Loop, loss: torch.Tensor, lr: float) -> None:
        every = self.checkpoints.cfg.every_steps
        if every and loop.state.optimizer_steps % every == 0:
            self.checkpoints.save(loop.model, loop.optimizer, loop.scheduler, loop.state)

    def on_epoch_end(self, loop: Loop, metrics: dict, train_loss: float, improved: bool) -> None:
        if not self.checkpoints.enabled or not (self.checkpoints.cfg.every_epoch or improved):
            return
        if improved:  # the best epoch's weights live in this checkpoint, kept by rotation
            loop.state.best_step = loop.state.optimizer_steps
        self.checkpoints.save(loop.model, loop.optimizer, loop.scheduler, loop.state)


class EarlyStopping(Callback):
    """Stop after `patience` epochs without a better validation metric."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_fit_start(self, loop: Loop) -> None:
        self.on_epoch_end(loop)  # a resumed run may already have waited long enough

    def on_epoch_end(self, loop: Loop, metrics: dict | None = None, train_loss: float = 0.0,
                     improved: bool = False) -> None:
        if loop.state.epochs_without_gain >= self.patience and loop.state.epoch <= loop.cfg.epochs:
            logger.info("no validation gain for %d epochs: stopping early", loop.state.epochs_without_gain)
            loop.should_stop = True


class Tracking(Callback):
    """Per step (loss, learning rate, samples/s) and per epoch (validation metrics) to Accelerate's trackers."""

    def on_epoch_start(self, loop: Loop) -> None:
        self.since = (time.perf_counter(), loop.state.train_examples)

    def on_step_end(self, loop: Loop, loss: torch.Tensor, lr: float) -> None:
        loop.accelerator.log({"train/loss": loss.item(), "train/lr": lr,
                              "train/samples_per_second": samples_per_second(loop.state, self.since)},
                             step=loop.state.optimizer_steps)

    def on_epoch_end(self, loop: Loop, metrics: dict, train_loss: float, improved: bool) -> None:
        loop.accelerator.log(scalars("validation", metrics) | scalars("train", {"epoch_loss": train_loss,
                                                                                 "epoch": loop.state.epoch - 1}),
                             step=loop.state.optimizer_steps)
