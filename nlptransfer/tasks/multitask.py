"""`multitask`: one shared encoder, one head per sub-task, single-task batches drawn by a sampler.

Each sub-task (`multitask.tasks`) is a plain task (classification, multilabel, token-classification)
with its own data section: its own Task object reads, splits, checks and encodes it. The model
is one transformers model per sub-task (`BertForSequenceClassification`, `BertForTokenClassification`,
...) whose encoder module is the same object: exporting a task is saving its model, and it
predicts exactly as the multi-task model does. A batch holds one task (its `task` index); its
loss is that task's model's loss times the task's weight.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..options import DataConfig
from .base import Task, TestOutcome

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger("nlptransfer")

SAMPLERS = ("proportional", "temperature", "round_robin")
SUB_TASKS = ("classification", "multilabel", "token-classification")
NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]+")
"""A task's name: its metrics' prefix and its model's folder name."""


@dataclass
class SubTaskConfig:
    """One task of a multi-task run: its name, kind, data and loss weight."""

    name: str = ""
    """The task's name: its metrics' prefix and its exported model's folder (model/<name>)."""
    task: str = "classification"
    """`classification`, `multilabel` or `token-classification`."""
    data: DataConfig = field(default_factory=DataConfig)
    """This task's own data section (any source the toolkit reads), split and checked by its own task."""
    weight: float = 1.0
    """Factor of this task's loss."""
    model: str | None = None
    """Leave unset: every task shares the run's `model=` (a different checkpoint is refused)."""


@dataclass
class MultitaskConfig:
    """task=multitask: the sub-tasks and how batches are drawn from them."""

    tasks: list[SubTaskConfig] = field(default_factory=list)
    """The sub-tasks (a `tasks:` list under `multitask:` in --config, or a list of dicts in Python)."""
    sampler: str = "proportional"
    """Which task each batch comes from: `proportional` (to examples), `temperature` (n**(1/T)) or `round_robin`."""
    temperature: float = 2.0
    """T of sampler=temperature (> 0): 1 is proportional, larger evens the tasks out."""
    compare_alone: bool = False
    """Then train each task alone with the same options (strategy, epochs, lr, seed, its data) in alone/<task>/ and
    report its test metric beside the multi-task one (log, metrics.json `alone`, the card)"""


@dataclass
class MultitaskData:
    """Each sub-task's data, by name, as its own task read and split it."""

    tasks: dict[str, Any]
    configs: dict[str, Any]
    """Each sub-task's run config (the run's options with its task and data section)."""
    alone: dict = field(default_factory=dict)
    """Each task trained alone (multitask.compare_alone): metrics.json's `alone`."""

    @property
    def label_names(self) -> list[str]:
        return [f"{name}:{label}" for name, data in self.tasks.items() for label in data.label_names]

    @property
    def train(self) -> list:
        return [example for data in self.tasks.values() for example in range(len(data.train))]

    @property
    def validation(self) -> list:
        return [example for data in self.tasks.values() for example in range(len(data.validation))]


def sub_task(cfg, sub: SubTaskConfig):
    """(the sub-task's Task object, its run config)."""
    from . import get

    train = dataclasses.replace(cfg.train, metric_for_best=get(sub.task).metrics[0])
    return get(sub.task), dataclasses.replace(cfg, task=sub.task, data=sub.data, train=train)


def has_data(data: DataConfig) -> bool:
    return bool(data.train_file or getattr(data, "name", None) or getattr(data, "dataset", None))


def task_weights(sizes: list[int], sampler: str, temperature: float) -> list[float]:
    """Each task's share of the batches: proportional to its examples, to examples**(1/T), or equal."""
    if sampler == "round_robin":
        return [1 / len(sizes)] * len(sizes)
    power = 1.0 if sampler == "proportional" else 1 / temperature
    scaled = [size ** power for size in sizes]
    return [s / sum(scaled) for s in scaled]


class TaskBatches:
    """Single-task batches of a concatenated dataset, the task of each drawn by the sampler; seeded per epoch.

    An epoch has as many batches as the tasks' batches together; a task drawn more often than it has
    batches starts over with a new shuffle. `skip` leaves out a resumed run's seen batches (as `LengthGroupedBatches`).
    """

    def __init__(self, sizes: list[int], batch_size: int, seed: int, sampler: str, temperature: float):
        self.sizes, self.batch_size, self.seed = sizes, batch_size, seed
        self.sampler, self.temperature = sampler, temperature
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(size / self.batch_size) for size in self.sizes)

    def task_order(self, rng) -> list[int]:
        if self.sampler == "round_robin":
            return [step % len(self.sizes) for step in range(len(self))]
        weights = task_weights(self.sizes, self.sampler, self.temperature)
        return rng.choices(range(len(self.sizes)), weights=weights, k=len(self))

    def __iter__(self):
        import random

        rng = random.Random(self.seed + self.epoch)
        pending: dict[int, list[list[int]]] = {k: [] for k in range(len(self.sizes))}
        batches = []
        for k in self.task_order(rng):
            if not pending[k]:
                order = list(range(self.sizes[k]))
                rng.shuffle(order)
                pending[k] = [[self.offsets[k] + i for i in order[s:s + self.batch_size]]
                              for s in range(0, len(order), self.batch_size)]
            batches.append(pending[k].pop(0))
        skip, self.skip = self.skip, 0
        return iter(batches[skip:])


class TaskCollator:
    """Pads a single-task batch with its task's own collator and adds its `task` index."""

    def __init__(self, collators: list, offsets: list[int]):
        self.collators, self.offsets = collators, offsets

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        task = rows[0]["task"]
        batch = self.collators[task]([{k: v for k, v in row.items() if k != "task"} for row in rows])
        batch["task"] = torch.tensor(task)
        return batch


def shared_model(models: dict):
    """One module holding each task's transformers model, their encoder one object (the first model's)."""
    from torch import nn

    class MultitaskModel(nn.Module):
        """`forward(task=k, **inputs)`: task k's model on the batch; its loss times the task's weight.

        `base_model` (the shared encoder), `config` and `get_input_embeddings` answer as a single transformers
        model's do, so the strategies' parameter tools (freeze, bias-only, layers, unfreezing) and peft's
        adapters apply to it unchanged; every module that is not the encoder is a task's head.
        """

        def __init__(self, task_models: dict, weights: list[float]):
            super().__init__()
            self.task_models = nn.ModuleDict(task_models)
            self.names, self.weights = list(task_models), weights
            first = next(iter(task_models.values()))
            self.config = first.config
            prefix = first.base_model_prefix
            for model in task_models.values():
                setattr(model, prefix, getattr(first, prefix))

        @property
        def base_model(self) -> nn.Module:
            """The shared encoder (a property: its weights stay registered once, under the task models)."""
            return next(iter(self.task_models.values())).base_model

        def get_input_embeddings(self) -> nn.Module:
            return self.base_model.get_input_embeddings()

        def head_module_names(self) -> list[str]:
            """Each task model's head modules (`classifier`, ...): what trains in full beside the encoder."""
            from .. import models

            return list(dict.fromkeys(name for model in self.task_models.values()
                                      for name in models.head_module_names(model)))

        def forward(self, task, **inputs):
            index = int(task)
            output = self.task_models[self.names[index]](**inputs)
            if output.loss is not None:
                output.loss = output.loss * self.weights[index]
            return output

    return MultitaskModel(models["models"], models["weights"])


class Multitask(Task):
    name = "multitask"
    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = None  # peft's custom-module mode: its adapters on the shared encoder, each task's head saved
    pipeline_tag = "text-classification"
    metrics = ("mean",)
    headline = "mean"
    features = None  # no feature cache (it holds one model's features): strategy=frozen trains the heads in the loop
    architecture_suffix = "ForMultitask"
    card_metrics = [("mean", "mean", "Mean of the tasks' headline metrics")]
    several_tasks = True

    def sub_tasks(self, cfg) -> list[tuple[str, Task, Any]]:
        return [(sub.name, *sub_task(cfg, sub)) for sub in cfg.multitask.tasks if sub.task in SUB_TASKS]

    def best_metrics(self, cfg) -> tuple[str, ...]:
        """`train.metric_for_best`: `mean` of the tasks' headline metrics, or one task's by its name."""
        return ("mean", *(sub.name for sub in cfg.multitask.tasks))

    def checks(self, cfg) -> list[tuple[bool, str]]:
        subs = cfg.multitask.tasks
        names = [sub.name for sub in subs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        no_data = [sub.name for sub in subs if not has_data(sub.data)]
        other_models = [sub.name for sub in subs if sub.model not in (None, cfg.model)]
        return [
            (bool(subs), "task=multitask needs a non-empty multitask.tasks list (each: name, task, data, weight)"),
            (all(names), "every multitask.tasks entry needs a name"),
            (all(NAME.fullmatch(name) for name in names if name),
             "a multitask task's name is a folder name (model/<name>): letters, digits, '_', '-' and '.' only, e.g. "
             "sentiment"),
            ("mean" not in names, "a multitask task may not be named mean (the tasks' mean metric is): rename it"),
            (not repeated, f"multitask.tasks share the name {', '.join(repeated)}: give each task its own name"),
            (all(sub.task in SUB_TASKS for sub in subs),
             f"a multitask.tasks entry's task must be one of {', '.join(SUB_TASKS)}"),
            (not no_data, f"multitask task {', '.join(no_data)} has no data: give its data.train_file (or "
                          "data.name)"),
            (not other_models, f"multitask task {', '.join(other_models)} names another checkpoint than "
                               f"model={cfg.model}: the tasks share one encoder; leave the task's model unset"),
            (cfg.multitask.sampler in SAMPLERS, f"multitask.sampler must be one of {', '.join(SAMPLERS)}"),
            (cfg.multitask.temperature > 0, "multitask.temperature must be above 0 (1 is proportional)"),
            (all(sub.weight > 0 for sub in subs), "a multitask task's weight must be above 0"),
            (not cfg.push.repo_id, "task=multitask does not push to the Hub yet (its card is written to the run "
                                   "folder): unset push.repo_id"),
        ]

    def load_data(self, cfg, source: tuple | None = None) -> MultitaskData:
        tasks, configs = {}, {}
        for sub in cfg.multitask.tasks:
            task, sub_cfg = sub_task(cfg, sub)
            tasks[sub.name], configs[sub.name] = task.load_data(sub_cfg), sub_cfg
        return MultitaskData(tasks, configs)

    def describe_data(self, data: MultitaskData) -> str:
        return "; ".join(f"{name}: {self.task_of(data, name).describe_data(d)}" for name, d in data.tasks.items())

    def task_of(self, data: MultitaskData, name: str) -> Task:
        from . import get

        return get(data.configs[name].task)

    def encode(self, data: MultitaskData, tokenizer, cfg) -> dict:
        """Each task's encoded splits by task name, under each split's key (what the strategies pass on)."""
        per_task = {name: self.task_of(data, name).encode(d, tokenizer, data.configs[name])
                    for name, d in data.tasks.items()}
        return {"train": per_task, "validation": per_task, "test": per_task, "tokenizer": tokenizer}

    def build_model(self, cfg, data: MultitaskData, load) -> Any:
        """The shared-encoder model: `load(task, label_names)` loads each task's transformers model."""
        task_models = {name: load(self.task_of(data, name), d.label_names) for name, d in data.tasks.items()}
        return shared_model({"models": task_models, "weights": [sub.weight for sub in cfg.multitask.tasks]})

    def train_loader(self, encoded, tokenizer, cfg):
        from torch.utils.data import DataLoader

        names, encoded = [sub.name for sub in cfg.multitask.tasks], dict(encoded)
        splits = [encoded[name]["train"] for name in names]
        rows = [row | {"task": k} for k, split in enumerate(splits) for row in split.features]
        sampler = TaskBatches([len(s) for s in splits], cfg.train.batch_size, cfg.seed, cfg.multitask.sampler,
                              cfg.multitask.temperature)
        collators = [self.sub_loader(encoded, name, tokenizer, cfg).collate_fn for name in names]
        return DataLoader(rows, batch_sampler=sampler, collate_fn=TaskCollator(collators, sampler.offsets))

    def sub_loader(self, encoded, name, tokenizer, cfg, split="train"):
        sub = next(s for s in cfg.multitask.tasks if s.name == name)
        task, sub_cfg = sub_task(cfg, sub)
        loader = task.train_loader if split == "train" else task.eval_loader
        return loader(encoded[name][split], tokenizer, sub_cfg)

    def eval_loader(self, encoded, tokenizer, cfg):
        """The first task's validation batches (the validator reads each task's own)."""
        sub = cfg.multitask.tasks[0]
        task, sub_cfg = sub_task(cfg, sub)
        return task.eval_loader(encoded[sub.name]["validation"], tokenizer, sub_cfg)

    def validator(self, data: MultitaskData, encoded: dict, cfg, accelerator):
        """Each task's validation metrics (`name.metric`), its headline metric (`name`) and their `mean`."""
        encoded, tokenizer = encoded["validation"], encoded["tokenizer"]
        def validate_on(_loader):
            parts = {}
            for name, d in data.tasks.items():
                task, sub_cfg = self.task_of(data, name), data.configs[name]
                loader = accelerator.prepare(task.eval_loader(encoded[name]["validation"], tokenizer, sub_cfg))
                parts[name] = (task, task.validator(d, encoded[name], sub_cfg, accelerator)(loader))
            if any(validate is None for _, validate in parts.values()):
                return None

            def validate(model) -> dict:
                model = accelerator.unwrap_model(model)
                metrics = {}
                for name, (task, validate_task) in parts.items():
                    scores = validate_task(model.task_models[name])
                    metrics |= {f"{name}.{key}": value for key, value in scores.items()}
                    metrics[name] = scores[task.metrics[0]]
                metrics["mean"] = sum(metrics[name] for name in parts) / len(parts)
                return metrics
            return validate

        return validate_on

    def test(self, model, data: MultitaskData, encoded: dict, tokenizer, cfg, accelerator) -> TestOutcome:
        encoded = encoded["test"]
        outcomes = {name: self.task_of(data, name).test(model.task_models[name], d, encoded[name], tokenizer,
                                                        data.configs[name], accelerator)
                    for name, d in data.tasks.items()}
        metrics = {name: outcome.metrics for name, outcome in outcomes.items()}
        headlines = [outcomes[name].metrics[self.task_of(data, name).headline] for name in outcomes]
        metrics["mean"] = sum(headlines) / len(headlines)
        return TestOutcome(metrics, outcomes)

    def report(self, metrics: dict, data: MultitaskData) -> str:
        return "\n".join(f"[{name}]\n{self.task_of(data, name).report(metrics[name], d)}"
                         for name, d in data.tasks.items()) + f"\nmean: {metrics['mean']:.4f}"

    def baselines(self, data: MultitaskData) -> tuple[dict, str]:
        found = {name: self.task_of(data, name).baselines(d) for name, d in data.tasks.items()}
        return ({name: scores for name, (scores, _) in found.items()},
                "; ".join(f"{name}: {line}" for name, (_, line) in found.items()))

    def prediction_rows(self, data: MultitaskData, outcome: TestOutcome) -> list[dict]:
        return [{"task": name} | row for name, d in data.tasks.items()
                for row in self.task_of(data, name).prediction_rows(d, outcome.predictions[name])]

    def data_summary(self, data: MultitaskData, encoded: dict, cfg) -> dict:
        return {"tasks": {name: self.task_of(data, name).data_summary(d, encoded["train"][name], data.configs[name])
                          for name, d in data.tasks.items()}} | ({"alone": data.alone} if data.alone else {})

    def run_companions(self, cfg, data: MultitaskData, metrics: dict, output_dir: Path, train, lr: float) -> None:
        """multitask.compare_alone: each task trained alone at the same budget (`alone.py`), kept for metrics.json."""
        if cfg.multitask.compare_alone:
            from .alone import train_each_alone

            headlines = {name: self.task_of(data, name).headline for name in data.tasks}
            data.alone = train_each_alone(cfg, data, metrics, output_dir, train, lr, headlines)

    def save_model(self, model, tokenizer, output_dir: Path, cfg, data: MultitaskData) -> Path:
        """model/<task>/: each task a standalone transformers model (shared encoder + its head), adapters (lora,
        ia3) merged into the encoder; no `adapter/` folder (peft's adapter would hold every task's head)."""
        from ..outputs import export

        if callable(getattr(model, "merge_and_unload", None)):  # a peft model: its adapters merged in a copy
            model = export.merged_copy(model)
        folder = output_dir / "model"
        for name, task_model in model.task_models.items():
            export.save_pretrained(task_model, tokenizer, folder / name)
        return folder
