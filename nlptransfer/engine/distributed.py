"""Several processes, one run: what the loop needs beyond Accelerate's defaults.

`pipeline.setup` creates the `Accelerator` with `split_batches=True`: the training sampler yields
global batches of `train.batch_size` and each process takes an equal share of every batch, so a
run sees the same batches in the same order on one process or many (and resumes on another
number of processes). Evaluation gathers every example exactly once (`train.predict`).
Launched by `torchrun` on machines without a GPU, the processes join a gloo process group.
"""

from __future__ import annotations

import logging
import os

import torch

from ..errors import ConfigError
from ..options import TrainConfig

logger = logging.getLogger(__name__)


def launched_without_accelerator() -> bool:
    """Several processes (torchrun, accelerate launch) on machines without a GPU.

    Accelerate joins such processes into a (gloo) process group only when asked for the CPU;
    otherwise each would run the whole job alone and all of them would write the same run folder.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    return not (accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def check_batch_sizes(train: TrainConfig, processes: int) -> None:
    """Each process takes an equal share of every batch, so both batch sizes must divide evenly."""
    for name in ("batch_size", "eval_batch_size"):
        size = getattr(train, name)
        if size % processes:
            raise ConfigError(f"train.{name}={size} is split across {processes} processes: make it a multiple of "
                              f"{processes}, e.g. train.{name}={(size // processes + 1) * processes}")


def on_every_process(flag: bool) -> bool:
    """True when `flag` is true on every process, the same answer everywhere.

    For choices that decide whether a collective operation runs: a feature cache hit on one
    machine and a miss on another would leave the first waiting for the second forever.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    from accelerate import PartialState

    value = torch.tensor([int(flag)], device=PartialState().device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return bool(value.item())


def is_local_main() -> bool:
    """The first process of its machine (the one that writes machine-local files such as caches)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def log_processes(processes: int, backend: str | None, train: TrainConfig) -> None:
    """Say in the log how the processes share each batch (nothing on a single process)."""
    if processes > 1:
        logger.info("%d processes (%s): each takes %d of every %d training examples", processes, backend,
                    train.batch_size // processes, train.batch_size)
