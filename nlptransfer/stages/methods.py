"""What each method adds to a stage's training, and the module the loop trains.

- replay: `replay_indices` keeps N seeded examples of a finished stage, spread over its labels; they join every later
  stage's training examples (under their own stage's head); with `replay.balance` (the default) `balanced` repeats
  each stored label's examples up to the new stage's mean examples per label.
- ewc: `fisher_diagonal` (mean squared gradient of each example's log-likelihood of its gold label) and
  `ewc_penalty` = lambda/2 * sum_i F_i (theta_i - theta*_i)^2. Online EWC: the Fisher diagonals of the finished stages
  add up, the anchor theta* is the model after the last finished stage. A head grown since is penalized on its old
  rows only.
- lwf: `lwf_loss` = T^2 * KL(softmax(previous / T) || softmax(current / T)) over the classes the previous model knew,
  on the new stage's texts, mixed with the cross-entropy by alpha.
- a grown head: `grow_head` appends rows for new labels; the old rows and biases keep their values exactly.

`StageModule.forward(task=k, labels=..., input_ids=...)` returns the stage's loss (the loop's protocol): batches
hold one head's examples (`task` indexes `heads`), as multi-task batches do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from .. import models


def replay_indices(labels: list[str], count: int, seed: int) -> list[int]:
    """`count` example indices of a stage (all of them when it has fewer), seeded, taken from its labels in turn so
    that each label keeps about an equal share; sorted."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    for indices in by_label.values():
        rng.shuffle(indices)
    queues, chosen = [by_label[label] for label in sorted(by_label)], []
    while len(chosen) < min(count, len(labels)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return sorted(chosen)


def balanced(labels: list[str], target: int) -> list[int]:
    """Indices into stored examples (their `labels`) repeating each label's examples in turn until it has `target`
    of them (a label with more keeps its own); in the examples' order."""
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    chosen = []
    for indices in by_label.values():
        chosen += [indices[i % len(indices)] for i in range(max(target, len(indices)))]
    return sorted(chosen)


def classifier(model: nn.Module) -> nn.Linear:
    """The head's output layer: the last linear layer outside the encoder with one output per label."""
    found = [module for name in models.head_module_names(model) for module in getattr(model, name).modules()
             if isinstance(module, nn.Linear) and module.out_features == model.config.num_labels]
    if not found:
        raise ValueError(f"no output layer of {model.config.num_labels} labels in {type(model).__name__}'s head")
    return found[-1]


@torch.no_grad()
def grow_head(model: nn.Module, new_labels: list[str], seed: int) -> None:
    """Append one output row per label of `new_labels` (seeded, initialized as the model initializes a head); the
    existing rows and biases keep their values; the config's labels follow."""
    if not new_labels:
        return
    layer = classifier(model)
    old = layer.out_features
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    rows = torch.randn(len(new_labels), layer.in_features, generator=generator) * std
    layer.weight = nn.Parameter(torch.cat([layer.weight.detach(), rows.to(layer.weight)]))
    if layer.bias is not None:
        layer.bias = nn.Parameter(torch.cat([layer.bias.detach(), torch.zeros(len(new_labels)).to(layer.bias)]))
    layer.out_features = old + len(new_labels)
    names = [model.config.id2label[i] for i in range(old)] + list(new_labels)
    model.config.num_labels = len(names)
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}


def lwf_loss(current: torch.Tensor, previous: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(previous / T) || softmax(current / T)), batch mean, over the previous model's classes (the
    first columns of `current`)."""
    current = current[:, : previous.shape[-1]]
    return functional.kl_div(functional.log_softmax(current / temperature, -1),
                             functional.log_softmax(previous / temperature, -1), log_target=True,
                             reduction="batchmean") * temperature ** 2


def fisher_diagonal(module: nn.Module, batches) -> dict[str, torch.Tensor]:
    """The empirical Fisher diagonal of the trainable parameters: the mean over examples of each example's squared
    gradient of its log-likelihood (`module(**batch).loss` on batches of one example each)."""
    trained = {name: parameter for name, parameter in module.named_parameters() if parameter.requires_grad}
    fisher = {name: torch.zeros_like(parameter) for name, parameter in trained.items()}
    was_training, examples = module.training, 0
    module.eval()  # no dropout: the gradients of the model as it predicts
    for batch in batches:
        module.zero_grad(set_to_none=True)
        module(**batch).loss.backward()
        examples += 1
        for name, parameter in trained.items():
            if parameter.grad is not None:
                fisher[name] += parameter.grad.detach() ** 2
    module.zero_grad(set_to_none=True)
    module.train(was_training)
    return {name: value / max(examples, 1) for name, value in fisher.items()}


def ewc_penalty(named_parameters, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                strength: float) -> torch.Tensor:
    """lambda/2 * sum_i F_i (theta_i - theta*_i)^2 over the anchored parameters (a grown head: its old rows)."""
    total = None
    for name, parameter in named_parameters:
        if name not in anchor:
            continue
        held = anchor[name]
        value = parameter[: held.shape[0]] if parameter.shape != held.shape else parameter
        term = (fisher[name] * (value - held) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return strength / 2 * total


@dataclass
class Guards:
    """What limits forgetting while a stage trains (None: not used by the method)."""

    previous: nn.ModuleDict | None = None
    """LwF: the heads after the previous stage (a frozen copy)."""
    distill: tuple[str, ...] = ()
    """LwF: the heads whose previous outputs on the new texts are distilled (those of the finished stages)."""
    temperature: float = 2.0
    alpha: float = 0.5
    fisher: dict | None = None
    """EWC: the summed Fisher diagonals, by parameter name of `StageModule`."""
    anchor: dict | None = None
    strength: float = 0.0


class StageModule(nn.Module):
    """The heads a stage trains (transformers classification models sharing one encoder, or one adapter model) as one
    module whose `forward(task=k, **inputs)` gives head k's logits and the stage's loss: cross-entropy, plus LwF's
    distillation of the previous model on the batch, plus EWC's penalty."""

    def __init__(self, heads: dict[str, nn.Module], guards: Guards | None = None):
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.names = list(heads)
        self.guards = guards or Guards()
        self.config = next(iter(heads.values())).config

    def forward(self, task, labels=None, **inputs):
        head = self.names[int(task)]
        output = self.heads[head](**inputs)
        if labels is None:
            return output
        loss = functional.cross_entropy(output.logits, labels)
        guards = self.guards
        if guards.previous is not None and guards.distill:
            distilled = sum(self.distillation(name, head, output.logits, inputs) for name in guards.distill)
            loss = (1 - guards.alpha) * loss + guards.alpha * distilled / len(guards.distill)
        if guards.fisher is not None and guards.strength:
            loss = loss + ewc_penalty(self.named_parameters(), guards.fisher, guards.anchor, guards.strength)
        output.loss = loss
        return output

    def distillation(self, name: str, head: str, logits: torch.Tensor, inputs: dict) -> torch.Tensor:
        """LwF's loss of head `name` on this batch (of head `head`): its previous outputs against its current ones."""
        with torch.no_grad():
            previous = self.guards.previous[name](**inputs).logits
        current = logits if name == head else self.heads[name](**inputs).logits
        return lwf_loss(current, previous, self.guards.temperature)
