"""The training loop, on Accelerate: the same code on a CPU, one GPU with mixed precision, or many.

`fit` reads top to bottom: prepare, then per epoch train, validate, keep the best weights and
stop early when validation stops improving. `predict` runs a model over a split and returns
its logits in the split's order.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .batches import model_inputs
from .config import TrainConfig

logger = logging.getLogger(__name__)  # quiet on non-main processes (pipeline.setup_logging)

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight")


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


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights: all the best epoch needs to be restored."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


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
) -> FitResult:
    """Train `model` in place; afterwards it holds the weights of the best validation epoch.

    `validate(model) -> dict` returns validation metrics, among them `cfg.metric_for_best`.
    """
    steps_per_epoch = math.ceil(len(train_batches) / cfg.grad_accum_steps)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = build_optimizer(model, lr, cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    sampler = train_batches.batch_sampler
    model, optimizer, train_batches, scheduler = accelerator.prepare(model, optimizer, train_batches, scheduler)

    result, best_metric, best_state, epochs_without_gain = FitResult(), -math.inf, None, 0
    progress = tqdm(total=total_steps, desc="training", disable=not accelerator.is_local_main_process)
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        epoch_started = time.perf_counter()
        train_loss = train_epoch(model, train_batches, optimizer, scheduler, cfg, accelerator, progress, result)
        train_seconds = time.perf_counter() - epoch_started
        metrics = validate(model)
        result.history.append({"epoch": epoch, "train_loss": train_loss, "train_seconds": train_seconds,
                               "validation": metrics})
        logger.info("epoch %d: train loss %.4f, validation %s %.4f (%.0fs)", epoch, train_loss,
                    cfg.metric_for_best, metrics[cfg.metric_for_best], train_seconds)
        if metrics[cfg.metric_for_best] > best_metric:
            best_metric, best_state, result.best_epoch = metrics[cfg.metric_for_best], trainable_state(model), epoch
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        if result.optimizer_steps >= total_steps:
            break
        if cfg.patience is not None and epochs_without_gain >= cfg.patience:
            logger.info("no validation gain for %d epochs: stopping early", epochs_without_gain)
            break
    progress.close()
    result.train_seconds = time.perf_counter() - started
    if best_state is not None:
        load_trainable_state(model, best_state)
    return result


def train_epoch(model, batches, optimizer, scheduler, cfg: TrainConfig, accelerator, progress, result) -> float:
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    losses = []
    total_steps = progress.total
    for batch in batches:
        with accelerator.accumulate(model):
            loss = model(**model_inputs(batch)).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        losses.append(loss.detach())
        result.train_examples += len(batch["labels"]) * accelerator.num_processes
        if "attention_mask" in batch:
            result.train_tokens += int(batch["attention_mask"].sum()) * accelerator.num_processes
        if accelerator.sync_gradients:
            result.optimizer_steps += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if result.optimizer_steps >= total_steps:
                break
    return float(accelerator.gather(torch.stack(losses).mean()).mean()) if losses else math.nan


@torch.no_grad()
def predict(model: nn.Module, batches: DataLoader, accelerator: Accelerator, desc: str = "evaluating") -> np.ndarray:
    """Logits for every example of the loader's split, in the split's order."""
    model.eval()
    logits_parts, index_parts = [], []
    for batch in tqdm(batches, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits
        logits, index = accelerator.gather_for_metrics((logits.float(), batch["example_index"]))
        logits_parts.append(logits.cpu())
        index_parts.append(index.cpu())
    logits = torch.cat(logits_parts).numpy()
    order = np.argsort(torch.cat(index_parts).numpy(), kind="stable")
    return logits[order]
