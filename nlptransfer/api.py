"""The Python entry points a notebook uses: `run`, `load_model`, `load_recipe`.

    import pandas as pd
    from nlptransfer import run

    frame = pd.DataFrame({"review": [...], "stars": [...]})
    results = run(data=frame, data_options={"text_column": "review", "label_column": "stars"},
                  strategy="lora", train={"epochs": 1}, output_dir="runs/mine")
    results.test_metrics["accuracy"], results.predictions_frame.head(), results.predict(["a new text"])

`data` is the in-memory data: a pandas DataFrame, a `datasets.Dataset` or `DatasetDict`, a dict of
splits, a dict of columns, a (texts, labels) pair of lists, or a list of records (`[{"text": ..., "label": ...},
...]`; `{"tokens": [...], "tags": [...]}` for token classification). `data_options` are the data section's
options (column names, `max_length`, ...); every other section is a keyword of its own (`train={...}`).
`model` is a short name, hub id or folder, or a `PreTrainedModel` object (with its `tokenizer`);
`callbacks` are loop callbacks of your own (`nlptransfer.Callback`).
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
from typing import TYPE_CHECKING, Any

from .config import DataConfig, RunConfig, validate
from .config import _merge as merge_section
from .engine.hooks import Callback
from .errors import ConfigError

if TYPE_CHECKING:  # torch, transformers and pandas load when a run starts, not with `recipe_names` or `--help`
    from .pipeline import Results
    from .predictor import Predictor

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


def load_model(location: str | Path, base_model: str | None = None, runtime: str = "torch",
               task: str | None = None) -> Predictor:
    """A `Predictor` (`.predict(texts)`) for a run folder, a model folder, an adapter folder or a hub id;
    `runtime=bf16|int8|onnx|onnx-int8` for faster approximate serving on CPU (`nlptransfer.runtimes`). A multi-task run
    answers every task (each row's `tasks`), or one task by its name (`task="ner"`)."""
    from .predictor import load_model as load_predictor

    return load_predictor(location, base_model=base_model, runtime=runtime, task=task)


def run(cfg: RunConfig | None = None, *, recipe: str | None = None, data: Any = None,
        data_options: dict | DataConfig | None = None, model: Any = None, tokenizer: Any = None,
        callbacks: Sequence[Callback] = (), **options: Any) -> Results:
    """Train, test and save one run; returns `Results` with the trained model, test predictions and metrics.

    `cfg`: a config (e.g. `load_recipe("sentiment").Config()`); else `recipe`'s defaults, else `RunConfig()`.
    `data`: in-memory data instead of the config's files or corpus (see the module docstring).
    `data_options`: the data section's options as a dict (`{"text_column": "review", "max_length": 64}`).
    `model`/`tokenizer`: a name, hub id or folder, or a `PreTrainedModel` object with its tokenizer.
    `callbacks`: `nlptransfer.Callback` objects, called by the training loop after the standard ones.
    `options`: any other option by keyword, sections as dicts (`strategy="lora", train={"epochs": 1}`).
    Everything is checked before the run folder is written: a mistake is a one-line `NlpTransferError`.
    """
    from .data.memory import in_memory_source
    from .pipeline import Inputs
    from .pipeline import run as run_pipeline

    module = load_recipe(recipe) if recipe else None
    cfg = cfg if cfg is not None else (module.Config() if module else RunConfig())
    if model is not None and isinstance(model, str | Path):
        options["model"], model = str(model), None
    cfg = configure(cfg, options, data_options, in_memory=data is not None)
    inputs = Inputs(source=None if data is None else in_memory_source(data, cfg.data), callbacks=list(callbacks))
    check_callbacks(inputs.callbacks)
    takes_inputs = module is None or len(inspect.signature(module.run).parameters) >= 2
    if not takes_inputs and (inputs.source is not None or inputs.callbacks or model is not None):
        raise ConfigError(f"recipe '{recipe}' takes no in-memory data, model objects or callbacks (its "
                          "run(cfg) has one argument); drop recipe= and pass its Config() as cfg")
    with tempfile.TemporaryDirectory(prefix="nlptransfer-model-") as saved:
        if model is not None:
            cfg, inputs.model_path = with_model_object(cfg, model, tokenizer, Path(saved))
        elif tokenizer is not None:
            raise ConfigError("tokenizer= goes with a model object (model=<PreTrainedModel>); a model given by "
                              "name or folder brings its own tokenizer")
        if module is None:
            return run_pipeline(cfg, inputs)
        return module.run(cfg, inputs) if takes_inputs else module.run(cfg)


KEYWORDS = ("recipe", "data", "data_options", "model", "tokenizer", "callbacks")
"""`run`'s own keywords, offered by the did-you-mean of an unknown option."""


def configure(cfg: RunConfig, options: dict, data_options: dict | DataConfig | None = None,
              in_memory: bool = False) -> RunConfig:
    """`cfg` with keyword overrides (sections as dicts merged onto the current section), checked.

    With `in_memory` data the config names no file or corpus: config.yaml says what the run did not read.
    """
    check_option_names(cfg, options)
    changes = {key: merged(getattr(cfg, key), value, key) for key, value in options.items()}
    data_section = merged(changes.get("data", cfg.data), data_options, "data")
    if in_memory and (named := data_sources(data_options)):
        raise ConfigError(f"data= gives the data and data_options names {named[0]} too; pass one of them (for the "
                          "file or corpus, drop data=)")
    if in_memory:
        data_section = dataclasses.replace(data_section, name=None, config=None, train_file=None,
                                           validation_file=None, test_file=None)
    changes["data"] = data_section
    if isinstance(cfg.model, Path):
        changes.setdefault("model", str(cfg.model))
    cfg = type(cfg)(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)} | changes)
    if in_memory and cfg.pretrain.mlm and not cfg.pretrain.text_file:
        raise ConfigError("pretrain.mlm with in-memory data needs its texts in a file: set "
                          "pretrain.text_file=<a .txt or table file>")
    return validate(cfg)


def data_sources(data_options: dict | DataConfig | None) -> list[str]:
    """The files and corpus that `data_options` names (`data.train_file='x.csv'`): data= would replace them."""
    given = dataclasses.asdict(data_options) if isinstance(data_options, DataConfig) else (data_options or {})
    return [f"data.{key}={given[key]!r}" for key in ("train_file", "validation_file", "test_file", "name", "config")
            if given.get(key) is not None]


def merged(current: Any, value: Any, name: str) -> Any:
    """A section given as a dict onto the current section (typed and checked), else the value as given."""
    if value is None and dataclasses.is_dataclass(current):
        return current
    if isinstance(value, dict) and dataclasses.is_dataclass(current):
        return merge_section(current, value, prefix=f"{name}.")
    return value


def check_option_names(cfg: RunConfig, options: dict) -> None:
    """An unknown keyword is a one-line error naming the close options (a data option: data_options=)."""
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = [key for key in options if key not in known]
    if not unknown:
        return
    key = unknown[0]
    if key in {f.name for f in dataclasses.fields(DataConfig)}:
        raise ConfigError(f"'{key}' is a data option: pass data_options={{'{key}': ...}}")
    close = difflib.get_close_matches(key, sorted(known | set(KEYWORDS)), n=3)
    raise ConfigError(f"unknown option '{key}'" + (f"; did you mean {', '.join(close)}" if close else "")
                      + " (python -m nlptransfer.run --help lists every option)")


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
        from .models import load_tokenizer

        tokenizer = load_tokenizer(str(tokenizer), cfg.trust_remote_code)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    name = getattr(model.config, "_name_or_path", "") or f"in-memory {type(model).__name__}"
    return dataclasses.replace(cfg, model=str(name)), str(folder)
