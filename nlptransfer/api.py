"""The Python entry points a notebook uses: `run`, `load_model`, `load_recipe`.

    import pandas as pd
    from nlptransfer import run

    frame = pd.DataFrame({"text": [...], "label": [...]})
    results = run(data=frame, strategy="lora", train={"epochs": 1}, output_dir="runs/mine")
    results.test_metrics["accuracy"], results.predictions_frame.head(), results.predict(["a new text"])

`data` may be a pandas DataFrame, a `datasets.Dataset` or `DatasetDict`, a dict of splits, or a
(texts, labels) pair of lists; `model` a short name, hub id or folder, or a `PreTrainedModel`
object (with its `tokenizer`); `callbacks` loop callbacks of your own (`nlptransfer.Callback`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import RunConfig, validate
from .data.memory import in_memory_source
from .engine.loop import Callback
from .errors import ConfigError
from .pipeline import Inputs, Results
from .pipeline import run as run_pipeline
from .predictor import Predictor
from .predictor import load_model as load_predictor

__all__ = ["load_model", "load_recipe", "recipe_names", "run"]


def recipe_names() -> list[str]:
    """The built-in recipes (files of `nlptransfer.recipes`)."""
    from . import recipes

    return sorted(
        p.stem for folder in recipes.__path__ for p in Path(folder).glob("*.py") if not p.stem.startswith("_")
    )


def load_recipe(name: str) -> ModuleType:
    """A recipe module by built-in name or by path to a .py file; it has `Config` and `run`."""
    if name.endswith(".py") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}; pass a .py file or one of: {', '.join(recipe_names())}")
        spec = importlib.util.spec_from_file_location(f"nlptransfer_user_recipe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    elif name in recipe_names():
        module = importlib.import_module(f"nlptransfer.recipes.{name}")
    else:
        close = difflib.get_close_matches(name, recipe_names(), n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown recipe '{name}'; {hint}recipes: {', '.join(recipe_names())}, or a path to a .py file"
        )
    missing = [attr for attr in ("Config", "run") if not hasattr(module, attr)]
    if missing:
        raise ConfigError(f"recipe '{name}' lacks {' and '.join(missing)}; a recipe defines Config and run(cfg)")
    return module


def load_model(location: str | Path, base_model: str | None = None) -> Predictor:
    """A `Predictor` (`.predict(texts)`) for a run folder, a model folder, an adapter folder or a hub id."""
    return load_predictor(location, base_model=base_model)


def run(cfg: RunConfig | None = None, *, recipe: str | None = None, data: Any = None, model: Any = None,
        tokenizer: Any = None, callbacks: Sequence[Callback] = (), **options: Any) -> Results:
    """Train, test and save one run; returns `Results` with the trained model, test predictions and metrics.

    `cfg`: a config (e.g. `load_recipe("sentiment").Config()`); else `recipe`'s defaults, else `RunConfig()`.
    `options`: overrides by keyword, sections as dicts (`strategy="lora", train={"epochs": 1}`).
    `data`: in-memory data instead of `cfg.data`'s source (columns named by `data.text_column`, ...).
    `model`/`tokenizer`: objects (or a name) instead of `cfg.model`.
    """
    module = load_recipe(recipe) if recipe else None
    cfg = configure(cfg if cfg is not None else (module.Config() if module else RunConfig()), options)
    inputs = Inputs(source=None if data is None else in_memory_source(data, cfg.data), callbacks=list(callbacks))
    check_callbacks(inputs.callbacks)
    with tempfile.TemporaryDirectory(prefix="nlptransfer-model-") as saved:
        if model is not None and not isinstance(model, str | Path):
            cfg, inputs.model_path = with_model_object(cfg, model, tokenizer, Path(saved))
        elif model is not None:
            cfg = dataclasses.replace(cfg, model=str(model))
        if module is None:
            return run_pipeline(cfg, inputs)
        if len(inspect.signature(module.run).parameters) < 2:
            if inputs != Inputs():
                raise ConfigError(f"recipe '{recipe}' takes no in-memory data, model objects or callbacks (its "
                                  "run(cfg) has one argument); drop recipe= and pass its Config() as cfg")
            return module.run(cfg)
        return module.run(cfg, inputs)


def configure(cfg: RunConfig, options: dict) -> RunConfig:
    """`cfg` with keyword overrides (sections as dicts merged onto the current section), checked."""
    if not options:
        return cfg
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = [key for key in options if key not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=3)
        raise ConfigError(f"unknown option '{unknown[0]}'" + (f"; did you mean {', '.join(close)}" if close else "")
                          + " (nlptransfer.describe or --help lists every option)")
    changes = {}
    for key, value in options.items():
        current = getattr(cfg, key)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            changes[key] = dataclasses.replace(current, **value)
        else:
            changes[key] = value
    cfg = type(cfg)(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)} | changes)
    return validate(cfg)


def check_callbacks(callbacks: list) -> None:
    wrong = [c for c in callbacks if not isinstance(c, Callback)]
    if wrong:
        raise ConfigError(f"callbacks must be nlptransfer.Callback objects (subclass it and override its hooks); "
                          f"got {type(wrong[0]).__name__}")


def with_model_object(cfg: RunConfig, model: Any, tokenizer: Any, folder: Path) -> tuple[RunConfig, str]:
    """Save a model object (and its tokenizer) where the run loads it from; the config keeps its name."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise ConfigError(f"model= takes a transformers PreTrainedModel, a hub id or a folder; got "
                          f"{type(model).__name__}")
    if tokenizer is None:
        raise ConfigError("model= is a model object: pass its tokenizer too (tokenizer=AutoTokenizer...)")
    if isinstance(tokenizer, str | Path):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    name = getattr(model.config, "_name_or_path", "") or f"in-memory {type(model).__name__}"
    return dataclasses.replace(cfg, model=str(name)), str(folder)
