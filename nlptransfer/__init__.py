"""nlptransfer: transfer learning for text classification and NER with BERT-family models.

    from nlptransfer import load_recipe
    sentiment = load_recipe("sentiment")
    results = sentiment.run(sentiment.Config(strategy="lora", train={"epochs": 1}))
"""

from .catalog import load_recipe, recipe_names
from .config import DataConfig, FreezeConfig, LoraSettings, RunConfig, TrainConfig
from .errors import ConfigError, DataError, ModelError, NlpTransferError

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataConfig", "DataError", "FreezeConfig", "LoraSettings", "ModelError",
    "NlpTransferError", "Results", "RunConfig", "TrainConfig", "load_recipe", "recipe_names", "run",
]


def __getattr__(name: str):
    # `run` and `Results` pull in torch and transformers: import them only when asked for.
    if name in ("run", "Results"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nlptransfer' has no attribute '{name}'")
