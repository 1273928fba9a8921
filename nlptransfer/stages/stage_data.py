"""Reading a sequence's stages: each stage's data section split as a run splits it (seeded, stratified,
deduplicated), kept to the stage's labels, and checked against the scenario and the methods before anything is
written. With `extend=runs/A` the finished run's own data (from its config.yaml) is the first stage, `old`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import tasks
from ..config import RunConfig, load_yaml
from ..errors import ConfigError, DataError
from ..options import DataConfig
from .learner import Examples, StageData
from .settings import EXTENDED, ContinualConfig, StageConfig, check_labels, method_parts


def all_stages(cfg: ContinualConfig) -> list[StageConfig]:
    """The stages in order: with extend=, the run's stage `old`, then `stages`, then `data` as the stage `new`."""
    stages = list(cfg.stages)
    if cfg.extend:
        data, labels = extended_run(cfg.extend)
        stages = [StageConfig(name=EXTENDED, data=data, labels=labels)] + stages
        if cfg.data.train_file or cfg.data.name:
            stages.append(StageConfig(name="new", data=cfg.data))
    return stages


def extended_run(location: str) -> tuple[DataConfig, list[str]]:
    """A finished classification run's data section and labels; one line refuses anything else."""
    folder = Path(location).expanduser()
    if not (folder / "metrics.json").is_file() or not (folder / "config.yaml").is_file():
        raise ConfigError(f"extend={location} is not a finished run (no metrics.json and config.yaml); pass a "
                          "finished run's folder (runs/<run>)")
    run_cfg = load_yaml(RunConfig(), folder / "config.yaml")
    task = tasks.get(run_cfg.task)
    if task.multilabel or task.several_tasks or task.pipeline_tag != "text-classification":  # one label per text
        raise ConfigError(f"extend={location} is a {run_cfg.task} run; classes are added to classification runs")
    if not run_cfg.data.name and not run_cfg.data.train_file:
        raise ConfigError(f"extend={location} was trained on in-memory data: its splits cannot be read again; "
                          "train it from a file or corpus")
    if not (folder / "model" / "config.json").is_file():
        raise ConfigError(f"extend={location} has no model/ folder (an adapter-only run?); extend a run that saved "
                          "model/")
    try:
        labels = list(json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["data"]["label_names"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"extend={location} has no readable metrics.json data.label_names; run it again with this "
                          "nlptransfer version") from None
    return run_cfg.data, labels


def read_stage(stage: StageConfig, seed: int) -> StageData:
    """One stage's seeded splits, kept to its labels (in the order it names them)."""
    from ..data.classification import load_classification

    try:
        data = load_classification(stage.data, seed, single_class=True)  # a stage may teach one class
    except DataError as error:
        raise DataError(f"stage {stage.name}: {error}") from None
    names = list(data.label_names)
    keep = list(stage.labels) if stage.labels is not None else names
    unknown = [label for label in keep if label not in names]
    if unknown:
        raise DataError(f"stage {stage.name}: label '{unknown[0]}' is not in its data (labels: {', '.join(names)}); "
                        "fix its labels list")

    def examples(split) -> Examples:
        pairs = [(str(text), names[int(label)]) for text, label in zip(split.texts, split.labels)]
        kept = [(text, label) for text, label in pairs if label in keep]
        return Examples([text for text, _ in kept], [label for _, label in kept])

    found = StageData(stage.name, keep, examples(data.train), examples(data.validation), examples(data.test))
    if not len(found.test):
        raise DataError(f"stage {stage.name} has no test split (no test example of its labels): give its "
                        "data.test_file or a data.test_fraction above 0")
    if not len(found.train):
        raise DataError(f"stage {stage.name} has no training example of its labels; check its data and labels")
    return found


def read_stages(cfg: ContinualConfig) -> list[StageData]:
    """Every stage's data, checked against the scenario (label sets) and the replay buffer's size."""
    stages = [read_stage(stage, cfg.seed) for stage in all_stages(cfg)]
    check_labels(cfg.scenario, {stage.name: stage.label_names for stage in stages}, extending=bool(cfg.extend))
    single = next((stage for stage in stages if len(stage.label_names) < 2), None)
    if single is not None and ("adapters" in cfg.methods or cfg.scenario == "task-incremental"):
        raise ConfigError(f"stage {single.name} teaches one label ({single.label_names[0]}), and its own head "
                          "(adapters, task-incremental) has nothing to tell apart; give it two or more labels, or "
                          "another method")
    if any("replay" in method_parts(method) for method in cfg.methods):
        small = next((stage for stage in stages[:-1] if cfg.replay.per_stage > len(stage.train)), None)
        if small is not None:
            raise ConfigError(f"replay.per_stage={cfg.replay.per_stage} is more than stage {small.name}'s "
                              f"{len(small.train)} training examples: a buffer cannot hold more than the data seen; "
                              f"set replay.per_stage={len(small.train)} or less")
    return stages
