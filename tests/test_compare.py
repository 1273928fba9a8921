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
           "train_seconds", "peak_rss_mb", "model_mb", "adapter_mb", "best_epoch", "test_examples"]


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


def row(strategy: str, accuracy: float, test_examples: int) -> dict:
    return {"strategy": strategy, "accuracy": accuracy, "macro_f1": accuracy, "trainable_params": 10,
            "total_params": 100, "cpu_seconds": 1.0, "run_seconds": 1.0, "train_seconds": 1.0, "peak_rss_mb": None,
            "model_mb": 1.0, "adapter_mb": None, "best_epoch": 1, "test_examples": test_examples}


def test_a_win_within_the_uncertainty_of_a_small_test_split_is_not_significant():
    from nlptransfer.cli.compare import winners

    lines = winners([row("full", 0.75, 16), row("lora", 0.8125, 16)], "accuracy")
    assert lines[0] == ("- **accuracy**: `lora` (0.8125 on 16 test examples, 95% interval 0.570-0.934); "
                        "not significant: `full` (0.7500) is within the uncertainty, a larger test split would "
                        "tell them apart")
    lines = winners([row("full", 0.75, 20_000), row("lora", 0.8125, 20_000)], "accuracy")
    assert lines[0] == ("- **accuracy**: `lora` (0.8125 on 20,000 test examples, 95% interval 0.807-0.818); "
                        "ahead of `full` (0.7500) by more than the uncertainty")
    lines = winners([row("full", 1.0, 12)], "accuracy")  # no spread at 100%: the interval still has one
    assert lines[0] == "- **accuracy**: `full` (1.0000 on 12 test examples, 95% interval 0.758-1.000)"


def test_wilson_interval():
    from nlptransfer.cli.compare import wilson_interval

    low, high = wilson_interval(0.8125, 16)
    assert (round(low, 3), round(high, 3)) == (0.570, 0.934)
    assert wilson_interval(0.0, 10)[0] == 0.0 and wilson_interval(0.5, 0) == (0.0, 1.0)


def test_the_report_shows_the_uncertainty_of_each_score(tiny_model_dir, tmp_path):
    from nlptransfer.cli.compare import wilson_interval

    recipe = load_recipe("sentiment")
    trained = compare("sentiment", recipe.Config(model=tiny_model_dir, **TINY), "frozen,bitfit", tmp_path / "cmp",
                      isolate=False)
    report = (tmp_path / "cmp" / "report.md").read_text()
    first = table_rows(report)[0]
    accuracy = trained[0].metrics["test"]["accuracy"]
    low, high = wilson_interval(accuracy, 12)
    assert first[1] == f"{accuracy:.4f} ({low:.3f}-{high:.3f})"
    assert "on 12 test examples, 95% interval" in report
    assert int(read_csv(tmp_path / "cmp" / "comparison.csv")[0]["test_examples"]) == 12


@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_output_dir_that_is_a_file_is_one_line(where, capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    out = notes if where == "file" else notes / "cmp"
    assert main(["recipe=sentiment", "strategies=frozen", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: output_dir={out}: {notes} is a file, not a folder; choose another output_dir"]
    assert notes.read_text() == "mine"
