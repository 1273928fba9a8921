"""nlptransfer/compare.py: every strategy on the same splits and seed; report.md, comparison.csv and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib import image

from nlptransfer import load_recipe
from nlptransfer.cli.compare import compare, main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"data": {"max_train_samples": 24, "max_validation_samples": 12, "max_test_samples": 12, "max_length": 32},
        "train": {"epochs": 1, "batch_size": 8}}
COLUMNS = ["strategy", "accuracy", "macro_f1", "trainable_params", "total_params", "cpu_seconds", "run_seconds",
           "train_seconds", "peak_rss_mb", "model_mb", "adapter_mb", "best_epoch"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def table_rows(report: str) -> list[list[str]]:
    """The body rows of the first markdown table."""
    lines = [line for line in report.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.imread(path).shape[0] > 100


def test_all_strategies_in_process(tiny_model_dir, tmp_path):
    recipe = load_recipe("sentiment")
    cfg = recipe.Config(model=tiny_model_dir, **TINY)
    out = tmp_path / "cmp"
    trained = compare("sentiment", cfg, "full,frozen,lora,gradual", out, isolate=False)
    assert [entry.name for entry in trained] == ["full", "frozen", "lora", "gradual"]

    table = read_csv(out / "comparison.csv")
    assert list(table[0]) == COLUMNS
    assert [row["strategy"] for row in table] == ["full", "frozen", "lora", "gradual"]
    by_name = {row["strategy"]: row for row in table}
    total = int(by_name["full"]["total_params"])
    assert int(by_name["full"]["trainable_params"]) == int(by_name["gradual"]["trainable_params"]) == total
    assert int(by_name["frozen"]["trainable_params"]) < int(by_name["lora"]["trainable_params"]) < total
    assert float(by_name["lora"]["adapter_mb"]) < float(by_name["lora"]["model_mb"])
    assert by_name["full"]["adapter_mb"] == "" and by_name["full"]["peak_rss_mb"] == ""  # not measured in-process
    for row in table:
        written = json.loads((out / row["strategy"] / "metrics.json").read_text())
        assert float(row["accuracy"]) == pytest.approx(written["test"]["accuracy"])
        assert written["data"]["examples"] == {"train": 24, "validation": 12, "test": 12}
    # identical splits: every strategy was tested on the same examples
    tested = {row["strategy"]: [json.loads(line)["text"] for line in (out / row["strategy"] / "predictions.jsonl")
                                .read_text().splitlines()] for row in table}
    assert len({tuple(texts) for texts in tested.values()}) == 1

    report = (out / "report.md").read_text()
    rows = table_rows(report)
    assert [row[0] for row in rows] == ["full", "frozen", "lora", "gradual"]
    assert all(len(row) == 10 for row in rows)
    best = max(table, key=lambda row: float(row["accuracy"]))["strategy"]
    assert f"- **accuracy**: `{best}`" in report
    assert "- **speed**: `" in report and "- **size**: `" in report
    for name in ("metric_vs_params.png", "metric_vs_time.png"):
        assert f"]({name})" in report
        assert_png(out / name)


def test_cli_runs_each_strategy_in_its_own_process(tiny_model_dir, reviews_csv, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["recipe=sentiment", "strategies=frozen", f"output_dir={out}", f"model={tiny_model_dir}", "data.name=null",
            f"data.train_file={reviews_csv}", "data.max_length=32", "train.epochs=1", "--quiet"]
    assert main(argv) == 0
    table = read_csv(out / "comparison.csv")
    assert [row["strategy"] for row in table] == ["frozen"]
    assert float(table[0]["peak_rss_mb"]) > 50  # a python process with torch loaded
    assert float(table[0]["cpu_seconds"]) > 0.5
    assert (out / "frozen.yaml").is_file() and (out / "frozen" / "model").is_dir()
    assert main(argv) == 2  # the comparison is there: not overwritten
    assert "already holds a comparison" in capsys.readouterr().err


def test_adaptation_is_compared_with_the_original_checkpoint(tiny_model_dir, tmp_path):
    recipe = load_recipe("adapt")
    cfg = recipe.Config(model=tiny_model_dir, pretrain={"mlm": True, "max_samples": 40, "batch_size": 8}, **TINY)
    out = tmp_path / "cmp"
    trained = compare("adapt", cfg, ["frozen"], out, isolate=False)
    assert [entry.name for entry in trained] == ["frozen+mlm", "frozen"]
    assert trained[0].cfg.model == str(out / "adapted-encoder") and trained[1].cfg.model == tiny_model_dir
    assert (out / "adapted-encoder" / "adaptation.json").is_file()
    report = (out / "report.md").read_text()
    assert "- **domain-adaptive pretraining** with `frozen`: accuracy" in report


@pytest.mark.parametrize(("argv", "message"), [
    (["recipe=sentiment", "strategies=full,finetune"], "strategies must be a comma-separated list"),
    (["recipe=sentiment", "strategies=lora", "train.layer_lr_decay=0.8"], "work with strategy=full or gradual"),
    (["recipe=sentiment", "train.epoch=1"], "unknown option 'train.epoch'"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(argv + [f"output_dir={tmp_path / 'cmp'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "cmp").exists()


def test_help_lists_the_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "strategies=full,frozen,lora,gradual" in out and "isolate=true" in out
