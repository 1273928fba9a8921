"""Which pooling a classification head uses: the checkpoint's own head, or a pooled sentence embedding.

A sentence-transformers checkpoint (all-MiniLM-L6-v2, the packaged one) says in `modules.json`
and `1_Pooling/config.json` how it was trained to be read: mean pooling, then normalization. A
head on that embedding (`modeling_nlptransfer.PooledForSequenceClassification`) reads the encoder
as it was trained; the architecture's own head reads the first token (or BERT's pooler on it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .errors import ConfigError
from .modeling_nlptransfer import POOLING_MODES

logger = logging.getLogger(__name__)

ST_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max", "pooling_mode_cls_token": "cls"}


def read_json(path: str, name: str) -> dict | list | None:
    """A JSON file of a checkpoint (local folder or hub cache), or None when it has none."""
    from transformers.utils import cached_file

    try:
        found = cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    if not found:
        return None
    try:
        return json.loads(Path(found).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def checkpoint_pooling(path: str) -> dict | None:
    """The checkpoint's sentence-transformers pooling ({"mode", "normalize"}), or None if it declares none."""
    modules = read_json(path, "modules.json")
    if not isinstance(modules, list):
        return None
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m.get("path", "") for m in modules if isinstance(m, dict)}
    if "Pooling" not in types:
        return None
    settings = read_json(path, f"{types['Pooling']}/config.json") or {}
    mode = next((mode for flag, mode in ST_MODES.items() if settings.get(flag)), None)
    if mode is None:  # weighted mean, last token, mean-sqrt-len: not one this head computes
        return None
    return {"mode": mode, "normalize": "Normalize" in types}


def resolve(requested: str, normalize: bool | None, path: str) -> dict | None:
    """The head's pooling for `head.pooling=requested`: None for the architecture's own head (`model`), else
    {"mode": mean|max|cls, "normalize": bool}; `auto` takes the checkpoint's, else mean pooling."""
    if requested == "model":
        if normalize:
            raise ConfigError("head.normalize=true normalizes a pooled embedding: set head.pooling=auto|mean|max|cls "
                              "too, or drop head.normalize")
        return None
    declared = checkpoint_pooling(path)
    if requested == "auto":
        pooled = declared or {"mode": "mean", "normalize": False}
    elif requested in POOLING_MODES:
        pooled = {"mode": requested, "normalize": bool(declared and declared["normalize"])}
    else:
        raise ConfigError(f"head.pooling must be one of model, auto, {', '.join(POOLING_MODES)}; got '{requested}'")
    if normalize is not None:
        pooled["normalize"] = normalize
    source = "the checkpoint's sentence-transformers pooling" if requested == "auto" and declared else \
        f"head.pooling={requested}"
    logger.info("head on the %s-pooled%s embedding (%s)", pooled["mode"],
                ", normalized" if pooled["normalize"] else "", source)
    return pooled
