"""What a run prints: default (INFO lines and bars, no library chatter), --quiet and --verbose."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_run import USER_RECIPE  # a user's recipe: the tiny checkpoint on the reviews, 2 steps

from nlptransfer.cli.run import main, parse_args
from nlptransfer.errors import ConfigError
from nlptransfer.outputs.console import progress_bar, progress_bars_shown, show_progress_bars


@pytest.fixture
def recipe_file(tmp_path, tiny_model_dir, reviews_csv) -> Path:
    path = tmp_path / "reviews_recipe.py"
    path.write_text(USER_RECIPE.format(model=tiny_model_dir, train_file=str(reviews_csv)))
    return path


@pytest.fixture
def restore_bars():
    shown = progress_bars_shown()
    yield
    show_progress_bars(shown)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a console is."""

    def isatty(self) -> bool:
        return True


def test_default_console_shows_progress_and_a_short_config_but_no_library_chatter(tmp_path, recipe_file,
                                                                                   restore_bars, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([f"recipe={recipe_file}", f"output_dir={tmp_path / 'run'}", "train.lr=1e-3"]) == 0
    err = terminal.getvalue()
    assert "config: recipe reviews, task classification" in err and "train.lr=0.001" in err
    assert "resolved config:" not in err  # the whole config: --verbose, config.yaml and train.log
    assert "training:" in err and "samples/s=" in err and "ex/s" in err  # bars with throughput
    assert "\r" in err  # drawn in place
    assert "epoch 1: train loss" in err and "test (best epoch 1)" in err
    assert "newly initialized" not in err and "LOAD REPORT" not in err  # the new head: we report it ourselves
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resolved config:" in log
    assert "DEBUG training: 2/2 steps (100%)" in log  # the plain progress lines go to train.log ...
    assert "training: 2/2 steps (100%)" not in err  # ... and not over the bars


def test_redirected_output_gets_plain_progress_lines_not_bars(capsys, tmp_path, recipe_file, restore_bars):
    # capsys' stderr is not a terminal, like `... 2> run.log` or a CI job's log
    argv = [f"recipe={recipe_file}", f"output_dir={tmp_path / 'run'}", "train.epochs=2", "train.max_steps=10"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err and "it/s" not in err and "ex/s" not in err
    lines = err.splitlines()
    progress = [line for line in lines if line.startswith("training: ")]
    assert len(progress) == 10  # every 10% of the run's steps: 1 line per step here
    assert progress[-1].startswith("training: 10/10 steps (100%), loss=") and "samples/s=" in progress[-1]
    assert "epoch 1: train loss" in err and "test (best epoch 1)" in err  # the report stays, unlike with --quiet
    assert progress == [line.split(" INFO ", 1)[1] for line in (tmp_path / "run" / "train.log").read_text()
                        .splitlines() if " INFO training: " in line]


def test_progress_lines_come_every_tenth_of_the_run(capsys, restore_bars):
    import logging

    from nlptransfer.outputs import console

    console.set_console(logging.INFO)
    console.take_process_logging()  # as the command line does
    bar = progress_bar(SimpleNamespace(is_local_main_process=True), total=95, desc="training", unit="step")
    for _ in range(95):
        bar.update(1)
        bar.set_postfix({"loss": "0.5"}, refresh=False)
    bar.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training")]
    assert [line.split()[1] for line in lines] == [f"{n}/95" for n in (10, 19, 29, 38, 48, 57, 67, 76, 86, 95)]
    assert lines[0] == "training: 10/95 steps (11%), loss=0.5"


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("0", False), ("", False)])
def test_tqdm_disable_is_honoured(monkeypatch, value, disabled, restore_bars):
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TQDM_DISABLE", value)
    show_progress_bars(True)  # an earlier --quiet run of this process hid them
    bar = progress_bar(SimpleNamespace(is_local_main_process=True), total=3, desc="x")
    assert bool(bar.disable) is disabled  # tqdm keeps None for "draw it"
    bar.close()


def test_quiet_prints_no_progress_and_no_info(capsys, tmp_path, recipe_file, restore_bars):
    assert main([f"recipe={recipe_file}", f"output_dir={tmp_path / 'run'}", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "training" not in err and "config:" not in err and "epoch 1" not in err
    assert err.strip() == ""
    assert "epoch 1: train loss" in (tmp_path / "run" / "train.log").read_text()  # the log keeps everything


def test_verbose_shows_debug_lines_and_library_messages(tmp_path, recipe_file):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                        "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "nlptransfer.run", f"recipe={recipe_file}",
                           f"output_dir={tmp_path / 'run'}", "--verbose"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resolved config:\nrecipe: reviews" in done.stderr  # nlptransfer's DEBUG lines
    assert "newly initialized" in done.stderr  # transformers' own report on the new head
    assert "epoch 1: train loss" in done.stderr


def test_quiet_and_verbose_exclude_each_other():
    with pytest.raises(ConfigError, match="--quiet and --verbose"):
        parse_args(["recipe=sentiment", "--quiet", "--verbose"])
    flags, _, _ = parse_args(["recipe=sentiment", "--verbose"])
    assert flags["verbose"] and not flags["quiet"]


@pytest.mark.parametrize("shown, main_process, terminal, disabled", [
    (True, True, True, False), (False, True, True, True), (True, False, True, True), (True, True, False, True)])
def test_progress_bars_only_on_the_main_process_of_a_terminal_and_when_shown(shown, main_process, terminal, disabled,
                                                                            restore_bars, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal() if terminal else io.StringIO())
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    show_progress_bars(shown)
    bar = progress_bar(SimpleNamespace(is_local_main_process=main_process), total=3, desc="x")
    assert bool(bar.disable) is disabled  # tqdm keeps None for "draw it"
    bar.close()


# Jupyter, redirected logs and the loops that go away when done (evaluation, prediction, feature extraction)


class Kernel:
    """What IPython's get_ipython() answers in a Jupyter kernel."""

    config = {"IPKernelApp": {}}


def test_a_jupyter_kernel_gets_a_live_bar(monkeypatch):
    from tqdm import notebook

    from nlptransfer.outputs import console

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert console.bar_kind() == (console.ProgressBar, None)  # a terminal only
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: Kernel()))
    monkeypatch.setattr(notebook, "IProgress", object)  # ipywidgets installed
    bar_class, disable = console.bar_kind()
    assert issubclass(bar_class, notebook.tqdm) and issubclass(bar_class, console.ProgressLines) and disable is False
    monkeypatch.setattr(notebook, "IProgress", None)  # without ipywidgets: a text bar, drawn although not a tty
    assert console.bar_kind() == (console.ProgressBar, False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert console.bar_kind() == (console.ProgressBar, True)


def test_a_loop_that_goes_away_writes_plain_lines_once_it_is_long(capsys, monkeypatch, restore_bars):
    import logging

    from nlptransfer.outputs import console

    console.set_console(logging.INFO)
    console.take_process_logging()
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for _ in progress_bar(None, range(20), desc="evaluating", unit="ex", leave=False):
        pass  # short: no line
    assert "evaluating" not in capsys.readouterr().err
    monkeypatch.setattr(console, "TRANSIENT_SECONDS", 0.0)  # a long evaluation
    for _ in progress_bar(None, range(20), desc="evaluating", unit="ex", leave=False):
        pass  # iterated, not updated: counted all the same
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating")]
    assert lines[0] == "evaluating: 2/20 exs (10%)" and lines[-1] == "evaluating: 20/20 exs (100%)" and len(lines) == 10


def test_evaluation_shows_progress(capsys, monkeypatch, restore_bars):
    import logging

    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from nlptransfer.engine.loop import predict
    from nlptransfer.outputs import console

    class Logits(torch.nn.Module):
        def forward(self, input_ids, **unused):
            return SimpleNamespace(logits=input_ids.float())

    rows = [{"input_ids": torch.tensor([i]), "example_index": torch.tensor(i)} for i in range(30)]
    batches = DataLoader(rows, batch_size=3)
    console.set_console(logging.INFO)
    console.take_process_logging()
    monkeypatch.setattr(console, "TRANSIENT_SECONDS", 0.0)
    logits = predict(Logits(), batches, Accelerator(cpu=True), desc="evaluating")
    assert logits[:, 0].tolist() == list(range(30))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating")]
    assert lines[-1] == "evaluating: 30/30 exs (100%)" and len(lines) == 10


# a run from Python configures nothing global


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_python_run_leaves_the_callers_logging_and_other_libraries_as_it_found_them(tiny_model_dir, reviews_csv,
                                                                                       tmp_path, monkeypatch):
    import warnings

    import transformers

    from nlptransfer import run
    from nlptransfer.outputs import console

    monkeypatch.setitem(console._console, "cli", False)  # a notebook's process, not the command line's
    options = {"model": tiny_model_dir, "data_options": {"train_file": str(reviews_csv), "max_length": 32},
               "train": {"epochs": 1, "batch_size": 8, "max_steps": 2}}
    package = logging.getLogger("nlptransfer")
    monkeypatch.setattr(package, "level", package.level)  # put back whatever this test does
    mine = Records()
    package.addHandler(mine)
    try:
        package.setLevel(logging.INFO)
        run(**options, output_dir=str(tmp_path / "info"))  # (the first run imports what adds its own filters)
        messages = [record.getMessage() for record in mine.records]
        assert any(message.startswith("epoch 1: train loss") for message in messages)
        assert not [record for record in mine.records if record.levelno < logging.INFO]
        package.setLevel(logging.WARNING)
        mine.records.clear()
        before = (package.level, package.propagate, list(package.handlers), transformers.logging.get_verbosity(),
                  transformers.utils.logging.is_progress_bar_enabled(), list(warnings.filters))
        run(**options, output_dir=str(tmp_path / "warning"))
        after = (package.level, package.propagate, list(package.handlers), transformers.logging.get_verbosity(),
                 transformers.utils.logging.is_progress_bar_enabled(), list(warnings.filters))
    finally:
        package.removeHandler(mine)
        package.setLevel(logging.NOTSET)
    assert after == before
    assert all(record.levelno >= logging.WARNING for record in mine.records)  # the level the caller chose
