"""nlptransfer/api.py: `run` from Python on in-memory data, model objects and callbacks of one's own; what
`Results` holds; `from nlptransfer import run`; the console across runs in one process; bad inputs."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
import transformers
from test_run import USER_RECIPE  # a user's recipe: the tiny checkpoint on the reviews, 2 steps

from nlptransfer import Callback, ConfigError, DataError, NlpTransferError, RunConfig, load_recipe, run
from nlptransfer.cli.run import configure_console
from nlptransfer.config import DataConfig, TrainConfig
from nlptransfer.data.conll import read_conll
from nlptransfer.outputs.console import console_level, progress_bars_shown, set_console, show_progress_bars
from nlptransfer.predictor import load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

ASSETS = Path(__file__).parent / "assets"
QUICK = {"train": {"epochs": 1, "batch_size": 8, "max_steps": 2}, "data_options": {"max_length": 32}}
"""Two steps of the tiny model on 32-token inputs: a run takes a second or two."""


@pytest.fixture(scope="module")
def reviews(reviews_csv) -> pd.DataFrame:
    return pd.read_csv(reviews_csv)


@pytest.fixture
def restore_console():
    level, shown = console_level(), progress_bars_shown()
    yield
    set_console(level)
    show_progress_bars(shown)


def metrics_of(results) -> dict:
    return json.loads((results.output_dir / "metrics.json").read_text())


def split_parts(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The 60 reviews as 42 train / 9 validation / 9 test rows, each class in each split."""
    ordered = frame.sort_values("label", kind="stable").reset_index(drop=True)
    position = ordered.groupby("label").cumcount()
    return {"train": ordered[position < 14], "validation": ordered[(position >= 14) & (position < 17)],
            "test": ordered[position >= 17]}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, NlpTransferError) and "\n" not in message
    return message


# in-memory data


def test_dataframe_with_own_column_names(tiny_model_dir, reviews, tmp_path):
    frame = reviews.rename(columns={"text": "review", "label": "stars"})
    results = run(data=frame, model=tiny_model_dir, output_dir=str(tmp_path / "run"), train=QUICK["train"],
                  data_options={"text_column": "review", "label_column": "stars", "max_length": 32})
    assert results.config.data.text_column == "review" and results.config.data.max_length == 32
    assert list(results.model.config.id2label.values()) == ["neg", "neu", "pos"]
    data = metrics_of(results)["data"]
    assert data["source"] == "in-memory DataFrame (60 rows)" and sum(data["examples"].values()) == 60
    assert len(results.predictions_frame) == data["examples"]["test"]
    assert set(results.predictions_frame["text"]) <= set(frame["review"])
    assert "data: in-memory DataFrame (60 rows)" in (results.output_dir / "train.log").read_text()


def test_dataframe_on_a_recipe_replaces_the_recipes_corpus(tiny_model_dir, reviews, tmp_path):
    results = run(recipe="sentiment", data=reviews, model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    assert results.config.recipe == "sentiment" and results.config.data.name is None  # not the tweets corpus
    assert "name: null" in (results.output_dir / "config.yaml").read_text()
    assert metrics_of(results)["data"]["source"].startswith("in-memory DataFrame")


def test_dataset_with_a_classlabel_column_names_the_labels(tiny_model_dir, reviews, tmp_path):
    names = ["pos", "neu", "neg"]  # not sorted: the names and their order come from the ClassLabel
    dataset = datasets.Dataset.from_dict(
        {"text": reviews["text"].tolist(), "label": [names.index(label) for label in reviews["label"]]},
        features=datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}))
    results = run(data=dataset, model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    assert list(results.model.config.id2label.values()) == names
    assert set(results.predictions_frame["label"]) <= set(names)
    assert metrics_of(results)["data"]["label_names"] == names


def test_datasetdict_with_a_dev_split_keeps_its_splits(tiny_model_dir, reviews, tmp_path):
    parts = split_parts(reviews)
    dataset = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(parts["train"], preserve_index=False),
                                    "dev": datasets.Dataset.from_pandas(parts["validation"], preserve_index=False),
                                    "test": datasets.Dataset.from_pandas(parts["test"], preserve_index=False)})
    results = run(data=dataset, model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    assert metrics_of(results)["data"]["examples"] == {"train": 42, "validation": 9, "test": 9}
    assert sorted(results.predictions_frame["text"]) == sorted(parts["test"]["text"])


def test_texts_and_labels_lists(tiny_model_dir, reviews, tmp_path):
    texts, labels = reviews["text"].tolist(), reviews["label"].tolist()
    results = run(data=(texts, labels), model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    data = metrics_of(results)["data"]
    assert data["source"] == "in-memory lists (60 examples)" and sum(data["examples"].values()) == 60
    assert len(results.predictions_frame) == data["examples"]["test"]


def test_a_list_of_records(tiny_model_dir, reviews, tmp_path):
    records = reviews[["text", "label"]].to_dict("records")
    results = run(data=records, model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    data = metrics_of(results)["data"]
    assert data["source"] == "in-memory records (60 examples)" and sum(data["examples"].values()) == 60


def test_dict_of_splits_in_any_form(tiny_model_dir, reviews, tmp_path):
    parts = split_parts(reviews)
    test_columns = {"text": parts["test"]["text"].tolist(), "label": parts["test"]["label"].tolist()}
    data = {"train": parts["train"], "validation": (parts["validation"]["text"], parts["validation"]["label"]),
            "test": test_columns}
    results = run(data=data, model=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    assert metrics_of(results)["data"]["examples"] == {"train": 42, "validation": 9, "test": 9}
    assert results.predictions_frame["text"].tolist() == test_columns["text"]


def test_ner_from_a_dataframe_of_words_and_tags(tiny_model_dir, tmp_path):
    sentences = read_conll(ASSETS / "ner_tiny.conll")
    frame = pd.DataFrame({"words": [s.words for s in sentences], "ner": [s.tags for s in sentences]})
    results = run(recipe="ner", data=frame, model=tiny_model_dir, output_dir=str(tmp_path / "run"),
                  data_options={"tokens_column": "words", "tags_column": "ner", "max_length": 32},
                  train={"epochs": 1, "batch_size": 8, "max_steps": 2})
    data = metrics_of(results)["data"]
    assert data["label_names"][0] == "O" and "B-person" in data["label_names"]
    assert len(results.predictions_frame) == data["sentences"]["test"]
    assert set(results.predictions_frame.columns) == {"words", "tags", "predicted"}
    assert "entities" in results.predict(["mary jones went to london"])[0]


# model objects


def test_model_and_tokenizer_objects(tiny_model_dir, reviews, tmp_path):
    model = transformers.BertModel.from_pretrained(tiny_model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    results = run(data=reviews, model=model, tokenizer=tokenizer, output_dir=str(tmp_path / "run"), **QUICK)
    assert results.config.model == tiny_model_dir  # named after where the object came from
    assert type(results.model).__name__ == "BertForSequenceClassification"
    assert (results.model_dir / "tokenizer_config.json").is_file()
    assert results.predict(["a great movie"])[0]["label"] in ("neg", "neu", "pos")


def test_a_model_object_with_a_head_for_other_labels_gets_a_new_head(tiny_model_dir, reviews, tmp_path):
    model = transformers.BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    results = run(data=reviews, model=model, tokenizer=tiny_model_dir, output_dir=str(tmp_path / "run"), **QUICK)
    assert list(results.model.config.id2label.values()) == ["neg", "neu", "pos"]


def test_model_object_without_its_tokenizer_is_refused_before_anything_is_written(tiny_model_dir, reviews,
                                                                                  tmp_path):
    model = transformers.BertModel.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError) as excinfo:
        run(data=reviews, model=model, output_dir=str(tmp_path / "run"), **QUICK)
    assert "pass its tokenizer too" in one_line_error(excinfo)
    assert not (tmp_path / "run").exists()


def test_objects_inside_a_config_are_refused_before_anything_is_written(tiny_model_dir, reviews, tmp_path):
    model = transformers.BertModel.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError) as excinfo:
        run(RunConfig(model=model, output_dir=str(tmp_path / "run"), data=DataConfig(max_length=32),
                      train=TrainConfig(epochs=1, max_steps=2)), data=reviews)
    assert "model=..., tokenizer=..." in one_line_error(excinfo)
    with pytest.raises(ConfigError) as excinfo:
        run(RunConfig(model=tiny_model_dir, output_dir=str(tmp_path / "run"), data=DataConfig(train_file=reviews)))
    assert "data.train_file takes a file path" in one_line_error(excinfo)
    with pytest.raises(ConfigError) as excinfo:
        load_recipe("sentiment").Config(data={"train_file": reviews})
    assert "'data.train_file' takes a plain value" in one_line_error(excinfo) and "data=..." in str(excinfo.value)
    assert not (tmp_path / "run").exists()


# callbacks


class StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, loop, metrics, train_loss, improved):
        loop.should_stop = True


class StepLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, loop, loss, lr):
        self.losses.append(loss.item())


def test_callbacks_stop_training_and_see_every_step(tiny_model_dir, reviews, tmp_path):
    losses = StepLosses()
    results = run(data=reviews, model=tiny_model_dir, output_dir=str(tmp_path / "run"), data_options={"max_length": 32},
                  train={"epochs": 3, "batch_size": 16, "patience": None},
                  callbacks=[StopAfterFirstEpoch(), losses])
    assert [epoch["epoch"] for epoch in results.history] == [1]
    assert len(losses.losses) == results.timing["optimizer_steps"] == math.ceil(48 / 16)
    assert all(math.isfinite(loss) for loss in losses.losses)


def test_a_callback_that_is_no_callback_is_refused(tiny_model_dir, reviews, tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        run(data=reviews, model=tiny_model_dir, output_dir=str(tmp_path / "run"), callbacks=[print], **QUICK)
    assert "nlptransfer.Callback" in one_line_error(excinfo)
    assert not (tmp_path / "run").exists()


def test_a_user_recipe_with_run_of_one_argument(tiny_model_dir, reviews_csv, reviews, tmp_path):
    recipe = tmp_path / "reviews_recipe.py"
    recipe.write_text(USER_RECIPE.format(model=tiny_model_dir, train_file=str(reviews_csv)))
    results = run(recipe=str(recipe), output_dir=str(tmp_path / "run"))
    assert results.config.recipe == "reviews" and results.test_metrics["accuracy"] >= 0
    with pytest.raises(ConfigError) as excinfo:
        run(recipe=str(recipe), data=reviews, output_dir=str(tmp_path / "other"))
    assert "takes no in-memory data" in one_line_error(excinfo)


# results


@pytest.fixture(scope="module")
def trained(tiny_model_dir, reviews, tmp_path_factory):
    """A run that learned something (10 epochs at 3e-3, under a second): its predictions differ between texts."""
    return run(data=reviews, model=tiny_model_dir, output_dir=str(tmp_path_factory.mktemp("trained") / "run"),
               data_options={"max_length": 32},
               train={"epochs": 10, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "patience": None})


def test_the_model_object_predict_and_load_model_agree(trained, reviews):
    texts = reviews["text"].tolist()[::6]
    tokenizer, model = trained.tokenizer, trained.model.eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits
    by_object = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    by_results = trained.predict(texts)
    by_folder = load_model(trained.model_dir).predict(texts)
    assert len(set(by_object)) > 1  # a model that tells the texts apart
    assert [row["label"] for row in by_results] == by_object == [row["label"] for row in by_folder]
    assert [row["score"] for row in by_results] == pytest.approx([row["score"] for row in by_folder])
    assert trained.predict("one text")[0]["text"] == "one text"


def test_results_hold_predictions_metrics_history_and_paths(trained):
    frame = trained.predictions_frame
    saved = [json.loads(line) for line in (trained.output_dir / "predictions.jsonl").read_text().splitlines()]
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(saved) == metrics_of(trained)["data"]["examples"]["test"]
    assert list(frame.columns) == ["text", "label", "predicted", "score"]
    assert frame.to_dict("records") == saved
    assert trained.test_metrics == metrics_of(trained)["test"]
    assert [epoch["epoch"] for epoch in trained.history] == list(range(1, 11))
    assert trained.model_dir == trained.output_dir / "model" and trained.config.train.lr == 3e-3


# `from nlptransfer import run`


def test_run_is_the_function_also_after_importing_the_command_module(tiny_model_dir, reviews_csv, tmp_path):
    script = textwrap.dedent("""
        import inspect, sys
        import nlptransfer
        from nlptransfer import load_recipe, run

        def config(folder):
            return load_recipe("sentiment").Config(
                model=sys.argv[1], output_dir=folder, data={"name": None, "train_file": sys.argv[2], "max_length": 32},
                train={"epochs": 1, "max_steps": 1})

        assert inspect.isfunction(run) and nlptransfer.run is run
        assert nlptransfer.run(config(sys.argv[3] + "/before")).test_metrics
        import nlptransfer.run  # the `python -m nlptransfer.run` command
        from nlptransfer import run as again
        assert again is run and nlptransfer.run is run and callable(nlptransfer.run)
        assert nlptransfer.run(config(sys.argv[3] + "/after")).test_metrics
        assert inspect.isfunction(sys.modules["nlptransfer.run"].main)
        print("ok")
    """)
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, tiny_model_dir, str(reviews_csv), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    assert (tmp_path / "before" / "metrics.json").is_file() and (tmp_path / "after" / "metrics.json").is_file()


def test_run_is_the_function_in_this_process():
    import nlptransfer.run  # the import system binds the command module to the package (nlptransfer._Package)

    assert inspect.isfunction(nlptransfer.run) and nlptransfer.run is run


# the console across runs


@pytest.mark.parametrize("choose", ["set_console", "quiet"])
def test_the_console_level_chosen_before_the_first_run_holds_in_the_second(choose, tiny_model_dir, reviews, tmp_path,
                                                                          capsys, restore_console):
    if choose == "set_console":
        set_console(logging.WARNING)
    else:
        configure_console(quiet=True)  # the CLI's --quiet: no bars either
    for name in ("first", "second"):
        run(data=reviews, model=tiny_model_dir, output_dir=str(tmp_path / name), **QUICK)
        err = capsys.readouterr().err
        assert "config:" not in err and "epoch 1" not in err and "test (best epoch" not in err, name
        if choose == "quiet":
            assert err.strip() == "", name
        assert "epoch 1: train loss" in (tmp_path / name / "train.log").read_text()


def test_a_run_in_a_fresh_process_shows_its_lines_and_leaves_logging_as_it_was(tiny_model_dir, reviews_csv,
                                                                                 tmp_path):
    # a fresh process, as a notebook's kernel: nothing handles nlptransfer's records but the run itself
    script = textwrap.dedent("""
        import logging, sys, warnings
        import pandas as pd
        import transformers
        from nlptransfer import run

        model_dir, frame, out = sys.argv[1], pd.read_csv(sys.argv[2]), sys.argv[3]
        quick = {"train": {"epochs": 1, "batch_size": 8, "max_steps": 2}, "data_options": {"max_length": 32}}
        package = logging.getLogger("nlptransfer")
        for name in ("first", "second"):
            before = (package.level, package.propagate, list(package.handlers), transformers.logging.get_verbosity(),
                      transformers.utils.logging.is_progress_bar_enabled(), len(warnings.filters))
            print(f"===== {name}", file=sys.stderr, flush=True)
            run(data=frame, model=model_dir, output_dir=f"{out}/{name}", **quick)
            after = (package.level, package.propagate, list(package.handlers), transformers.logging.get_verbosity(),
                     transformers.utils.logging.is_progress_bar_enabled(), len(warnings.filters))
            assert after == before or name == "first" and after[:5] == before[:5], (before, after)
    """)
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, tiny_model_dir, str(reviews_csv), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _, first, second = done.stderr.split("===== ")
    for name, err in (("first", first), ("second", second)):
        assert "config: recipe custom" in err and "epoch 1: train loss" in err, name  # the run's own lines
        assert "resolved config:" not in err, name  # DEBUG: train.log only
        assert "resolved config:" in (tmp_path / name / "train.log").read_text(), name


# bad inputs


@pytest.mark.parametrize("data, options, error, message", [
    (42, {}, DataError, "data= takes a pandas DataFrame"),
    ({"train": "reviews", "holdout": "reviews"}, {}, DataError, "split named 'holdout'"),
    ({"training": "reviews"}, {}, DataError, "split named 'training'"),
    ((["a good movie", "a bad movie"], ["pos"]), {}, DataError, "2 texts but 1 labels"),
    ({"text": ["a", "b", "c"], "label": ["x", "y"]}, {}, DataError, "columns differ in length"),
    ([], {}, DataError, "data= is an empty list"),
    (["a good movie", "a bad movie", "fine"], {}, DataError, "data= as a list takes records"),
    ([{"text": "a", "label": "x"}, {"text": "b"}], {}, DataError, "record 2 has no 'label'"),
    ("reviews", {"data_options": {"train_file": "reviews.csv"}}, ConfigError,
     "data= gives the data and data_options names data.train_file='reviews.csv' too; pass one of them"),
    ("reviews", {"data_options": DataConfig(name="tweets")}, ConfigError, "data_options names data.name='tweets'"),
    ({"max_length": 32}, {}, DataError, "data_options="),
    (DataConfig(max_length=32), {}, DataError, "data_options="),
    ("reviews", {"strategi": "lora"}, ConfigError, "unknown option 'strategi'; did you mean strategy"),
    ("reviews", {"strategi": "lora"}, ConfigError, "(python -m nlptransfer.run --help lists every option)"),
    ("reviews", {"callback": []}, ConfigError, "did you mean callbacks"),
    ("reviews", {"text_column": "review"}, ConfigError, "'text_column' is a data option: pass data_options="),
    ("reviews", {"train": {"epoch": 1}}, ConfigError, "unknown option 'train.epoch'; did you mean: train.epochs"),
    ("reviews", {"data_options": {"text_colum": "review"}}, ConfigError, "did you mean: data.text_column"),
    ("reviews", {"tokenizer": "bert-base-uncased"}, ConfigError, "tokenizer= goes with a model object"),
])
def test_bad_inputs_are_one_line_errors_before_anything_is_written(data, options, error, message, tiny_model_dir,
                                                                     reviews, tmp_path):
    if isinstance(data, dict):
        data = {key: reviews if isinstance(value, str) and value == "reviews" else value for key, value in data.items()}
    elif isinstance(data, str) and data == "reviews":
        data = reviews
    options = {"model": tiny_model_dir, "output_dir": str(tmp_path / "run")} | options
    with pytest.raises(error) as excinfo:
        run(data=data, **options)
    assert message in one_line_error(excinfo)
    assert not (tmp_path / "run").exists()
