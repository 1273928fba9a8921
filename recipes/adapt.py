"""Tweet sentiment after domain-adaptive pretraining: MLM on unlabeled tweets first, then fine-tuning.

The sentiment recipe's data and training (4000 labeled tweets, 2 epochs), preceded by one epoch of
masked-language-model training of the packaged MiniLM encoder on 10000 tweets of the training split
without their labels (no validation or test tweet). `pretrain.*` sets the text and the MLM training;
`python -m nlptransfer.compare recipe=adapt strategies=full` shows the gain over the unadapted encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlptransfer.config import DataConfig, PretrainConfig, RunConfig, TrainConfig

if TYPE_CHECKING:
    from nlptransfer.pipeline import Inputs, Results


@dataclass
class Config(RunConfig):
    recipe: str = "adapt"
    model: str = "minilm"
    data: DataConfig = field(default_factory=lambda: DataConfig(
        name="tweets", max_train_samples=4000, max_validation_samples=1000, max_length=64,
    ))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=32))
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(mlm=True, max_samples=10000, epochs=1))


def run(cfg: Config | None = None, inputs: Inputs | None = None) -> Results:
    from nlptransfer.pipeline import run as run_pipeline  # torch loads with a run, not with --help

    return run_pipeline(cfg or Config(), inputs)
