"""The training loop, on Accelerate: the same code on a CPU, one GPU with mixed precision, or many.

`fit` reads top to bottom: prepare, then per epoch train, validate, keep the best weights and
stop early when validation stops improving. `predict` runs a model over a split and returns
its logits in the split's order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from .batches import model_inputs
from .checkpoint import Checkpoints, LoopState
from .config import TrainConfig
from .console import progress_bar
from .errors import TrainingError
from .tracking import scalars

logger = logging.getLogger(__name__)  # quiet on non-main processes (pipeline.setup_logging)

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight")
LOSS_CURVE_POINTS = 50
"""Points per epoch of the training-loss curve kept in the history (means of equal groups of batches)."""


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    """Per epoch: train loss, validation metrics, seconds."""
    best_epoch: int = 0
    optimizer_steps: int = 0
    train_seconds: float = 0.0
    train_examples: int = 0
    """Examples processed in training (all epochs)."""
    train_tokens: int = 0
    """Non-padding tokens processed in training."""
    nonfinite_steps: int = 0
    """Batches skipped because their loss or gradients were NaN/inf."""


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay.

    With `lr_scales` (parameter name -> factor of `lr`: layer-wise rates) it optimizes exactly those
    parameters, each group at its own rate, also those still frozen that gradual unfreezing will
    train later: AdamW skips a parameter while its gradient is None.
    """
    scales = lr_scales or {n: 1.0 for n, p in model.named_parameters() if p.requires_grad}
    named = [(n, p) for n, p in model.named_parameters() if n in scales]
    groups = [
        {"params": [p for n, p in named if scales[n] == scale and n.endswith(NO_DECAY) == no_decay],
         "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay}
        for scale in sorted(set(scales.values()), reverse=True) for no_decay in (False, True)
    ]
    # fused: one kernel for all tensors instead of a Python loop over them (5x faster step on CPU)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=True)


def trainable_state(model: nn.Module, names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights (or of `names`): all the best epoch needs to be restored."""
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if (p.requires_grad if names is None else n in names)}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])


def fit(
    model: nn.Module,
    train_batches: DataLoader,
    validate,
    cfg: TrainConfig,
    lr: float,
    accelerator: Accelerator,
    checkpoints: Checkpoints | None = None,
    resume_from: Path | None = None,
    resume_force: bool = False,
    loss_fn: nn.Module | None = None,
    lr_scales: dict[str, float] | None = None,
    epoch_start: Callable[[int], None] | None = None,
) -> FitResult:
    """Train `model` in place; afterwards it holds the weights of the best validation epoch.

    `validate(model) -> dict` returns validation metrics, among them `cfg.metric_for_best`.
    With `checkpoints`, the loop saves checkpoints as configured and, from `resume_from`, picks
    up exactly where that checkpoint left off: same weights, optimizer, RNG and next batch.
    `loss_fn(logits, labels)` replaces the model's own loss (class weights, focal loss).
    `lr_scales` sets per-parameter learning rates (see `build_optimizer`); `epoch_start(epoch)` runs
    before each epoch (gradual unfreezing sets which of those parameters train).
    """
    steps_per_epoch = math.ceil(len(train_batches) / cfg.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = build_optimizer(model, lr, cfg.weight_decay, lr_scales)
    trained = set(lr_scales) if lr_scales else None  # with gradual unfreezing, also the weights still frozen
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    sampler = train_batches.batch_sampler
    # Each pass over a DataLoader draws a seed from its generator, by default the global RNG that
    # dropout uses: a run resumed mid-epoch (one pass more) would then get other dropout masks.
    train_batches.generator = torch.Generator().manual_seed(0)
    model, optimizer, train_batches, scheduler = accelerator.prepare(model, optimizer, train_batches, scheduler)

    state, best_state = LoopState(), None
    if resume_from is not None:
        initial = trainable_state(model, trained) if epoch_start else {}
        state = checkpoints.load(resume_from, model, optimizer, scheduler, resume_force)
        best = checkpoints.best_weights(state)  # the weights that trained until the best epoch;
        best_state = None if best is None else initial | best  # the others were still initial
    progress = progress_bar(accelerator, total=total_steps, initial=state.optimizer_steps, desc="training",
                            unit="step")
    while not finished(state, cfg, total_steps):
        if epoch_start is not None:
            epoch_start(state.epoch)
        # Through the prepared loader: Accelerate sets its own epoch on the sampler when iterating;
        # on several processes its BatchSamplerShard hides the sampler, so it is set here too.
        train_batches.set_epoch(state.epoch)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state.epoch)
        sampler.skip = state.batches_done  # global batches, split across processes (split_batches)
        started = time.perf_counter()
        train_loss = train_epoch(model, train_batches, optimizer, scheduler, cfg, accelerator, progress, state,
                                 checkpoints, loss_fn)
        epoch_seconds = time.perf_counter() - started
        state.train_seconds += epoch_seconds
        metrics = validate(model)
        state.history.append({"epoch": state.epoch, "train_loss": train_loss, "train_seconds": epoch_seconds,
                              "validation": metrics, "train_loss_curve": loss_curve(state.epoch_losses)})
        accelerator.log(scalars("validation", metrics) | scalars("train", {"epoch_loss": train_loss,
                                                                            "epoch": state.epoch}),
                        step=state.optimizer_steps)
        logger.info("epoch %d: train loss %.4f, validation %s %.4f (%.0fs)", state.epoch, train_loss,
                    cfg.metric_for_best, metrics[cfg.metric_for_best], epoch_seconds)
        improved = state.best_metric is None or metrics[cfg.metric_for_best] > state.best_metric
        if improved:
            state.best_metric, state.best_epoch = metrics[cfg.metric_for_best], state.epoch
            state.epochs_without_gain, best_state = 0, trainable_state(model, trained)
        else:
            state.epochs_without_gain += 1
        state.epoch, state.batches_done, state.epoch_losses = state.epoch + 1, 0, []
        if checkpoints is not None and checkpoints.enabled and (checkpoints.cfg.every_epoch or improved):
            if improved:  # the best epoch's weights live in this checkpoint, kept by rotation
                state.best_step = state.optimizer_steps
            checkpoints.save(model, optimizer, scheduler, state)
    progress.close()
    if best_state is not None:
        load_trainable_state(model, best_state)
    return FitResult(history=state.history, best_epoch=state.best_epoch, optimizer_steps=state.optimizer_steps,
                     train_seconds=state.train_seconds, train_examples=state.train_examples,
                     train_tokens=state.train_tokens, nonfinite_steps=state.nonfinite_total)


def finished(state: LoopState, cfg: TrainConfig, total_steps: int) -> bool:
    """All epochs or steps done, or no validation gain for `patience` epochs."""
    if state.epoch > cfg.epochs or (state.optimizer_steps >= total_steps and state.batches_done == 0):
        return True
    if cfg.patience is not None and state.epochs_without_gain >= cfg.patience:
        logger.info("no validation gain for %d epochs: stopping early", state.epochs_without_gain)
        return True
    return False


def train_epoch(model, batches, optimizer, scheduler, cfg: TrainConfig, accelerator, progress, state: LoopState,
                checkpoints: Checkpoints | None, loss_fn: nn.Module | None = None) -> float:
    """Train to the end of the epoch (or of the steps); returns the epoch's mean training loss.

    A batch whose loss or gradients are not finite is skipped (no update) and counted; after
    `cfg.max_nonfinite_steps` of them in a row the run stops with a `TrainingError`.
    """
    model.train()
    total_steps = progress.total
    since = (time.perf_counter(), state.train_examples)  # for the epoch's throughput
    for batch in batches:
        with accelerator.accumulate(model):
            loss = batch_loss(model, batch, loss_fn)
            finite = bool(torch.isfinite(loss))
            if finite:
                accelerator.backward(loss)
            if accelerator.sync_gradients:
                finite = finite and gradients_finite(model, cfg, accelerator)
                if finite:
                    optimizer.step()
                scheduler.step()
            optimizer.zero_grad()
        count_batch(batch, loss, finite, state, cfg, accelerator)
        if accelerator.sync_gradients:
            state.optimizer_steps += 1
            report_step(progress, accelerator, state, loss, scheduler, since)
            every = checkpoints.cfg.every_steps if checkpoints is not None else None
            if every and state.optimizer_steps % every == 0:
                checkpoints.save(model, optimizer, scheduler, state)
            if state.optimizer_steps >= total_steps:
                break
    losses = torch.tensor(state.epoch_losses, dtype=torch.float32)
    return float(accelerator.gather(losses.mean().to(accelerator.device)).mean()) if len(losses) else math.nan


def batch_loss(model: nn.Module, batch: dict, loss_fn: nn.Module | None) -> torch.Tensor:
    """The model's own loss, or `loss_fn` on its logits."""
    if loss_fn is None:
        return model(**model_inputs(batch)).loss
    logits = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits
    return loss_fn(logits, batch["labels"])


def report_step(progress, accelerator: Accelerator, state: LoopState, loss: torch.Tensor, scheduler,
                since: tuple[float, int]) -> None:
    """Advance the bar and log the step to the trackers: loss, learning rate, samples/s since the epoch began.

    The loss is already on the host (the loop checked it was finite): no extra device sync.
    """
    started, examples = since
    values = {"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
              "train/samples_per_second": (state.train_examples - examples) / max(time.perf_counter() - started, 1e-9)}
    progress.update(1)
    progress.set_postfix({"loss": f"{values['train/loss']:.4f}", "lr": f"{values['train/lr']:.2e}",
                          "samples/s": f"{values['train/samples_per_second']:.1f}"}, refresh=False)
    accelerator.log(values, step=state.optimizer_steps)


def loss_curve(batch_losses: list[float], points: int = LOSS_CURVE_POINTS) -> list[float]:
    """The epoch's batch losses as at most `points` means of consecutive, equal-sized groups (for curves.png)."""
    if not batch_losses:
        return []
    groups = np.array_split(np.asarray(batch_losses, dtype=np.float64), min(points, len(batch_losses)))
    return [round(float(group.mean()), 5) for group in groups]


def gradients_finite(model: nn.Module, cfg: TrainConfig, accelerator: Accelerator) -> bool:
    """Clip the gradient norm (if configured) and tell whether it is finite."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if cfg.max_grad_norm:
        norm = accelerator.clip_grad_norm_(parameters, cfg.max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in parameters])) \
            if parameters else torch.tensor(0.0)
    return bool(torch.isfinite(norm))


def count_batch(batch, loss, finite: bool, state: LoopState, cfg: TrainConfig, accelerator: Accelerator) -> None:
    """Update the loop's counters after a batch; stop the run after too many non-finite steps in a row."""
    state.batches_done += 1
    # Each process holds an equal share of the global batch (split_batches); tokens are estimated.
    state.train_examples += len(batch["labels"]) * accelerator.num_processes
    if "attention_mask" in batch:
        state.train_tokens += int(batch["attention_mask"].sum()) * accelerator.num_processes
    if finite:
        state.epoch_losses.append(float(loss.detach()))
        state.nonfinite_in_row = 0
        return
    state.nonfinite_in_row += 1
    state.nonfinite_total += 1
    logger.warning("step skipped: non-finite loss or gradient (%d in a row)", state.nonfinite_in_row)
    if state.nonfinite_in_row >= cfg.max_nonfinite_steps:
        raise TrainingError(
            f"the loss or gradients were NaN/inf for {state.nonfinite_in_row} steps in a row; "
            "lower train.lr, set train.max_grad_norm, or use train.mixed_precision=no"
        )


@torch.inference_mode()  # no autograd bookkeeping at all: the logits only go to numpy
def predict(model: nn.Module, batches: DataLoader, accelerator: Accelerator, desc: str = "evaluating") -> np.ndarray:
    """Logits for every example of the loader's split, in the split's order."""
    model.eval()
    logits_parts, index_parts = [], []
    bar = progress_bar(accelerator, total=len(batches.dataset), desc=desc, unit="ex", leave=False)
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits
        logits, index = accelerator.gather_for_metrics((logits.float(), batch["example_index"]))
        logits_parts.append(logits.cpu())
        index_parts.append(index.cpu())
        bar.update(len(index))
    bar.close()
    return each_example_once(torch.cat(logits_parts).numpy(), torch.cat(index_parts).numpy(), len(batches.dataset))


def each_example_once(rows: np.ndarray, example_index: np.ndarray, size: int) -> np.ndarray:
    """Gathered rows in the split's order, one per example.

    On several processes the last batch is padded with repeats of the first examples; repeats that
    Accelerate's `gather_for_metrics` left in are dropped here, and a missing example is an error.
    """
    indices, first = np.unique(example_index, return_index=True)
    if len(indices) != size or (size and (indices[0] != 0 or indices[-1] != size - 1)):
        raise TrainingError(f"evaluation gathered {len(indices)} distinct examples of {size}; "
                            "please report this with the command that ran")
    return rows[first]
