"""`import nlptransfer`, the config and every command's module load none of the heavy libraries: `--help`,
`--version` and option errors answer at once; torch and the rest load where a run, a prediction or an export
starts. Checked on the modules a fresh interpreter holds, not on a timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "accelerate", "peft", "sklearn", "pandas", "datasets", "evaluate", "matplotlib",
         "optuna", "pyarrow", "numpy")
LIGHT_MODULES = ["nlptransfer", "nlptransfer.config", "nlptransfer.api", "nlptransfer.cli.main", "nlptransfer.cli.run",
                 "nlptransfer.cli.predict", "nlptransfer.cli.export", "nlptransfer.cli.push", "nlptransfer.cli.compare",
                 "nlptransfer.cli.curve", "nlptransfer.cli.sweep", "nlptransfer.cli.distill", "nlptransfer.distill",
                 "nlptransfer.distillation", "nlptransfer.run", "nlptransfer.predict",
                 "nlptransfer.continual", "nlptransfer.cli.continual", "nlptransfer.stages.settings",
                 "nlptransfer.recipes.sentiment", "nlptransfer.recipes.ner", "nlptransfer.cli.active",
                 "nlptransfer.active.state"]
ENV = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}


def loaded(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set(done.stdout.splitlines()[-1].split())  # the last line: the help texts above name libraries too
    return [name for name in HEAVY if name in modules]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_importing_loads_no_heavy_library(module):
    assert loaded(f"import {module}") == []


def test_a_recipes_help_and_an_option_error_load_no_heavy_library():
    code = ("from nlptransfer.cli.run import main\n"
            "assert main(['recipe=sentiment', '--help']) == 0\n"
            "assert main(['recipe=sentiment', 'train.epochs=many']) == 2\n"
            "from nlptransfer.cli.main import main as tool\n"
            "assert tool(['predict', '--help']) == 0 and tool(['export', '--help']) == 0\n"
            "assert tool(['continual', '--help']) == 0 and tool(['continual', 'methods=[magic]']) == 2\n"
            "from nlptransfer.cli.active import main as active\n"
            "assert active(['--help']) == 0 and active(['batch_size=0', 'output_dir=x']) == 2\n"
            "assert tool(['distill', '--help']) == 0 and tool(['distill', 'runs/t', 'alpha=2']) == 2\n")
    assert loaded(code) == []


@pytest.mark.parametrize("command", [["-m", "nlptransfer.run", "--version"], ["-m", "nlptransfer", "--version"],
                                     ["-m", "nlptransfer.predict", "--version"],
                                     ["-m", "nlptransfer.distill", "--version"]])
def test_every_command_says_its_version(command):
    from nlptransfer import __version__

    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"nlptransfer {__version__} (torch ") and "transformers" in done.stdout
