"""What a run shows while it works: the config in one line, one progress bar per phase (main process only).

`show_progress_bars(False)` hides the bars (the CLI's --quiet), the way
`transformers.logging.disable_progress_bar()` does for transformers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from accelerate import Accelerator
from tqdm.auto import tqdm

from .tracking import hyperparameters

_bars = {"enabled": True}


def show_progress_bars(enabled: bool = True) -> None:
    """Show (default) or hide every progress bar of nlptransfer in this process."""
    _bars["enabled"] = enabled


def progress_bars_shown() -> bool:
    return _bars["enabled"]


def progress_bar(accelerator: Accelerator, iterable: Iterable | None = None, **options) -> tqdm:
    """A tqdm bar on the local main process (hidden elsewhere and after `show_progress_bars(False)`)."""
    return tqdm(iterable, disable=not (_bars["enabled"] and accelerator.is_local_main_process), dynamic_ncols=True,
                **options)


def config_summary(cfg: Any) -> str:
    """Recipe, task, model and strategy, then the options that differ from the recipe's defaults as key=value."""
    try:
        defaults = hyperparameters(type(cfg)())
    except Exception:  # a Config that needs arguments: every option counts as set
        defaults = {}
    changed = [f"{key}={value}" for key, value in hyperparameters(cfg).items() if defaults.get(key, object()) != value]
    return f"recipe {cfg.recipe}, task {cfg.task}, model {cfg.model}, strategy {cfg.strategy}" + (
        f"; set: {', '.join(changed)}" if changed else "")
