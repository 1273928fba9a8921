"""The options of a continual sequence (`python -m nlptransfer.continual --config stages.yaml`) and the checks made
before anything is written. Stdlib only: `--help` and option errors load no heavy library.

    scenario: class-incremental          # task-incremental | class-incremental | domain-incremental
    methods: [naive, replay, adapters]   # each learns the whole sequence; `replay+lwf` combines
    model: minilm
    train: {epochs: 1, batch_size: 16}
    replay: {per_stage: 50}
    stages:
      - {name: first, data: {name: bbc_news}, labels: [business, entertainment]}
      - {name: second, data: {name: bbc_news}, labels: [politics, sport]}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..options import DataConfig, TrainConfig
from ..strategies.lora import LoraSettings

SCENARIOS = ("class-incremental", "task-incremental", "domain-incremental")
ALONE = ("naive", "adapters", "joint")
"""Methods that do not combine with others."""
PARTS = ("replay", "ewc", "lwf")
"""Methods that combine with each other: `replay+lwf`, `replay+ewc`."""
UNUSED_TRAIN = ("patience", "metric_for_best", "layer_lr_decay", "head_lr", "group_by_length", "speedups")
"""train.* options a stage does not read: setting one is refused rather than ignored."""
EXTENDED = "old"
"""With `extend=runs/A`: the name of the stage the finished run learned."""


@dataclass
class StageConfig:
    """One stage: its name, its data and the labels it teaches."""

    name: str = ""
    """The stage's name: its row and column of the accuracy matrix; under task-incremental its head's name."""
    data: DataConfig = field(default_factory=DataConfig)
    """Its data section (any source a run reads), split seeded as a run splits it; the test split is required."""
    labels: list[str] | None = None
    """The labels this stage teaches: only the data's examples of these labels are kept (one corpus split into
    stages); default: every label of its data."""


ADAPTERS_LR = 2e-3
"""`adapters`' learning rate with train.lr unset: a stage is a short budget, and at lora's run default (5e-4) a BBC News
stage of 40 steps left its adapter at 0.69 test accuracy, at 2e-3 0.98 (benchmarks/README.md, continual learning)."""


@dataclass
class ReplaySettings:
    per_stage: int = 50
    """Examples of each finished stage kept in the replay buffer (seeded, spread over its labels) and mixed into every
    later stage's training; at most that stage's training examples."""
    balance: bool = True
    """Repeat each stored label's examples up to the new stage's mean examples per label, so that old classes weigh
    as much as new ones in its training (false: each stored example once, and the grown head favours the newest
    classes: on class-incremental BBC News the first stage fell to 0.29 test accuracy unbalanced, 0.91 balanced)."""


@dataclass
class EwcSettings:
    strength: float = 1000.0
    """lambda: the weight of the penalty lambda/2 * sum_i F_i (theta_i - theta*_i)^2 (0 trains as naive)."""
    fisher_samples: int = 100
    """Training examples of a finished stage whose squared log-likelihood gradients give the Fisher diagonal F."""


@dataclass
class LwfSettings:
    temperature: float = 2.0
    """T of the distillation: the previous model's and this model's old-class outputs are both softened by T."""
    alpha: float = 0.5
    """Share of the distillation loss: (1 - alpha) * cross-entropy + alpha * T^2 * KL(previous || current)."""


@dataclass
class ContinualConfig:
    stages: list[StageConfig] = field(default_factory=list)
    """The stages in the order they are learned (a `stages:` list in --config: name, data, labels)."""
    scenario: str = "class-incremental"
    """class-incremental (new classes of one label set, one growing head), task-incremental (each stage its own
    labels and head, predicted by stage name) or domain-incremental (the same labels, new data)."""
    methods: list[str] = field(default_factory=lambda: ["naive"])
    """Each learns the whole sequence, side by side: naive, replay, ewc, lwf, adapters, joint (all stages at once:
    the upper bound); replay, ewc and lwf combine with `+` (replay+lwf)."""
    model: str = "minilm"
    """The checkpoint every method starts from (a packaged short name, a hub id or a folder)."""
    extend: str | None = None
    """A finished classification run (runs/A) to add classes to: its classes are the first stage (`old`), its model
    the starting point; the new classes come from `data` (or `stages`)."""
    data: DataConfig = field(default_factory=DataConfig)
    """With extend=: the new classes' data (the stage `new`)."""
    output_dir: str | None = None
    """The sequence's folder; default: runs/continual-<time>."""
    overwrite: bool = False
    """Replace what a finished sequence wrote there (a killed one resumes without it)."""
    seed: int = 42
    """Seeds the splits, the heads, the replay buffer and training."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=16))
    """Each stage's training (epochs, batch_size, lr: default 1e-4, adapters 2e-3, ...); the last epoch is kept."""
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    ewc: EwcSettings = field(default_factory=EwcSettings)
    lwf: LwfSettings = field(default_factory=LwfSettings)
    adapters: LoraSettings = field(default_factory=LoraSettings)
    """methods=[adapters]: each stage's LoRA adapter (r, alpha, dropout, target_modules)."""


def method_parts(method: str) -> list[str]:
    """`replay+lwf` -> [replay, lwf]; one line refuses an unknown or badly combined method."""
    parts = [part.strip() for part in str(method).split("+")]
    known = (*ALONE, *PARTS)
    unknown = [part for part in parts if part not in known]
    if unknown:
        raise ConfigError(f"unknown continual method '{unknown[0]}' in methods; choose from {', '.join(known)} "
                          "(replay, ewc and lwf combine: replay+lwf)")
    if len(parts) > 1 and any(part in ALONE for part in parts):
        raise ConfigError(f"method {method}: {', '.join(ALONE)} combine with nothing; only replay, ewc and lwf "
                          "combine (replay+lwf)")
    if len(set(parts)) < len(parts):
        raise ConfigError(f"method {method} names a part twice; name each once (replay+lwf)")
    return parts


def has_data(data: DataConfig) -> bool:
    return bool(data.train_file or data.name)


def check(cfg: ContinualConfig) -> ContinualConfig:
    """Refuse, in one line, what can be refused from the options alone (before any data is read)."""
    stages = list(cfg.stages) + ([StageConfig(name="new", data=cfg.data)] if cfg.extend and has_data(cfg.data) else [])
    names = [stage.name for stage in stages]
    repeated = sorted({name for name in names if names.count(name) > 1})
    checks = [
        (cfg.scenario in SCENARIOS, f"scenario={cfg.scenario} is not one of {', '.join(SCENARIOS)}"),
        (bool(cfg.methods), "methods is empty; name at least one: methods=[naive,replay]"),
        (bool(stages), "no stages: give a `stages:` list in --config (each: name, data, labels), or extend=runs/A "
                       "with data.train_file=new.csv"),
        (all(names), "every stage needs a name (stages: - name: first ...)"),
        (not repeated, f"stages share the name {', '.join(repeated)}: give each stage its own name"),
        (EXTENDED not in names or not cfg.extend, f"with extend=, the stage name '{EXTENDED}' is the run's own stage; "
                                                  "name the new stage otherwise"),
        (all(has_data(stage.data) for stage in stages),
         f"stage {next((s.name for s in stages if not has_data(s.data)), '')} has no data: give its data.train_file "
         "(or data.name)"),
        (not any(stage.data.text_pair_column for stage in stages), "continual stages read single texts: unset "
                                                                    "data.text_pair_column"),
        (all(stage.labels is None or len(stage.labels) > 0 for stage in stages),
         "a stage's labels list is empty: name its labels (labels: [a, b]) or leave labels out for all of them"),
        (cfg.replay.per_stage >= 0, f"replay.per_stage must be 0 or more, got {cfg.replay.per_stage}"),
        (cfg.ewc.strength >= 0, f"ewc.strength (lambda) must be 0 or more, got {cfg.ewc.strength}"),
        (cfg.ewc.fisher_samples >= 1, f"ewc.fisher_samples must be at least 1, got {cfg.ewc.fisher_samples}"),
        (cfg.lwf.temperature > 0, f"lwf.temperature must be above 0, got {cfg.lwf.temperature}"),
        (0 <= cfg.lwf.alpha <= 1, f"lwf.alpha must be from 0 to 1, got {cfg.lwf.alpha}"),
        (cfg.adapters.r >= 1, f"adapters.r must be at least 1, got {cfg.adapters.r}"),
        (cfg.train.epochs >= 1 and cfg.train.batch_size >= 1, "train.epochs and train.batch_size must be at least 1"),
        (not cfg.extend or cfg.scenario == "class-incremental",
         f"extend= adds classes to a run: it is class-incremental, not {cfg.scenario}; leave scenario unset"),
        (not cfg.extend or has_data(cfg.data) or cfg.stages, "extend= needs the new classes' data: "
                                                             "data.train_file=new.csv"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for method in cfg.methods:
        method_parts(method)
    for stage in stages:
        check_data(stage)
    defaults = TrainConfig(epochs=1, batch_size=16)
    unused = [name for name in UNUSED_TRAIN if getattr(cfg.train, name) != getattr(defaults, name)]
    if unused:
        raise ConfigError(f"train.{unused[0]} has no effect on a continual stage (it trains its fixed budget, keeps "
                          "the last epoch, one learning rate); leave it unset")
    if cfg.extend and any(method_parts(m)[0] in ("adapters", "joint") for m in cfg.methods):
        raise ConfigError("extend= grows the run's own head; methods adapters and joint learn new models: use naive, "
                          "replay, ewc or lwf (replay+lwf)")
    return cfg


def check_data(stage: StageConfig) -> None:
    """A stage's data section, checked as a run checks its own (fractions, sizes, lengths)."""
    from ..config import RunConfig, validate

    try:
        validate(RunConfig(data=stage.data))
    except ConfigError as error:
        raise ConfigError(f"stage {stage.name}: {error}") from None


def check_labels(scenario: str, stage_labels: dict[str, list[str]], extending: bool = False) -> None:
    """The stages' label sets against the scenario (once the data is read, before anything is written). `extending`:
    the stages after the run's may hold examples of its old classes too (old examples given with the new ones)."""
    seen: dict[str, str] = {}
    first = next(iter(stage_labels.values()))
    for name, labels in stage_labels.items():
        if scenario == "domain-incremental" and sorted(labels) != sorted(first):
            raise ConfigError(f"domain-incremental stages share one label set, and stage {name} has "
                              f"{', '.join(labels)}, not {', '.join(first)}; use scenario=class-incremental")
        if scenario != "domain-incremental":
            clash = [label for label in labels if label in seen and not (extending and seen[label] == EXTENDED)]
            if clash:
                fix = ("give each stage's labels their own names (task-incremental heads are told apart by name)"
                       if scenario == "task-incremental" else
                       "a class-incremental stage teaches new classes only; use scenario=domain-incremental")
                raise ConfigError(f"stage {name} repeats label {clash[0]} of stage {seen[clash[0]]}: {fix}")
        seen |= {label: name for label in labels if label not in seen}
