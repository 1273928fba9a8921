"""What a run prints: default (INFO lines and bars, no library chatter), --quiet and --verbose."""

from __future__ import annotations

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


def test_default_console_shows_progress_and_a_short_config_but_no_library_chatter(capsys, tmp_path, recipe_file,
                                                                                   restore_bars):
    assert main([f"recipe={recipe_file}", f"output_dir={tmp_path / 'run'}", "train.lr=1e-3"]) == 0
    err = capsys.readouterr().err
    assert "config: recipe reviews, task classification" in err and "train.lr=0.001" in err
    assert "resolved config:" not in err  # the whole config: --verbose, config.yaml and train.log
    assert "training:" in err and "samples/s=" in err and "ex/s" in err  # bars with throughput
    assert "epoch 1: train loss" in err and "test (best epoch 1)" in err
    assert "newly initialized" not in err and "LOAD REPORT" not in err  # the new head: we report it ourselves
    assert "resolved config:" in (tmp_path / "run" / "train.log").read_text()


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


@pytest.mark.parametrize("shown, main_process, disabled", [
    (True, True, False), (False, True, True), (True, False, True)])
def test_progress_bars_only_on_the_main_process_and_when_shown(shown, main_process, disabled, restore_bars):
    show_progress_bars(shown)
    bar = progress_bar(SimpleNamespace(is_local_main_process=main_process), total=3, desc="x")
    assert bar.disable is disabled
    bar.close()
