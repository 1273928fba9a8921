"""What a run shows while it works: the config in one line, one progress bar per phase (main process only).

`show_progress_bars(False)` hides the bars (the CLI's --quiet), the way
`transformers.logging.disable_progress_bar()` does for transformers. As tqdm's own convention has it, bars
are drawn only on a terminal (not into a redirected file or a CI log) and `TQDM_DISABLE=1` hides them; in a
Jupyter kernel they are drawn live (tqdm's notebook widget where ipywidgets is installed, else a text bar).
A bar also writes a plain line at each tenth of its total: on the console and in train.log when no bar is
drawn, in train.log only when one is (a bar that goes away, such as evaluation's, only once it has run for
`TRANSIENT_SECONDS`).

Logging: the command line sets up its own process (`take_process_logging`); a run from Python changes
nothing global (`start_run_logging`: a level set on the `nlptransfer` logger, propagation, the root
logger, transformers' settings and warnings filters stay as they are).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import std

from .tracking import hyperparameters

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger("nlptransfer")

_bars = {"enabled": True}
_console = {"level": logging.INFO, "libraries": False, "silenced": False, "cli": False}
_runs: list[tuple[list[logging.Handler], int | None]] = []
"""Per run in progress: the handlers it added and the logger level to put back (None: it set none)."""
TRANSIENT_SECONDS = 5.0
"""A bar that goes away when done (evaluation, prediction, feature extraction) writes plain lines after this long."""


def show_progress_bars(enabled: bool = True) -> None:
    """Show (default) or hide every progress bar of nlptransfer in this process."""
    _bars["enabled"] = enabled


def progress_bars_shown() -> bool:
    return _bars["enabled"]


def progress_bar(accelerator: Accelerator | None = None, iterable: Iterable | None = None, **options) -> std.tqdm:
    """A tqdm bar on the local main process (`accelerator` None: this process), drawn on a terminal or in a
    Jupyter kernel (hidden elsewhere, with TQDM_DISABLE=1 and after `show_progress_bars(False)`); see
    `ProgressLines` for the plain lines it writes."""
    shown = _bars["enabled"] and (accelerator is None or accelerator.is_local_main_process)
    bar_class, disable = bar_kind()
    return bar_class(iterable, disable=disable if shown else True, dynamic_ncols=True, **options)


def bar_kind() -> tuple[type, bool | None]:
    """The bar class and tqdm's `disable` for this process: TQDM_DISABLE=1 hides every bar; in a Jupyter kernel
    the notebook widget (or, without ipywidgets, a text bar, which the notebook redraws in place) is drawn;
    elsewhere None, which draws a bar only on a terminal. (Passing `disable=` to tqdm overrides the variable,
    so it is read here.)"""
    value = os.environ.get("TQDM_DISABLE", "").strip().lower()
    if value not in ("", "0", "false", "no", "off"):
        return ProgressBar, True
    if not in_notebook():
        return ProgressBar, None
    from tqdm import notebook

    return (notebook_bar_class() if notebook.IProgress is not None else ProgressBar), False


def in_notebook() -> bool:
    """A Jupyter kernel runs this process (as tqdm.autonotebook tells)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython too old or too odd to say
        return False


class ProgressLines:
    """Mixed into a tqdm bar: a plain line (`training: 30/100 steps (30%), loss=0.41, ...`) at each tenth of its
    total, as `update` or iteration advances it: at INFO when no bar is drawn (redirected output), so the console
    and train.log show progress without escape codes; at DEBUG (train.log only) when one is drawn. A bar that goes
    away (`leave=False`) writes them only once it has run for `TRANSIENT_SECONDS`: a short evaluation says nothing.
    A hidden tqdm counts nothing, so the count is kept here."""

    LINES = 10

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 leave: bool = True, unit: str = "it", initial: float = 0, **options) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        super().__init__(iterable, desc=desc, total=total, leave=leave, unit=unit, initial=initial, **options)
        self.label, self.units = desc or "progress", unit if unit.endswith("s") else f"{unit}s"
        self.count, self.expected, self.started = initial, total, time.monotonic()
        self.lines, self.quiet_for = bool(self.expected), 0.0 if leave else TRANSIENT_SECONDS
        self.next_line, self.pending, self.drawn = self._line_after(initial), False, not self.disable

    def _line_after(self, count: float) -> float:
        """The first count past `count` at which a line is due: the first n >= total * k / LINES."""
        if not self.expected:
            return math.inf
        k = math.floor(count * self.LINES / self.expected) + 1
        return max(math.floor(count) + 1, math.ceil(self.expected * k / self.LINES))

    def __iter__(self):
        """The items, each counted by `update` (tqdm's own iteration does not call it)."""
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: float = 1) -> bool | None:
        self.write_line()  # a line still due (no `set_postfix` came after the update that made it due)
        shown = super().update(n)
        self.count += n
        if self.lines and self.count >= self.next_line:
            self.next_line = self._line_after(self.count)
            self.pending = time.monotonic() - self.started >= self.quiet_for and self.count
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
        count, self.pending = self.pending, False
        postfix = getattr(self, "postfix", None)
        logger.log(logging.DEBUG if self.drawn else logging.INFO, "%s: %d/%d %s (%.0f%%)%s", self.label, count,
                   self.expected, self.units, 100 * count / self.expected, f", {postfix}" if postfix else "")


class ProgressBar(ProgressLines, std.tqdm):
    """The bar on a terminal (and its plain lines elsewhere)."""


@cache
def notebook_bar_class() -> type:
    """The bar in a Jupyter kernel with ipywidgets: tqdm's notebook widget, with the plain lines of train.log."""
    from tqdm.notebook import tqdm as notebook_tqdm

    return type("NotebookProgressBar", (ProgressLines, notebook_tqdm), {"__doc__": notebook_bar_class.__doc__})


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
    """What nlptransfer's own console shows (the command line's, or a run's where nothing else handles its lines):
    its lines from `level` up; the libraries' own warnings, load reports and download bars only with `libraries`
    (the command line hides them; a run from Python leaves them as they are). Holds for every later run."""
    _console["level"], _console["libraries"] = level, libraries
    for handler in logger.handlers:
        if isinstance(handler, ConsoleHandler):
            handler.setLevel(level)


def console_level() -> int:
    return _console["level"]


def quiet_libraries() -> None:
    """The command line's: hide library chatter that does not concern the user (the new head's load report, ...),
    unless asked for. A run from Python never calls it: other libraries' settings are the caller's."""
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
            std.tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def console_handler() -> ConsoleHandler:
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(_console["level"])
    return handler


def take_process_logging() -> None:
    """The command line's own process: nlptransfer logs at DEBUG to its console handler (at the `set_console`
    level) and each run's train.log, and not through the root logger (whose handlers are not the command's)."""
    _console["cli"] = True
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if not any(isinstance(handler, ConsoleHandler) for handler in logger.handlers):
        logger.addHandler(console_handler())


def start_run_logging(output_dir: Path | None, is_main: bool) -> None:
    """Log one run, until `stop_run_logging`: train.log in `output_dir` gets its lines (main process only).

    A run from Python changes nothing the caller set: a level set on the `nlptransfer` logger is kept (train.log
    then holds what it lets through), and propagation and every handler stay. Where no level is set, the run
    logs at DEBUG (other processes: ERROR), or at INFO where handlers of the caller's (the root logger's, through
    propagation) receive its records; and where nothing at all handles them (a fresh notebook or script), the run
    shows its lines on the console itself (at the `set_console` level). `stop_run_logging` puts all back.
    """
    handlers, level = [], None
    if _console["cli"] or logger.level == logging.NOTSET:
        alone = not logger.hasHandlers()
        level = logger.level
        logger.setLevel(logging.ERROR if not is_main else logging.DEBUG if alone or _console["cli"] else logging.INFO)
        if alone and is_main:
            handlers.append(console_handler())
    if is_main and output_dir is not None:
        file_handler = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.DEBUG)
        handlers.append(file_handler)
    for handler in handlers:
        logger.addHandler(handler)
    _runs.append((handlers, level))


def stop_run_logging() -> None:
    """The run is over: close its train.log, remove what it added, put the logger's level back."""
    if not _runs:
        return
    handlers, level = _runs.pop()
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
    if level is not None:
        logger.setLevel(level)
