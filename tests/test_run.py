"""nlptransfer/run.py: the command line: usage, --help, one-line errors with exit code 2, user recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nlptransfer.cli.run import main

USER_RECIPE = '''\
"""Reviews: a user's recipe on a local csv with a tiny checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.pipeline import run as run_pipeline


@dataclass
class Config(RunConfig):
    recipe: str = "reviews"
    model: str = {model!r}
    data: DataConfig = field(default_factory=lambda: DataConfig(train_file={train_file!r}, max_length=32))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=8, max_steps=2))


def run(cfg: Config | None = None):
    return run_pipeline(cfg or Config())
'''


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    assert err[-1].startswith("error: ")
    return err[-1]


def test_no_recipe_prints_usage_and_fails(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "recipes: adapt, ner, sentiment, topic" in err


def test_help_lists_recipes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "recipes: adapt, ner, sentiment, topic" in out


def test_recipe_help_lists_options_with_defaults(capsys):
    assert main(["recipe=sentiment", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sentiment: 3-class Twitter sentiment")
    for option in ("  data.name=tweets", "  train.batch_size=32", "  train.epochs=2", "  strategy=full",
                   "  lora.target_modules=null"):
        assert option in lines
    assert lines[lines.index("  train.epochs=2") + 1].strip() == "Passes over the training data."


def test_help_shows_config_file_and_overrides(capsys, tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("strategy: lora\ntrain:\n  epochs: 5\n  lr: 0.001\n")
    assert main(["recipe=topic", "--config", str(config_file), "train.lr=1e-4", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {"  strategy=lora", "  train.epochs=5", "  train.lr=0.0001", "  data.name=bbc_news"} <= set(lines)


@pytest.mark.parametrize("argv, message", [
    (["recipe=sentimnt"], "unknown recipe 'sentimnt'; did you mean sentiment?"),
    (["recipe=sentiment", "train.epoch=2"], "unknown option 'train.epoch'; did you mean: train.epochs"),
    (["recipe=sentiment", "train.epochs=two"], "bad value for 'train.epochs'"),
    (["recipe=sentiment", "strategy=adapters"], "strategy must be one of full, frozen, lora"),
    (["recipe=sentiment", "--loud"], "unknown flag '--loud'"),
    (["recipe=sentiment", "--config"], "--config needs a file"),
    (["recipe=sentiment", "--config", "no/such.yaml"], "config file not found"),
    (["recipe=sentiment", "train.epochs"], "expected key=value"),
])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, argv, message):
    assert main([f"output_dir={tmp_path / 'run'}", "--quiet"] + argv) == 2
    assert message in error_line(capsys)


def test_missing_data_file(capsys, tmp_path):
    missing = tmp_path / "missing.csv"
    argv = ["recipe=sentiment", f"data.train_file={missing}", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(argv) == 2
    assert f"data file not found: {missing}" in error_line(capsys)


def test_existing_run_folder_is_not_overwritten(capsys, tmp_path):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "metrics.json").write_text('{"precious": true}')
    assert main(["recipe=sentiment", f"output_dir={output_dir}", "--quiet"]) == 2
    assert "holds files that nlptransfer did not write (metrics.json)" in error_line(capsys)  # no config.yaml
    (output_dir / "config.yaml").write_text("recipe: sentiment\n")  # a finished run written before the markers
    assert main(["recipe=sentiment", f"output_dir={output_dir}", "--quiet"]) == 2
    assert "overwrite=true" in error_line(capsys)
    assert sorted(p.name for p in output_dir.iterdir()) == ["config.yaml", "metrics.json"]
    assert (output_dir / "metrics.json").read_text() == '{"precious": true}'


def test_a_run_that_failed_before_training_can_be_rerun_into_its_folder(capsys, tmp_path, tiny_model_dir,
                                                                       reviews_csv):
    output_dir = tmp_path / "run"
    argv = ["recipe=sentiment", f"model={tiny_model_dir}", f"output_dir={output_dir}", "train.max_steps=1",
            "--quiet"]
    assert main(argv + [f"data.train_file={tmp_path / 'typo.csv'}"]) == 2
    assert "data file not found" in error_line(capsys)
    assert main(argv + [f"data.train_file={reviews_csv}"]) == 0
    assert (output_dir / "metrics.json").is_file()


def test_debug_keeps_the_traceback():
    from nlptransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="train.epochs"):
        main(["recipe=sentiment", "train.epoch=2", "--debug"])


def test_error_in_a_real_process_is_one_line_without_traceback(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "nlptransfer.run", "recipe=sentiment", "train.epoch=2"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: unknown option 'train.epoch'")
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_user_recipe_file_runs_end_to_end(capsys, tmp_path, tiny_model_dir, reviews_csv):
    recipe_file = tmp_path / "reviews_recipe.py"
    recipe_file.write_text(USER_RECIPE.format(model=tiny_model_dir, train_file=str(reviews_csv)))
    output_dir = tmp_path / "run"
    argv = [f"recipe={recipe_file}", f"output_dir={output_dir}", "--quiet"]

    assert main(argv) == 0
    written = json.loads((output_dir / "metrics.json").read_text())
    assert written["timing"]["optimizer_steps"] == 2
    assert "recipe: reviews" in (output_dir / "config.yaml").read_text()
    assert (output_dir / "model" / "config.json").is_file()

    assert main(argv) == 2  # the run folder now holds a run
    assert "overwrite=true" in error_line(capsys)
    assert main(argv + ["overwrite=true", "train.max_steps=1"]) == 0
    assert json.loads((output_dir / "metrics.json").read_text())["timing"]["optimizer_steps"] == 1


def test_user_recipe_help_lists_its_defaults(capsys, tmp_path, reviews_csv):
    recipe_file = tmp_path / "my_recipe.py"
    recipe_file.write_text(USER_RECIPE.format(model="tiny", train_file=str(reviews_csv)))
    assert main([f"recipe={recipe_file}", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(": Reviews: a user's recipe on a local csv with a tiny checkpoint.")
    assert {"  recipe=reviews", "  model=tiny", "  train.max_steps=2", f"  data.train_file={reviews_csv}"} <= set(lines)


def test_user_recipe_help_names_the_file(capsys, tmp_path, reviews_csv):
    recipe_file = tmp_path / "my_recipe.py"
    recipe_file.write_text(USER_RECIPE.format(model="tiny", train_file=str(reviews_csv)))
    assert main([f"recipe={recipe_file}", "--help"]) == 0
    assert capsys.readouterr().out.startswith("my_recipe: Reviews")


def test_help_piped_into_head_ends_quietly():
    # the reader of the pipe leaves after 3 lines: no BrokenPipeError traceback, exit 0
    done = subprocess.run(f"{sys.executable} -m nlptransfer.run recipe=sentiment --help | head -3", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.count("\n") == 3
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def declared_requirements() -> tuple[set[str], dict[str, set[str]]]:
    """pyproject.toml's dependencies and extras, as normalized distribution names."""
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}

    return names(project["dependencies"]), {extra: names(r) for extra, r in project["optional-dependencies"].items()}


def imported_distributions() -> tuple[set[str], set[str]]:
    """The distributions nlptransfer imports at module level (needed by any use) and inside functions (lazily).

    An import in a `try` block with a fallback is neither: it is the fallback's business.
    """
    import ast
    from importlib.metadata import packages_distributions
    from pathlib import Path

    owners = packages_distributions()
    eager, lazy = set(), set()
    for path in (Path(__file__).parents[1] / "nlptransfer").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try) for node in ast.walk(block)}
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "nlptransfer" or id(node) in guarded:
                    continue
                for distribution in owners.get(top, [top]):
                    (eager if id(node) in top_level else lazy).add(distribution.lower().replace("_", "-"))
    return eager, lazy


def test_every_imported_package_is_declared():
    dependencies, extras = declared_requirements()
    eager, lazy = imported_distributions()
    assert {"huggingface-hub", "safetensors", "numpy"} <= eager  # imported by the library itself, not only by deps
    assert eager - dependencies == set()
    assert lazy - dependencies - set().union(*extras.values()) == set()


def test_optional_trackers_are_extras_and_tested_ones_are_in_the_test_extra():
    dependencies, extras = declared_requirements()
    assert "tensorboard" not in dependencies and "tensorboard" in extras["tensorboard"]
    assert "tensorboard" in extras["test"]  # tests/test_tracking.py reads its event files


def test_torch_floor_is_the_version_run():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert "torch>=2.13,<3" in project["dependencies"]  # 2.4 has fused AdamW on CPU, but only 2.13.0 was run
