"""nlptransfer: transfer learning for text classification and NER with BERT-family models.

    from nlptransfer import load_recipe
    sentiment = load_recipe("sentiment")
    results = sentiment.run(sentiment.Config(strategy="lora", train={"epochs": 1}))
"""

from .catalog import load_recipe, recipe_names
from .config import DataConfig, FreezeConfig, LoraSettings, PushConfig, RunConfig, TrainConfig
from .errors import ConfigError, DataError, HubError, ModelError, NlpTransferError

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataConfig", "DataError", "FreezeConfig", "HubError", "LoraSettings", "ModelError",
    "NlpTransferError", "PushConfig", "Results", "RunConfig", "TrainConfig", "load_model", "load_recipe",
    "recipe_names", "run",
]


def __getattr__(name: str):
    # `run` and `Results` pull in torch and transformers: import them only when asked for.
    if name in ("run", "Results"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_model":
        from .predict import load_model

        return load_model
    raise AttributeError(f"module 'nlptransfer' has no attribute '{name}'")
