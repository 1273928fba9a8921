"""nlptransfer/cli/curve.py: learning curves with and without the pretrained weights, per strategy, on the same
test split; sizes in examples or in examples per class (few-shot)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from matplotlib import image
from safetensors.torch import load_file

from nlptransfer import load_recipe
from nlptransfer.cli.curve import (
    curve,
    fixed_splits,
    main,
    parse_per_class_sizes,
    parse_sizes,
    plan,
    point_config,
    point_name,
    strategy_names,
)
from nlptransfer.errors import ConfigError
from nlptransfer.strategies import names as registered_strategies

pytestmark = pytest.mark.usefixtures("one_thread")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def texts_tested_in(run_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def trained_labels(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["data"]["examples"]


def reviews_config(model_dir: str, train_file: Path, **options):
    """The sentiment recipe on the reviews (or another file), 1 epoch, batches of 8."""
    return load_recipe("sentiment").Config(
        model=model_dir, data={"name": None, "train_file": str(train_file), "max_length": 32,
                               "max_train_samples": None, "max_validation_samples": None},
        train={"epochs": 1, "batch_size": 8}, **options)


def test_curve_with_and_without_pretraining(tiny_model_dir, reviews_csv, tmp_path):
    cfg = reviews_config(tiny_model_dir, reviews_csv)
    out = tmp_path / "curve"
    table = curve("sentiment", cfg, sizes="6,all", seeds=2, from_scratch=True, scratch_sizes="all",
                  min_steps=3, output_dir=out)

    rows = read_csv(out / "curve.csv")
    assert list(rows[0]) == ["model", "strategy", "size", "seed", "accuracy", "macro_f1", "train_examples", "epochs",
                             "train_seconds"]
    assert {r["strategy"] for r in rows} == {"full"}  # the recipe's strategy
    assert [(r["model"], int(r["size"]), int(r["seed"])) for r in rows] == [
        ("pretrained", 6, 42), ("pretrained", 6, 43), ("pretrained", 48, 42), ("pretrained", 48, 43),
        ("scratch", 48, 42), ("scratch", 48, 43)]
    assert [int(r["epochs"]) for r in rows[:3]] == [3, 3, 1]  # min_steps=3: one step per epoch at 6 examples
    assert len(table) == 6

    runs = [out / f"{r['model']}-full-n{r['size']}-s{r['seed']}" for r in rows]
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
    assert report.count("## Strategy `") == 1 and "## Strategy `full`" in report
    assert "Trained from scratch (strategy full) on 48 examples" in report and "](curve.png)" in report
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

    table = [{"model": "pretrained", "strategy": "full", "size": size, "seed": seed, "accuracy": accuracy,
              "macro_f1": 0.4, "epochs": 1, "train_seconds": 1.0}
             for size, seed, accuracy in ((10, 42, 0.5), (20, 42, 0.6), (20, 43, 0.7))]
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


def test_parse_per_class_sizes():
    assert parse_per_class_sizes("16, 8,32,8") == [8, 16, 32]
    with pytest.raises(ConfigError, match=r"^sizes=all does not combine with per_class=true"):
        parse_per_class_sizes("8,all")
    for bad in ("", "0", "-4", "ten"):
        with pytest.raises(ConfigError, match="sizes"):
            parse_per_class_sizes(bad)


def test_strategies_are_parsed_and_checked(tiny_model_dir, reviews_csv):
    cfg = reviews_config(tiny_model_dir, reviews_csv, strategy="lora")
    assert strategy_names(cfg, None) == ["lora"]  # `strategy=` alone, as before
    assert strategy_names(cfg, " frozen,full,frozen ") == ["frozen", "full"]
    with pytest.raises(ConfigError) as refused:
        strategy_names(cfg, "full,nope")
    assert "\n" not in str(refused.value) and ", ".join(registered_strategies()) in str(refused.value)
    # another strategy's options do not make a run fail: each strategy keeps only its own section ...
    tuned = reviews_config(tiny_model_dir, reviews_csv, lora={"r": 4})
    assert strategy_names(tuned, "full,lora") == ["full", "lora"]
    # ... but `strategy=full lora.r=4` alone is refused as `run` refuses it
    with pytest.raises(ConfigError, match="lora"):
        strategy_names(tuned, None)


def test_plan_runs_each_strategy_and_scratch_with_the_first(tiny_model_dir, reviews_csv):
    assert plan(["frozen", "full"], [8, 16], [16]) == [
        ("pretrained", "frozen", 8), ("pretrained", "frozen", 16), ("pretrained", "full", 8),
        ("pretrained", "full", 16), ("scratch", "frozen", 16)]
    assert plan(["full"], [8], None) == [("pretrained", "full", 8)]
    assert point_name("pretrained", "lora", 8, 42, per_class=True) == "pretrained-lora-n8pc-s42"
    assert point_name("scratch", "full", 200, 43, per_class=False) == "scratch-full-n200-s43"

    cfg = reviews_config(tiny_model_dir, reviews_csv)
    cfg.data.label_names, cfg.data.max_train_samples = ["neg", "neu", "pos"], 30
    point = point_config(cfg, 4, 43, 54, min_steps=6, per_class=True)
    assert (point.data.examples_per_class, point.data.max_train_samples, point.seed) == (4, None, 43)
    assert point.train.epochs == 3  # 4 per class x 3 classes = 12 examples: 2 steps of 8 per epoch
    total = point_config(cfg, 12, 42, 54, min_steps=6)
    assert (total.data.examples_per_class, total.data.max_train_samples, total.train.epochs) == (None, 12, 3)


def test_per_class_splits_keep_the_test_split_and_carve_no_validation(tiny_model_dir, reviews_csv, tmp_path):
    cfg = reviews_config(tiny_model_dir, reviews_csv)
    usual, _, _ = fixed_splits(cfg, tmp_path / "usual")
    few_shot, available, counts = fixed_splits(cfg, tmp_path / "few-shot", per_class=True)
    read = lambda path: pd.read_parquet(path).sort_values("text").reset_index(drop=True)
    pd.testing.assert_frame_equal(read(few_shot.data.test_file), read(usual.data.test_file))
    assert few_shot.data.validation_file is None
    assert not (tmp_path / "few-shot" / "data" / "validation.parquet").exists()
    # what would have been the validation split is training data the samples are drawn from
    pooled = pd.concat([read(usual.data.train_file), read(usual.data.validation_file)])
    assert sorted(read(few_shot.data.train_file)["text"]) == sorted(pooled["text"])
    assert available == 54 and counts == {"neg": 18, "neu": 18, "pos": 18}


def test_refusals_are_one_line_and_train_nothing(tiny_model_dir, reviews_csv, tmp_path, capsys):
    common = ["recipe=sentiment", f"model={tiny_model_dir}", "data.name=null", f"data.train_file={reviews_csv}"]
    assert main(common + ["strategies=full,lorra", f"output_dir={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: strategies must be") and "lora" in err and "lorra" in err and "\n" not in err
    assert main(common + ["sizes=8,all", "per_class=true", f"output_dir={tmp_path / 'b'}"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: sizes=all does not combine with per_class=true")
    for options, message in ((["min_steps=-1"], "error: min_steps must be 0 (the recipe's epochs) or more; got -1"),
                             (["strategies=full,zeroshot"], "error: strategy=zeroshot learns nothing from the labeled "
                                                            "examples, so its learning curve is flat"),
                             (["strategy=zeroshot"], "error: strategy=zeroshot learns nothing")):
        assert main(common + options + [f"output_dir={tmp_path / 'refused'}"]) == 2
        assert capsys.readouterr().err.strip().startswith(message)
        assert not (tmp_path / "refused").exists()

    rows = pd.read_csv(reviews_csv)  # make 'neu' the rarest class
    skewed = tmp_path / "skewed.csv"
    pd.concat([rows[rows["label"] != "neu"], rows[rows["label"] == "neu"].head(9)]).to_csv(skewed, index=False)
    out = tmp_path / "c"
    assert main(common[:-1] + [f"data.train_file={skewed}", "sizes=4,9", "per_class=true", f"output_dir={out}"]) == 2
    rarest = Counter(pd.read_parquet(out / "data" / "train.parquet")["label"])["neu"]
    assert rarest < 9
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: sizes=9 per class is more than the {rarest} training examples of class 'neu' (the rarest); "
        f"give sizes of at most {rarest}")
    assert not [path for path in out.iterdir() if path.name.startswith("pretrained")]


def test_few_shot_curves_of_two_strategies(tiny_model_dir, reviews_csv, tmp_path, capsys):
    out = tmp_path / "curve"
    assert main(["recipe=sentiment", f"model={tiny_model_dir}", "data.name=null", f"data.train_file={reviews_csv}",
                 "data.max_length=32", "train.epochs=1", "train.batch_size=8", "freeze.layers=1",
                 "strategies=full,frozen", "sizes=2", "per_class=true", "seeds=1", f"output_dir={out}", "--quiet"]) == 0

    rows = read_csv(out / "curve.csv")
    assert [(r["model"], r["strategy"], r["size"], r["train_examples"]) for r in rows] == [
        ("pretrained", "full", "2", "6"), ("pretrained", "frozen", "2", "6")]
    for strategy in ("full", "frozen"):
        run_dir = out / f"pretrained-{strategy}-n2pc-s42"
        assert trained_labels(run_dir) == {"train": 6, "validation": 0, "test": 6}  # 2 per class, no validation
        assert sorted(Counter(drawn_training_split(run_dir).labels).values()) == [2, 2, 2]
        assert texts_tested_in(run_dir) == texts_tested_in(out / "pretrained-full-n2pc-s42")
    # `freeze.layers=1` is full's option: the frozen run neither fails on it nor records it
    saved = {s: yaml.safe_load((out / f"pretrained-{s}-n2pc-s42" / "config.yaml").read_text())
             for s in ("full", "frozen")}
    assert saved["full"]["freeze"]["layers"] == 1 and saved["frozen"]["freeze"]["layers"] == 0
    assert saved["frozen"]["strategy"] == "frozen"

    report = (out / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections == ["## Strategy `full`", "## Strategy `frozen`"]
    assert "| labeled examples per class |" in report and "no validation split" in report
    for section in report.split("## ")[1:]:
        assert len([line for line in section.splitlines() if line.startswith("| pretrained | 2 | 1 |")]) == 1
    assert image.imread(out / "curve.png").shape[0] > 100


def test_plot_draws_a_line_per_strategy_over_examples_per_class(monkeypatch, tmp_path):
    from nlptransfer.cli import curve as module
    from nlptransfer.outputs import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure))
    table = [{"model": model, "strategy": strategy, "size": size, "seed": 42, "accuracy": 0.5}
             for model, strategy in (("pretrained", "frozen"), ("pretrained", "full"), ("scratch", "frozen"))
             for size in (8, 16)]
    module.plot(module.summary(table, "accuracy"), table, "accuracy", tmp_path / "curve.png", per_class=True)
    axes = figures[0].axes[0]
    assert axes.get_xlabel() == "labeled examples per class"
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "frozen: mean, min-max band", "full: mean, min-max band", "scratch (frozen): mean, min-max band",
        "scratch on 16 examples per class"]
    module.plot(module.summary(table[:2], "accuracy"), table[:2], "accuracy", tmp_path / "curve.png")
    assert figures[1].axes[0].get_xlabel() == "labeled training examples"
