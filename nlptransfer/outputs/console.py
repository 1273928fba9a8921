"""What a run shows while it works: the config in one line, one progress bar per phase (main process only).

`show_progress_bars(False)` hides the bars (the CLI's --quiet), the way
`transformers.logging.disable_progress_bar()` does for transformers. As tqdm's own convention has it, bars
are drawn only on a terminal (not into a redirected file or a CI log) and `TQDM_DISABLE=1` hides them. A
bar that stays (training, not evaluation) also writes a plain line at each tenth of its total: on the
console and in train.log when no bar is drawn, in train.log only when one is.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from tqdm.auto import tqdm

from .tracking import hyperparameters

logger = logging.getLogger("nlptransfer")

_bars = {"enabled": True}
_console = {"level": logging.INFO, "libraries": False, "silenced": False}


def show_progress_bars(enabled: bool = True) -> None:
    """Show (default) or hide every progress bar of nlptransfer in this process."""
    _bars["enabled"] = enabled


def progress_bars_shown() -> bool:
    return _bars["enabled"]


def progress_bar(accelerator: Accelerator, iterable: Iterable | None = None, **options) -> tqdm:
    """A tqdm bar on the local main process, drawn on a terminal only (hidden elsewhere, with TQDM_DISABLE=1
    and after `show_progress_bars(False)`); see `ProgressBar` for the plain lines it writes."""
    shown = _bars["enabled"] and accelerator.is_local_main_process
    return ProgressBar(iterable, disable=tqdm_disable() if shown else True, dynamic_ncols=True, **options)


def tqdm_disable() -> bool | None:
    """tqdm's `disable` as its users set it: TQDM_DISABLE=1 hides every bar; otherwise None, which draws a bar
    only on a terminal. (Passing `disable=` to tqdm overrides the variable, so it is read here.)"""
    value = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return True if value not in ("", "0", "false", "no", "off") else None


class ProgressBar(tqdm):
    """A tqdm bar that also writes a plain line (`training: 30/100 steps (30%), loss=0.41, ...`) at each tenth
    of its total, if it stays (`leave`, the default) and is advanced by `update`: at INFO when no bar is drawn
    (redirected output), so the console and train.log show progress without escape codes; at DEBUG (train.log
    only) when one is drawn. A hidden tqdm counts nothing, so the count is kept here."""

    LINES = 10

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 leave: bool = True, unit: str = "it", initial: float = 0, **options) -> None:
        super().__init__(iterable, desc=desc, total=total, leave=leave, unit=unit, initial=initial, **options)
        self.label, self.units = desc or "progress", unit if unit.endswith("s") else f"{unit}s"
        self.count, self.expected = initial, self.total
        self.lines = bool(leave and self.expected)
        self.next_line, self.pending, self.drawn = self._line_after(initial), False, not self.disable

    def _line_after(self, count: float) -> float:
        """The first count past `count` at which a line is due: the first n >= total * k / LINES."""
        if not self.expected:
            return math.inf
        k = math.floor(count * self.LINES / self.expected) + 1
        return max(math.floor(count) + 1, math.ceil(self.expected * k / self.LINES))

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        self.count += n
        if self.lines and self.count >= self.next_line:
            self.pending, self.next_line = True, self._line_after(self.count)
        return shown

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        """Set the postfix, then write the line due at this count (the loop sets a step's loss right after it)."""
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)
        self.write_line()

    def close(self) -> None:
        self.write_line()
        super().close()

    def write_line(self) -> None:
        if not getattr(self, "pending", False):
            return
        self.pending = False
        postfix = getattr(self, "postfix", None)
        logger.log(logging.DEBUG if self.drawn else logging.INFO, "%s: %d/%d %s (%.0f%%)%s", self.label, self.count,
                   self.expected, self.units, 100 * self.count / self.expected, f", {postfix}" if postfix else "")


def config_summary(cfg: Any) -> str:
    """Recipe, task, model and strategy, then the options that differ from the recipe's defaults as key=value."""
    try:
        defaults = hyperparameters(type(cfg)())
    except Exception:  # a Config that needs arguments: every option counts as set
        defaults = {}
    changed = [f"{key}={value}" for key, value in hyperparameters(cfg).items() if defaults.get(key, object()) != value]
    return f"recipe {cfg.recipe}, task {cfg.task}, model {cfg.model}, strategy {cfg.strategy}" + (
        f"; set: {', '.join(changed)}" if changed else "")


def set_console(level: int = logging.INFO, libraries: bool = False) -> None:
    """What runs in this process print: nlptransfer's lines from `level` up; the libraries' own warnings,
    load reports and download bars only with `libraries`. Holds from now on, for every later run of the process."""
    _console["level"], _console["libraries"] = level, libraries
    for handler in logger.handlers:
        if isinstance(handler, ConsoleHandler):
            handler.setLevel(level)


def console_level() -> int:
    return _console["level"]


def quiet_libraries() -> None:
    """Hide library chatter that does not concern the user (the new head's load report, ...), unless asked for."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    if _console["libraries"]:
        if _console["silenced"]:  # an earlier run of this process hid them: show them again
            transformers.logging.set_verbosity_warning()
            transformers.logging.enable_progress_bar()
            _console["silenced"] = False
        return
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    _console["silenced"] = True
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (notebooks and pytest swap it), not the one at creation."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """Through tqdm, so that a log line does not break a progress bar that is being drawn."""
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(output_dir: Path | None, is_main: bool) -> None:
    """Log to the console and to `output_dir/train.log`, main process only.

    The console shows the level chosen with `set_console` (the CLI's --quiet or --verbose; INFO by
    default), in every run of the process; train.log always gets every line, DEBUG (e.g. the whole
    resolved config) included.
    """
    logger.setLevel(logging.ERROR if not is_main else logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    console = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    if console is None:
        console = ConsoleHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    console.setLevel(_console["level"])
    if is_main and output_dir is not None:
        file_handler = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.DEBUG)
        logger.addHandler(file_handler)


def stop_file_logging() -> None:
    """Close the run's train.log (the run is over; a later run opens its own)."""
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
