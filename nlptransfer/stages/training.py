"""One stage's training on the toolkit's loop, and EWC's memory after it.

The examples of each head (the stage's own, and replayed ones of earlier stages) are tokenized once and drawn in
single-head batches by the multi-task sampler (`tasks.multitask.TaskBatches`, proportional to each head's examples,
seeded per stage); `engine.loop.fit` trains the `StageModule` (whose forward returns the loss) for the stage's fixed
budget and keeps the last epoch.
"""

from __future__ import annotations

import random

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from ..data.classification import TextSplit
from ..engine import batches, precision
from ..engine.loop import OptimizerSettings, TrainData, fit
from ..options import TrainConfig
from ..tasks.multitask import TaskBatches, TaskCollator
from .learner import Examples, Learner
from .methods import StageModule, fisher_diagonal


def encoded_rows(examples: Examples, learner: Learner, head: str, task: int) -> list[dict]:
    """The examples tokenized for `head` (labels by its label ids), each row marked with the head's index."""
    label2id = learner.heads[head].config.label2id
    split = TextSplit(list(examples.texts), [label2id[label] for label in examples.labels])
    return [row | {"task": task} for row in batches.encode_split(split, learner.tokenizer, learner.max_length).features]


def fit_stage(module: StageModule, groups: dict[str, Examples], learner: Learner, train: TrainConfig, lr: float,
              seed: int) -> None:
    """Train `module` on each head's examples (`groups`) in single-head batches."""
    rows, sizes = [], []
    for task, head in enumerate(module.names):
        encoded = encoded_rows(groups[head], learner, head, task) if head in groups else []
        rows += encoded
        sizes.append(len(encoded))
    sampler = TaskBatches(sizes, train.batch_size, seed, "proportional", 1.0)
    collate = TaskCollator([DataCollatorWithPadding(learner.tokenizer)] * len(sizes), sampler.offsets)
    loader = DataLoader(rows, batch_sampler=sampler, collate_fn=collate)
    set_seed(seed)
    chosen = precision.choose(train.mixed_precision).value  # auto: the device's fast precision
    precision.check_process(chosen)
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True), mixed_precision=chosen)
    fit(module, TrainData(loader, None), train, OptimizerSettings(lr), accelerator)


def ewc_memory(module: StageModule, examples: Examples, learner: Learner, head: str, samples: int, seed: int,
               memory: dict) -> dict:
    """EWC after a stage: the Fisher diagonal of `samples` of its training examples (seeded) added to the finished
    stages' (online EWC), and the anchor: the weights now."""
    chosen = sorted(random.Random(seed).sample(range(len(examples)), min(samples, len(examples))))
    rows = encoded_rows(examples.take(chosen), learner, head, module.names.index(head))
    collate = TaskCollator([DataCollatorWithPadding(learner.tokenizer)] * len(module.names), [0])
    device = next(module.parameters()).device
    single = ({key: value.to(device) for key, value in collate([row]).items() if key != "example_index"}
              for row in rows)
    fisher = fisher_diagonal(module, single)
    if memory:
        fisher = {name: value + memory["fisher"][name] if memory["fisher"][name].shape == value.shape
                  else grown_sum(value, memory["fisher"][name]) for name, value in fisher.items()}
    anchor = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
    return {"fisher": fisher, "anchor": anchor}


def grown_sum(value: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """A grown head's Fisher: the earlier stages' values added on the rows they had."""
    total = value.clone()
    total[: earlier.shape[0]] += earlier
    return total
