"""nlptransfer/curve.py: a learning curve with and without the pretrained weights, on the same test split."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from matplotlib import image
from safetensors.torch import load_file

from nlptransfer import load_recipe
from nlptransfer.cli.curve import curve, main, parse_sizes
from nlptransfer.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def texts_tested_in(run_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def trained_labels(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["data"]["examples"]


def test_curve_with_and_without_pretraining(tiny_model_dir, reviews_csv, tmp_path):
    recipe = load_recipe("sentiment")
    cfg = recipe.Config(model=tiny_model_dir, data={"name": None, "train_file": str(reviews_csv), "max_length": 32,
                                                    "max_train_samples": None, "max_validation_samples": None},
                        train={"epochs": 1, "batch_size": 8})
    out = tmp_path / "curve"
    table = curve("sentiment", cfg, sizes="6,all", seeds=2, from_scratch=True, scratch_sizes="all",
                  min_steps=3, output_dir=out)

    rows = read_csv(out / "curve.csv")
    assert list(rows[0]) == ["model", "size", "seed", "accuracy", "macro_f1", "epochs", "train_seconds"]
    assert [(r["model"], int(r["size"]), int(r["seed"])) for r in rows] == [
        ("pretrained", 6, 42), ("pretrained", 6, 43), ("pretrained", 48, 42), ("pretrained", 48, 43),
        ("scratch", 48, 42), ("scratch", 48, 43)]
    assert [int(r["epochs"]) for r in rows[:3]] == [3, 3, 1]  # min_steps=3: one step per epoch at 6 examples
    assert len(table) == 6

    runs = [out / f"{r['model']}-n{r['size']}-s{r['seed']}" for r in rows]
    test_split = texts_tested_in(runs[0])
    for run_dir, row in zip(runs, rows):
        assert texts_tested_in(run_dir) == test_split  # one test split for every point
        assert trained_labels(run_dir) == {"train": int(row["size"]), "validation": 6, "test": 6}
    subsets = [drawn_training_split(run_dir) for run_dir in runs[:2]]
    assert set(subsets[0].texts) != set(subsets[1].texts)  # each seed draws its own subset ...
    for subset in subsets:  # ... stratified: 2 of each of the 3 classes
        assert sorted(Counter(subset.labels).values()) == [2, 2, 2]

    scratch = load_file(str(out / "scratch-init-s42" / "model.safetensors"))
    pretrained = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert set(scratch) == set(pretrained) and all(scratch[k].shape == pretrained[k].shape for k in scratch)
    assert not torch.equal(scratch["encoder.layer.0.attention.self.query.weight"],
                           pretrained["encoder.layer.0.attention.self.query.weight"])

    report = (out / "report.md").read_text()
    body = [line for line in report.splitlines() if line.startswith("| pretrained") or line.startswith("| scratch")]
    assert [line.split("|")[1:4] for line in body] == [
        [" pretrained ", " 6 ", " 2 "], [" pretrained ", " 48 ", " 2 "], [" scratch ", " 48 ", " 2 "]]
    assert "Trained from scratch on 48 examples" in report and "](curve.png)" in report
    assert image.imread(out / "curve.png").shape[0] > 100

    # finished points are reused, not trained again
    stamp = (runs[0] / "metrics.json").stat().st_mtime_ns
    again = curve("sentiment", cfg, sizes="6", seeds=1, min_steps=3, output_dir=out, overwrite=True)
    assert (runs[0] / "metrics.json").stat().st_mtime_ns == stamp and again[0] == table[0]


def drawn_training_split(run_dir: Path):
    """The training examples a point drew, read back the way its run drew them."""
    from nlptransfer.config import load_yaml
    from nlptransfer.data.classification import load_classification

    cfg = load_yaml(load_recipe("sentiment").Config(), run_dir / "config.yaml")
    return load_classification(cfg.data, cfg.seed).train


def test_parse_sizes():
    assert parse_sizes("200, 50,all,50", 1000) == [50, 200, 1000]
    assert parse_sizes("5000", 1000) == [1000]
    for bad in ("", "0", "ten"):
        with pytest.raises(ConfigError, match="sizes"):
            parse_sizes(bad, 1000)


def test_cli_errors_and_help(capsys, tmp_path):
    assert main(["recipe=sentiment", "sizes=10,x", f"output_dir={tmp_path}"]) == 2
    assert "sizes must be positive numbers" in capsys.readouterr().err
    assert main(["recipe=ner", "sizes=10", f"output_dir={tmp_path}"]) == 2
    assert "curve supports task=classification" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "from_scratch=false" in capsys.readouterr().out


def test_a_single_seed_reports_n_1_not_a_zero_spread(tmp_path):
    from nlptransfer.cli.curve import summary, write_report
    from nlptransfer.config import RunConfig

    table = [{"model": "pretrained", "size": 10, "seed": 42, "accuracy": 0.5, "macro_f1": 0.4, "epochs": 1,
              "train_seconds": 1.0},
             {"model": "pretrained", "size": 20, "seed": 42, "accuracy": 0.6, "macro_f1": 0.5, "epochs": 1,
              "train_seconds": 1.0},
             {"model": "pretrained", "size": 20, "seed": 43, "accuracy": 0.7, "macro_f1": 0.6, "epochs": 1,
              "train_seconds": 1.0}]
    assert [point["std"] for point in summary(table, "accuracy")] == [None, pytest.approx(0.0707107)]
    write_report(table, RunConfig(), "accuracy", tmp_path, 20, {"validation": 5, "test": 6})
    rows = [line.split("|")[1:-1] for line in (tmp_path / "report.md").read_text().splitlines()
            if line.startswith("| pretrained")]
    assert [cell.strip() for cell in rows[0]] == ["pretrained", "10", "1", "0.5000", "n=1", "0.5000", "0.5000"]
    assert rows[1][4].strip() == "0.0707"


def test_output_dir_that_is_a_file_is_one_line(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["recipe=sentiment", "sizes=10", f"output_dir={notes}"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: output_dir={notes}: {notes} is a file, not a folder; "
                                               "choose another output_dir")
    assert notes.read_text() == "mine"
