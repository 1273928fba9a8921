"""nlptransfer/tuning.py and nlptransfer/cli/sweep.py: the search space's syntax and checks, a sweep of the tiny
checkpoint with a pruned trial, and a killed sweep resumed from its study."""

from __future__ import annotations

import csv
import dataclasses
import json
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from matplotlib import image

from nlptransfer import load_recipe
from nlptransfer.cli.sweep import main, sweep
from nlptransfer.config import load_yaml
from nlptransfer.errors import ConfigError
from nlptransfer.tuning import (
    Dimension,
    Pruning,
    SearchSpace,
    default_pruner,
    is_search_item,
    parse_dimension,
    search,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def reviews_config(model_dir: str, reviews_csv: Path, epochs: int = 2, **options):
    """The sentiment recipe on the 60 reviews: 48 train, 6 validation, 6 test; batches of 16."""
    return load_recipe("sentiment").Config(
        model=model_dir, data={"name": None, "train_file": str(reviews_csv), "max_length": 32,
                               "max_train_samples": None, "max_validation_samples": None},
        train={"epochs": epochs, "batch_size": 16}, **options)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def run_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize(("item", "kind", "values", "distribution"), [
    ("train.lr=loguniform(1e-5,1e-3)", "loguniform", (1e-5, 1e-3),
     optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)),
    ("data.validation_fraction=uniform(0.1, 0.3)", "uniform", (0.1, 0.3),
     optuna.distributions.FloatDistribution(0.1, 0.3)),
    ("train.epochs=int(2,4)", "int", (2, 4), optuna.distributions.IntDistribution(2, 4)),
    ("strategy=choice(full,lora)", "choice", ("full", "lora"), optuna.distributions.CategoricalDistribution(
        ("full", "lora"))),
    ("train.epochs=choice(2,3,4)", "choice", (2, 3, 4), optuna.distributions.CategoricalDistribution((2, 3, 4))),
    ("train.speedups=choice(true,false)", "choice", (True, False), None),
    ("train.lr=choice(null,1e-4)", "choice", (None, 1e-4), None),
])
def test_each_distribution_parses(item, kind, values, distribution):
    assert is_search_item(item)
    dimension = parse_dimension(item)
    assert (dimension.key, dimension.kind) == (item.split("=")[0], kind)
    assert dimension.values == values and [type(v) for v in dimension.values] == [type(v) for v in values]
    if distribution is not None:
        assert dimension.distribution() == distribution
    assert parse_dimension(dimension.text) == dimension  # the text a study stores reads back the same


def test_fixed_values_are_not_search_items():
    for item in ("train.lr=1e-4", "labels.template=This text is about {}.", "strategy=lora", "recipe=sentiment"):
        assert not is_search_item(item)


@pytest.mark.parametrize(("item", "message"), [
    ("train.lr=logunif(1e-5,1e-3)", "unknown distribution 'logunif'; use loguniform(a,b), uniform(a,b)"),
    ("train.lr=loguniform(0,1e-3)", "loguniform's bounds must be positive"),
    ("train.lr=uniform(1e-3)", "uniform takes two bounds"),
    ("train.lr=uniform(1e-3,1e-5)", "the lower bound must be below the upper one"),
    ("train.epochs=int(1.5,3)", "'1.5' is not an integer"),
    ("train.lr=uniform(a,1)", "'a' is not a number"),
    ("strategy=choice(full)", "choice needs at least two different values"),
    ("strategy=choice(full,full)", "choice needs at least two different values"),
])
def test_bad_distributions_are_one_line_errors(item, message):
    with pytest.raises(ConfigError, match="^" + item.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_dimension(item)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("items", "message"), [
    (["train.lrr=loguniform(1e-5,1e-3)"], "search space train.lrr=loguniform(1e-05,0.001), at train.lrr=1e-05: "
                                          "unknown option 'train.lrr'; did you mean: train.lr"),
    (["train.epochs=uniform(1,3)"], "at train.epochs=1.0: bad value for 'train.epochs'"),
    (["train.lr=loguniform(1e-5,1e-3)", "strategy=choice(full,lora)"],
     "at strategy=lora: train.layer_lr_decay and train.head_lr work with strategy=full or gradual"),
    (["data.validation_fraction=uniform(0.1,0.95)"], "at data.validation_fraction=0.95: data.validation_fraction "
                                                     "+ data.test_fraction must leave at least 10%"),
])
def test_the_space_is_checked_against_the_options_before_any_trial(items, message):
    base = load_recipe("sentiment").Config(train={"layer_lr_decay": 0.8})
    with pytest.raises(ConfigError) as error:
        SearchSpace.parse(items).check(base)
    assert message in str(error.value)


def test_the_space_refuses_what_the_sweep_sets_and_repeats():
    for items, message in ([["train.metric_for_best=choice(accuracy,macro_f1)"], "cannot be searched"],
                           [["output_dir=choice(a,b)"], "cannot be searched"],
                           [["train.lr=uniform(1e-5,1e-3)", "train.lr=loguniform(1e-5,1e-3)"], "searched twice"],
                           [[], "no search space"]):
        with pytest.raises(ConfigError, match=message):
            SearchSpace.parse(items)


def test_the_pruning_callback_reports_each_epoch_and_stops_a_poor_trial():
    study = optuna.create_study(direction="maximize", pruner=default_pruner())
    good = study.ask()
    good.report(0.9, 1)
    study.tell(good, 0.9)
    for score, stops in ((0.2, True), (0.95, False)):
        trial = study.ask()
        pruning, loop = Pruning(trial, "accuracy"), SimpleNamespace(state=SimpleNamespace(epoch=2), should_stop=False)
        pruning.on_epoch_end(loop, {"accuracy": score}, train_loss=1.0, improved=True)
        assert study.trials[trial.number].intermediate_values == {1: score}  # epoch 1: the one just finished
        assert loop.should_stop is stops and pruning.pruned_after == (1 if stops else None)
    quiet = Pruning(study.ask(), "accuracy")  # no validation split: nothing to report, nothing stopped
    loop = SimpleNamespace(state=SimpleNamespace(epoch=2), should_stop=False)
    quiet.on_epoch_end(loop, {}, train_loss=1.0, improved=True)
    assert not loop.should_stop


class PruneTrialTwo(optuna.pruners.BasePruner):
    """Prunes trial 2 after its first epoch, and no other: a prune that does not depend on the scores."""

    def prune(self, study, trial) -> bool:
        return trial.number == 2


def test_a_sweep_prunes_a_trial_and_reports_the_best(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "sweep"
    cfg = reviews_config(tiny_model_dir, reviews_csv)
    study = sweep("sentiment", ["train.lr=loguniform(1e-4,3e-3)", "strategy=choice(full,lora)"], cfg, trials=4,
                  output_dir=out, pruner=PruneTrialTwo())

    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert study.study_name == "nlptransfer-sentiment" and (out / "study.db").is_file()
    for trial in trials:  # each trial is a normal run with the trial's values
        folder = out / f"trial-{trial.number}"
        written, metrics = yaml.safe_load((folder / "config.yaml").read_text()), run_metrics(folder)
        assert written["train"]["lr"] == pytest.approx(trial.params["train.lr"])
        assert written["strategy"] == trial.params["strategy"]
        assert len(metrics["epochs"]) == (1 if trial.number == 2 else 2)  # pruned after its first epoch
        assert trial.user_attrs["epochs_run"] == len(metrics["epochs"])
        best_validation = max(epoch["validation"]["accuracy"] for epoch in metrics["epochs"])
        assert trial.user_attrs["best_validation"] == pytest.approx(best_validation)
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(best_validation)
    assert len({t.params["train.lr"] for t in trials}) == 4  # TPE seeded: four different draws

    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    again = load_yaml(load_recipe("sentiment").Config(), out / "best.yaml")
    assert again.train.lr == pytest.approx(best.params["train.lr"]) and again.strategy == best.params["strategy"]
    assert again.output_dir is None and not again.overwrite and again.model == tiny_model_dir

    rows = read_csv(out / "trials.csv")
    assert [(r["trial"], r["state"], r["epochs_run"]) for r in rows] == [
        ("0", "complete", "2"), ("1", "complete", "2"), ("2", "pruned", "1"), ("3", "complete", "2")]
    assert rows[2]["note"] == "pruned after epoch 1"
    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")][2:]  # below the header and the rule
    assert [line.split("|")[2].strip() for line in table] == ["complete", "complete", "pruned", "complete"]
    assert f"Trial {best.number} (`trial-{best.number}/`)" in report and "Selection uses validation only" in report
    test = run_metrics(out / f"trial-{best.number}")["test"]
    assert report.count("Test metrics of trial") == 1 and f"accuracy {test['accuracy']:.4f}" in report
    assert image.imread(out / "optimization_history.png").shape[0] > 100
    assert image.imread(out / "param_importances.png").shape[0] > 100 and "](param_importances.png)" in report


class Unread:
    """Stands in for a trial's test metrics: the selection must never read them."""

    def __getattr__(self, name):
        raise AssertionError("the sweep read a trial's test metrics")

    def __getitem__(self, key):
        raise AssertionError("the sweep read a trial's test metrics")


def finished_process_id() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_killed_sweep_resumes_from_its_study(tiny_model_dir, reviews_csv, tmp_path):
    out, space = tmp_path / "sweep", ["train.lr=loguniform(1e-4,3e-3)"]
    cfg = reviews_config(tiny_model_dir, reviews_csv, epochs=1)
    trained = []

    def run_trial(trial_cfg, inputs):
        trained.append(Path(trial_cfg.output_dir).name)
        results = load_recipe("sentiment").run(trial_cfg, inputs)
        results.test_metrics = Unread()
        return results

    first = search(cfg, space, run_trial, out, trials=2)
    kept = [(t.number, t.state.name, t.params, t.value) for t in first.trials]
    assert trained == ["trial-0", "trial-1"] and [t[1] for t in kept] == ["COMPLETE", "COMPLETE"]
    # killed during its third trial: the trial stays RUNNING, its process is gone
    killed = first.ask(SearchSpace.parse(space).distributions())
    killed.set_user_attr("process", f"{socket.gethostname()}:{finished_process_id()}")

    with pytest.raises(ConfigError, match="continue it with resume=auto"):
        search(cfg, space, run_trial, out, trials=4)
    resumed = search(cfg, space, run_trial, out, trials=4, resume="auto")
    trials = resumed.trials
    assert [(t.number, t.state.name, t.params, t.value) for t in trials[:2]] == kept
    assert [t.state.name for t in trials[2:]] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[3].params == killed.params and trials[3].user_attrs["retry_of"] == 2  # the killed trial, again
    assert trained == ["trial-0", "trial-1", "trial-3", "trial-4"]  # two new runs; 0 and 1 were not retrained
    assert trials[4].params not in [t.params for t in trials[:3]]  # the resumed sampler does not repeat its draws
    best_lr = load_yaml(load_recipe("sentiment").Config(), out / "best.yaml").train.lr
    assert best_lr == pytest.approx(max(trials[:2] + trials[3:], key=lambda t: t.value).params["train.lr"])

    search(cfg, space, run_trial, out, trials=4, resume="auto")  # the study is complete: nothing runs
    assert len(trained) == 4
    with pytest.raises(ConfigError, match="was searched over train.lr=loguniform"):
        search(cfg, ["train.lr=loguniform(1e-5,1e-3)"], run_trial, out, trials=6, resume="auto")
    with pytest.raises(ConfigError, match=r"was searched with other options \(seed: 42 -> 7\)"):
        search(dataclasses.replace(cfg, seed=7), space, run_trial, out, trials=6, resume="auto")


def cli_options(tiny_model_dir: str, reviews_csv: Path, out: Path) -> list[str]:
    return ["recipe=sentiment", f"model={tiny_model_dir}", "data.name=null", f"data.train_file={reviews_csv}",
            f"output_dir={out}", "--quiet"]


@pytest.mark.parametrize(("items", "message"), [
    (["trials=4", "train.lr=logunif(1e-5,1e-3)"], "unknown distribution 'logunif'"),
    (["trials=4", "train.lrr=loguniform(1e-5,1e-3)"], "unknown option 'train.lrr'"),
    (["trials=1", "train.lr=loguniform(1e-5,1e-3)"], "trials=1: a search compares trials, give at least 2"),
    (["trials=4"], "no search space"),
    (["trials=4", "train.lr=loguniform(1e-5,1e-3)", "resume=later"], "a sweep resumes with resume=auto"),
])
def test_bad_sweeps_are_one_line_errors_before_any_trial(items, message, tiny_model_dir, reviews_csv, tmp_path,
                                                         capsys):
    out = tmp_path / "sweep"
    assert main(cli_options(tiny_model_dir, reviews_csv, out) + items) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


def test_another_recipes_study_is_refused(tiny_model_dir, reviews_csv, tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    optuna.create_study(study_name="nlptransfer-topic", storage=f"sqlite:///{out / 'study.db'}")
    capsys.readouterr()  # optuna's own line on the study it created
    argv = cli_options(tiny_model_dir, reviews_csv, out) + ["trials=4", "train.lr=loguniform(1e-5,1e-3)"]
    assert main(argv + ["resume=auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds the study 'nlptransfer-topic', not 'nlptransfer-sentiment'" in err[0]
    assert main(argv) == 2  # and without resume=auto the folder is not touched at all
    assert "continue it with resume=auto, start afresh with overwrite=true" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["study.db"]


@pytest.mark.parametrize("content", [b"not a database, a user's notes\n" * 40, b""])
def test_a_study_file_that_is_not_a_study_database_is_one_line(content, tiny_model_dir, reviews_csv, tmp_path,
                                                                capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "study.db").write_bytes(content or b"SQLite format 3\x00" + b"\xff" * 200)  # b"": a damaged header
    argv = cli_options(tiny_model_dir, reviews_csv, out) + ["trials=4", "train.lr=loguniform(1e-5,1e-3)"]
    assert main(argv + ["resume=auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.db is not a study database a sweep wrote" in err[0], err


def test_help_documents_the_distributions(capsys):
    from nlptransfer.cli.main import main as nlptransfer_command

    assert nlptransfer_command(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("loguniform(a,b)", "uniform(a,b)", "int(a,b)", "choice(x,y,...)", "trials=20", "resume=null",
                 "validation train.metric_for_best", "best.yaml"):
        assert text in out
    assert Dimension("train.lr", "loguniform", (1e-5, 1e-3)).text == "train.lr=loguniform(1e-05,0.001)"


def test_the_plots_name_the_metric_and_show_option_names_whole(tmp_path, monkeypatch):
    """Not Optuna's "Objective Value", and `head.pooling` not cut to "ad.pooling" at the figure's edge."""
    import optuna

    from nlptransfer.cli import sweep
    from nlptransfer.outputs import plots

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: {"mean": 0.5, "cls": 0.3, "max": 0.4}[t.suggest_categorical("head.pooling", [
        "mean", "cls", "max"])] + 100 * t.suggest_float("train.lr", 1e-5, 1e-3, log=True), n_trials=8)
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: saved.setdefault(path.name, figure))
    sweep.write_plots(study, tmp_path, "validation accuracy")
    history, importances = saved["optimization_history.png"], saved["param_importances.png"]
    assert history.axes[0].get_ylabel() == "validation accuracy"
    assert "validation accuracy" in importances.axes[0].get_xlabel()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(importances)  # pyplot.close left the figure without one
    canvas.draw()
    renderer = canvas.get_renderer()
    names = {label.get_text(): label.get_window_extent(renderer) for label in importances.axes[0].get_yticklabels()}
    assert {"head.pooling", "train.lr"} <= set(names)
    assert all(box.x0 >= 0 for box in names.values())
