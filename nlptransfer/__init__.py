"""nlptransfer: transfer learning for text classification and NER with BERT-family models.

    from nlptransfer import run
    results = run(recipe="sentiment", strategy="lora", train={"epochs": 1})
    results.test_metrics, results.predictions_frame, results.predict(["what a great day"])

`run` also takes your own data (`data=` a DataFrame, a datasets Dataset/DatasetDict or lists, with
`data_options={"text_column": ...}`), model objects (`model=`, `tokenizer=`) and loop callbacks
(`callbacks=[...]`); see `nlptransfer.api`.
"""

import sys
import types

from .config import DataConfig, FreezeConfig, LoraSettings, PushConfig, RunConfig, TrainConfig
from .errors import CheckpointError, ConfigError, DataError, HubError, ModelError, NlpTransferError, TrainingError

__version__ = "0.1.0"

__all__ = [
    "Callback", "CheckpointError", "ConfigError", "DataConfig", "DataError", "FreezeConfig", "HubError",
    "LoraSettings", "ModelError", "NlpTransferError", "PushConfig", "Results", "RunConfig", "TrainConfig",
    "TrainingError", "load_model", "load_recipe", "recipe_names", "run",
]

_LAZY = {"run": "api", "load_model": "api", "load_recipe": "api", "recipe_names": "api", "Results": "pipeline",
         "Callback": "engine.hooks"}


def __getattr__(name: str):
    # The entry points pull in torch and transformers: import them only when asked for.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nlptransfer' has no attribute '{name}'")


class _Package(types.ModuleType):
    """`nlptransfer.run` stays the function: importing a submodule binds it as an attribute of its package,
    and `nlptransfer/run.py` is the `python -m nlptransfer.run` command (still in `sys.modules`)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "run" and isinstance(value, types.ModuleType):
            from .api import run as value
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
