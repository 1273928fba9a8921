"""The training loop, on Accelerate: the same code on a CPU, one GPU with mixed precision, or many.

`fit` reads top to bottom: prepare, then per epoch train, validate, keep the best weights and
stop early when validation stops improving. `predict` runs a model over a split and returns
its logits in the split's order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from ..errors import TrainingError
from ..options import TrainConfig
from ..outputs.console import progress_bar
from .batches import model_inputs
from .compiling import compiled
from .hooks import Callback, Loop
from .state import FitResult, LoopState

__all__ = ["Callback", "FitResult", "Loop", "LoopState", "OptimizerSettings", "TrainData", "fit", "predict"]

logger = logging.getLogger(__name__)  # quiet on non-main processes (outputs/console.setup_logging)

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight")
LOSS_CURVE_POINTS = 50
"""Points per epoch of the training-loss curve kept in the history (means of equal groups of batches)."""


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, lr_scales: dict[str, float] | None = None,
                    no_decay: tuple[str, ...] = NO_DECAY) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; those whose name ends in `no_decay` (biases, LayerNorm
    weights) get no weight decay.

    With `lr_scales` (parameter name -> factor of `lr`: layer-wise rates) it optimizes exactly those
    parameters, each group at its own rate, also those still frozen that gradual unfreezing will
    train later: AdamW skips a parameter while its gradient is None.
    """
    scales = lr_scales or {n: 1.0 for n, p in model.named_parameters() if p.requires_grad}
    named = [(n, p) for n, p in model.named_parameters() if n in scales]
    groups = [
        {"params": [p for n, p in named if scales[n] == scale and n.endswith(no_decay) == exempt],
         "lr": lr * scale, "weight_decay": 0.0 if exempt else weight_decay}
        for scale in sorted(set(scales.values()), reverse=True) for exempt in (False, True)
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


@dataclass
class OptimizerSettings:
    """What the optimizer needs beyond the `TrainConfig`: the peak rate and, optionally, per-parameter factors."""

    lr: float
    """Peak learning rate (after warmup)."""
    lr_scales: dict[str, float] | None = None
    """Parameter name -> factor of `lr` (layer-wise rates); these parameters, and no others, are optimized,
    also those still frozen that a callback unfreezes later (see `build_optimizer`)."""
    no_decay: tuple[str, ...] = NO_DECAY
    """Parameter name endings exempt from weight decay (biases, norms; a strategy may add its own)."""


@dataclass
class TrainData:
    """The training batches, how to validate, and the loss when it is not the model's own."""

    batches: DataLoader
    validate: Callable[[nn.Module], dict] | None
    """`validate(model) -> dict` of validation metrics, among them `TrainConfig.metric_for_best`; None when there
    is no validation split: a fixed budget of epochs/steps, the last epoch kept."""
    loss_fn: nn.Module | None = None
    """`loss_fn(logits, labels)` replaces the model's own loss (class weights, focal loss)."""


def fit(model: nn.Module, data: TrainData, cfg: TrainConfig, optimizer_settings: OptimizerSettings,
        accelerator: Accelerator, callbacks: Sequence[Callback] = ()) -> LoopState:
    """Train `model` in place; afterwards it holds the weights of the best validation epoch (without
    validation, `data.validate` None: of the last epoch).

    Per epoch: callbacks' `on_epoch_start`, train steps (`on_step_end` after each optimizer step),
    validate, keep the best weights, `on_epoch_end`; training stops after `cfg.epochs`, `cfg.max_steps`,
    or when a callback sets `loop.should_stop` (early stopping, a time budget). Checkpointing and
    resuming are a callback too (`callbacks.Checkpointing`). `cfg.compile`: through `torch.compile` meanwhile.
    """
    with compiled(model, cfg.compile):
        return train_epochs(model, data, cfg, optimizer_settings, accelerator, callbacks)


def train_epochs(model: nn.Module, data: TrainData, cfg: TrainConfig, optimizer_settings: OptimizerSettings,
                 accelerator: Accelerator, callbacks: Sequence[Callback]) -> LoopState:
    batches = data.batches
    steps_per_epoch = math.ceil(len(batches) / cfg.grad_accum_steps)
    total_steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
    optimizer = build_optimizer(model, optimizer_settings.lr, cfg.weight_decay, optimizer_settings.lr_scales,
                                optimizer_settings.no_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    sampler = batches.batch_sampler
    # Each pass over a DataLoader draws a seed from its generator, by default the global RNG that
    # dropout uses: a run resumed mid-epoch (one pass more) would then get other dropout masks.
    batches.generator = torch.Generator().manual_seed(0)
    model, optimizer, batches, scheduler = accelerator.prepare(model, optimizer, batches, scheduler)
    loop = Loop(model, optimizer, scheduler, accelerator, cfg, LoopState(), total_steps,
                trained=set(optimizer_settings.lr_scales) if optimizer_settings.lr_scales else None)
    notify(callbacks, "on_fit_start", loop)  # a resuming checkpoint callback restores everything here
    state = loop.state
    progress = progress_bar(accelerator, total=total_steps, initial=state.optimizer_steps, desc="training",
                            unit="step")
    while not finished(loop):
        notify(callbacks, "on_epoch_start", loop)
        # Through the prepared loader: Accelerate sets its own epoch on the sampler when iterating;
        # on several processes its BatchSamplerShard hides the sampler, so it is set here too.
        batches.set_epoch(state.epoch)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state.epoch)
        sampler.skip = state.batches_done  # global batches, split across processes (split_batches)
        started = time.perf_counter()
        train_loss = train_epoch(loop, batches, progress, callbacks, data.loss_fn)
        epoch_seconds = time.perf_counter() - started
        state.train_seconds += epoch_seconds
        metrics = data.validate(model) if data.validate is not None else {}
        state.history.append({"epoch": state.epoch, "train_loss": train_loss, "train_seconds": epoch_seconds,
                              "validation": metrics, "train_loss_curve": loss_curve(state.epoch_losses)})
        if data.validate is None:
            logger.info("epoch %d: train loss %.4f (%.0fs)", state.epoch, train_loss, epoch_seconds)
        else:
            logger.info("epoch %d: train loss %.4f, validation %s %.4f (%.0fs)", state.epoch, train_loss,
                        cfg.metric_for_best, metrics[cfg.metric_for_best], epoch_seconds)
        improved = keep_best(loop, metrics, validated=data.validate is not None)
        state.epoch, state.batches_done, state.epoch_losses = state.epoch + 1, 0, []
        notify(callbacks, "on_epoch_end", loop, metrics=metrics, train_loss=train_loss, improved=improved)
    progress.close()
    notify(callbacks, "on_fit_end", loop)
    if loop.best_weights is not None and data.validate is not None:
        load_trainable_state(model, loop.best_weights)
    return state


def keep_best(loop: Loop, metrics: dict, validated: bool) -> bool:
    """Record the epoch just trained if it is the best so far (and copy its weights); returns whether it is.

    Without validation every epoch is the newest one kept: the model is the last epoch's, nothing is copied.
    """
    state, metric = loop.state, loop.cfg.metric_for_best
    if not validated:
        state.best_epoch, state.epochs_without_gain = state.epoch, 0
        return True
    improved = state.best_metric is None or metrics[metric] > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = metrics[metric], state.epoch
        state.epochs_without_gain, loop.best_weights = 0, trainable_state(loop.model, loop.trained)
    else:
        state.epochs_without_gain += 1
    return improved


def notify(callbacks: Sequence[Callback], hook: str, loop: Loop, **values) -> None:
    for callback in callbacks:
        getattr(callback, hook)(loop, **values)


def finished(loop: Loop) -> bool:
    """All epochs or steps done, or a callback asked to stop."""
    state = loop.state
    return (loop.should_stop or state.epoch > loop.cfg.epochs
            or (state.optimizer_steps >= loop.total_steps and state.batches_done == 0))


def train_epoch(loop: Loop, batches: DataLoader, progress, callbacks: Sequence[Callback],
                loss_fn: nn.Module | None = None) -> float:
    """Train to the end of the epoch (or of the steps); returns the epoch's mean training loss.

    A batch whose loss or gradients are not finite is skipped (no update) and counted; after
    `cfg.max_nonfinite_steps` of them in a row the run stops with a `TrainingError`.
    """
    model, optimizer, scheduler, accelerator, cfg, state = (loop.model, loop.optimizer, loop.scheduler,
                                                           loop.accelerator, loop.cfg, loop.state)
    model.train()
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
            report_step(progress, state, loss, scheduler, since)
            notify(callbacks, "on_step_end", loop, loss=loss, lr=scheduler.get_last_lr()[0])
            if state.optimizer_steps >= loop.total_steps:
                break
    losses = torch.tensor(state.epoch_losses, dtype=torch.float32)
    return float(accelerator.gather(losses.mean().to(accelerator.device)).mean()) if len(losses) else math.nan


def batch_loss(model: nn.Module, batch: dict, loss_fn: nn.Module | None) -> torch.Tensor:
    """The model's own loss, or `loss_fn` on its logits."""
    if loss_fn is None:
        return model(**model_inputs(batch)).loss
    logits = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits
    return loss_fn(logits, batch["labels"])


def report_step(progress, state: LoopState, loss: torch.Tensor, scheduler, since: tuple[float, int]) -> None:
    """Advance the bar: loss, learning rate, samples/s since the epoch began.

    The loss is already on the host (the loop checked it was finite): no extra device sync.
    """
    started, examples = since
    progress.update(1)
    progress.set_postfix({"loss": f"{loss.item():.4f}", "lr": f"{scheduler.get_last_lr()[0]:.2e}",
                          "samples/s": f"{samples_per_second(state, since):.1f}"}, refresh=False)


def samples_per_second(state: LoopState, since: tuple[float, int]) -> float:
    started, examples = since
    return (state.train_examples - examples) / max(time.perf_counter() - started, 1e-9)


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
