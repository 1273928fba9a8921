"""A sequence of stages, learned by each method in turn (the library side of `python -m nlptransfer.continual`).

    from nlptransfer.stages import sequence, settings
    sequence.learn(settings.ContinualConfig(stages=[...], methods=["naive", "replay"], output_dir="runs/seq"))

Every check runs before anything is written (options, then every stage's data). The folder (kind `continual`) is
locked while written; after every stage the method's checkpoint (checkpoints/<method>/stage-<k>.pt: what trains,
and EWC's Fisher and anchor) and state.json (the accuracy rows so far) are written atomically, so a killed sequence
started again with the same options resumes after the last finished stage (a stage killed midway starts again from
its beginning: every stage is seeded, so it trains as it would have). Each stage is one `engine.loop.fit` on a
`StageModule`, whose forward returns the stage's loss. After the last stage each method's final model is saved
(model/, or <method>/model/ with several methods), then the report, the heat-maps and metrics.json (last).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from datetime import datetime
from pathlib import Path

import torch
import yaml

from .. import models, strategies
from ..errors import ConfigError
from ..outputs import files, folders
from ..outputs.run_folder import RunFolder
from . import report
from .learner import ALL, Examples, Learner
from .methods import Guards, StageModule, balanced, replay_indices
from .settings import ADAPTERS_LR, ContinualConfig, check, method_parts
from .stage_data import all_stages, read_stages
from .training import ewc_memory, fit_stage

logger = logging.getLogger("nlptransfer")

STATE = "state.json"
OPTIONS = "continual.yaml"
CONTINUAL = folders.CONTINUAL
NOT_LEARNING = ("output_dir", "overwrite")
"""Options that do not change what a sequence learns: a resume may change them."""


def learn(cfg: ContinualConfig) -> Path:
    """Learn `cfg`'s stages with each of its methods, score every stage after each, write the folder; returns it."""
    cfg = check(cfg)
    out = Path(cfg.output_dir or f"runs/continual-{datetime.now():%Y%m%d-%H%M%S}")
    check_output(out, cfg)
    stages = read_stages(cfg)
    start_model = cfg.extend or cfg.model
    tokenizer = models.load_tokenizer(start_model)
    max_length = models.max_length(tokenizer, max(stage.data.max_length for stage in all_stages(cfg)))
    folders.make_output_dir(out)
    with RunFolder(out) as folder:
        folder.lock()
        check_output(out, cfg)  # again under the lock: another sequence may have finished there
        folders.claim(out, CONTINUAL)
        if cfg.overwrite:
            (out / "metrics.json").unlink(missing_ok=True)  # first: a folder half replaced never looks finished
            folders.clear(out, CONTINUAL)
        state = open_state(out, cfg)
        for method in cfg.methods:
            learn_method(method, cfg, Learner(cfg.scenario, method == "adapters", stages, tokenizer, max_length),
                         out, state)
        report.write(out, cfg, stages, state)
    logger.info("continual: outputs in %s", out)
    return out


def check_output(out: Path, cfg: ContinualConfig) -> None:
    """Refuse a file, a folder of another kind or of the user's files, a finished sequence without overwrite."""
    blocking = next((path for path in (out, *out.absolute().parents) if path.is_file()), None)
    if blocking is not None:
        raise ConfigError(f"output_dir={out}: {blocking} is a file, not a folder; choose another output_dir")
    inputs = [(f"stage {stage.name} data", path) for stage in all_stages(cfg)
              for path in (stage.data.train_file, stage.data.validation_file, stage.data.test_file) if path]
    if cfg.extend:
        inputs.append(("extend", cfg.extend))
    folders.check_writable(out, CONTINUAL, "output_dir", replacing=cfg.overwrite, inputs=inputs)
    if (out / "metrics.json").exists() and not cfg.overwrite:
        raise ConfigError(f"{out} already holds a finished sequence; choose another output_dir or pass overwrite=true")


def learning_options(cfg: ContinualConfig) -> dict:
    options = dataclasses.asdict(cfg)
    return json.loads(json.dumps({k: v for k, v in options.items() if k not in NOT_LEARNING}, default=str))


def open_state(out: Path, cfg: ContinualConfig) -> dict:
    """state.json of the sequence in `out`: a new one (and continual.yaml), or the one a killed sequence of the same
    options left (resumed)."""
    options = learning_options(cfg)
    if (out / STATE).is_file():
        state = json.loads((out / STATE).read_text(encoding="utf-8"))
        if state.get("options") != options:
            changed = sorted(k for k in options if state.get("options", {}).get(k) != options[k])
            raise ConfigError(f"output_dir={out} holds an unfinished sequence of other options ({', '.join(changed)}"
                              "); pass the same options to resume it, or overwrite=true to start again")
        done = {method: len(record["rows"]) for method, record in state["methods"].items()}
        logger.info("continual: resuming the sequence in %s (stages done: %s)", out,
                    ", ".join(f"{m} {n}" for m, n in done.items()) or "none")
        return state
    files.write_text(out / OPTIONS, yaml.safe_dump(options, sort_keys=False, allow_unicode=True))
    state = {"options": options, "methods": {}}
    save_state(out, state)
    return state


def save_state(out: Path, state: dict) -> None:
    files.write_json(out / STATE, state)


def method_folder(out: Path, cfg: ContinualConfig, method: str) -> Path:
    """Where a method's final model goes: the folder itself with one method, <method>/ with several."""
    return out if len(cfg.methods) == 1 else files.make_dir(out / method)


def learn_method(method: str, cfg: ContinualConfig, learner: Learner, out: Path, state: dict) -> None:
    """One method over every stage (resumed after its last finished stage), its final model saved."""
    record = state["methods"].setdefault(method, {"rows": [], "before": None, "seconds": 0.0, "done": False})
    if record["done"]:
        return
    stages, parts = learner.stages, method_parts(method)
    joint = parts == ["joint"]
    labels = unique(label for stage in stages for label in stage.label_names) if joint else stages[0].label_names
    learner.build(cfg.model, cfg.seed, cfg.adapters, extend=cfg.extend, labels=labels)
    memory = resume(out, method, record, learner, cfg.seed)
    if record["before"] is None:
        record["before"] = [learner.accuracy(j, 0, cfg.train.eval_batch_size)[0] for j in range(len(stages))]
    for index in range(len(record["rows"]), 1 if joint else len(stages)):
        started = time.perf_counter()
        logger.info("continual: %s, stage %d of %d: %s", method, index + 1, len(stages),
                    "all stages at once" if joint else stages[index].name)
        if not (cfg.extend and index == 0):  # extend=: the first stage is the finished run, already learned
            memory = learn_stage(index, learner, parts, cfg, memory)
        learned = len(stages) if joint else index + 1
        scored = [learner.accuracy(j, learned, cfg.train.eval_batch_size) for j in range(len(stages))]
        record["rows"].append([accuracy for accuracy, _ in scored])
        record["predictions"] = [predicted for _, predicted in scored]
        record["labels"] = None if learner.per_stage else learner.label_names(ALL)
        record["seconds"] += time.perf_counter() - started
        logger.info("continual: %s after %s: test accuracy %s", method, "all stages" if joint else stages[index].name,
                    ", ".join(f"{s.name} {a:.4f}" for s, a in zip(stages, record["rows"][-1])))
        save_checkpoint(out, method, index, learner, memory)
        save_state(out, state)
        prune_checkpoints(out, method, index)  # only now: a kill before leaves the state's own checkpoint in place
    learner.save(method_folder(out, cfg, method))
    record["done"] = True
    save_state(out, state)


def unique(items) -> list:
    return list(dict.fromkeys(items))


def learn_stage(index: int, learner: Learner, parts: list[str], cfg: ContinualConfig, memory: dict) -> dict:
    """Train stage `index` (joint: every stage) by the method's parts; returns EWC's memory for the next stage."""
    stages = learner.stages
    if parts == ["joint"]:
        learner.grow(unique(label for stage in stages for label in stage.label_names), cfg.seed)
        groups: dict[str, Examples] = {}
        for k, stage in enumerate(stages):
            groups[learner.head_of(k)] = groups.get(learner.head_of(k), Examples()) + stage.train
    else:
        learner.grow(stages[index].label_names, cfg.seed + index)
        groups = {learner.head_of(index): stages[index].train}
    if "replay" in parts:
        new_labels = stages[index].train.labels
        target = round(len(new_labels) / len(set(new_labels))) if cfg.replay.balance else 0
        for k in range(index):
            kept = stages[k].train.take(replay_indices(stages[k].train.labels, cfg.replay.per_stage, cfg.seed + k))
            kept = kept.take(balanced(kept.labels, target))
            groups[learner.head_of(k)] = groups.get(learner.head_of(k), Examples()) + kept
    guards = Guards(temperature=cfg.lwf.temperature, alpha=cfg.lwf.alpha, strength=cfg.ewc.strength)
    if "lwf" in parts and index > 0:
        guards.previous, guards.distill = learner.snapshot(), tuple(unique(learner.head_of(k) for k in range(index)))
    if "ewc" in parts and memory:
        guards.fisher, guards.anchor = memory["fisher"], memory["anchor"]
    heads = {learner.head_of(index): learner.heads[learner.head_of(index)]} if learner.adapters else learner.heads
    module = StageModule(heads, guards)
    default_lr = ADAPTERS_LR if learner.adapters else strategies.get("full").default_lr
    fit_stage(module, groups, learner, cfg.train, cfg.train.lr or default_lr, cfg.seed + index)
    if "ewc" in parts:
        return ewc_memory(StageModule(learner.heads), stages[index].train, learner, learner.head_of(index),
                          cfg.ewc.fisher_samples, cfg.seed + index, memory)
    return memory


def save_checkpoint(out: Path, method: str, index: int, learner: Learner, memory: dict) -> None:
    """checkpoints/<method>/stage-<index>.pt, atomically."""
    folder = files.make_dir(out / "checkpoints" / method)
    buffer = io.BytesIO()
    torch.save({"weights": learner.trained_state(), **memory}, buffer)
    files.write_bytes(folder / f"stage-{index}.pt", buffer.getvalue())


def prune_checkpoints(out: Path, method: str, index: int) -> None:
    """Remove the method's checkpoints of stages before `index` (state.json names stage `index`'s now)."""
    for older in (out / "checkpoints" / method).glob("stage-*.pt"):
        if older.name != f"stage-{index}.pt":
            older.unlink(missing_ok=True)


def resume(out: Path, method: str, record: dict, learner: Learner, seed: int) -> dict:
    """Put back the method's last stage checkpoint, if it has finished stages; returns EWC's memory ({} if none)."""
    done = len(record["rows"])
    if not done:
        return {}
    path = out / "checkpoints" / method / f"stage-{done - 1}.pt"
    if not path.is_file():
        raise ConfigError(f"{out} lacks {path.relative_to(out)}, the checkpoint of its last finished stage; "
                          "pass overwrite=true to start the sequence again")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    learner.load_state(saved.pop("weights"), record.get("labels"), seed + done - 1)
    logger.info("continual: %s resumes after stage %d (%s)", method, done, learner.stages[done - 1].name)
    return saved
