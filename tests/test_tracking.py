"""nlptransfer/tracking.py: log_with=tensorboard writes the loop's scalars and the config as hyperparameters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nlptransfer.config import DataConfig, LoraSettings, RunConfig, TrainConfig, validate
from nlptransfer.errors import ConfigError
from nlptransfer.outputs.tracking import hyperparameters, scalars

pytestmark = pytest.mark.usefixtures("one_thread")


def event_files(folder: Path) -> dict[str, object]:
    """Every TensorBoard event folder under `folder`, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    loaded = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        loaded[str(events.relative_to(folder))] = accumulator
    return loaded


@pytest.fixture(scope="module")
def tracked_run(tiny_model_dir, reviews_csv, tmp_path_factory) -> Path:
    """Two epochs of 3 optimizer steps (48 training reviews, batch 16) with log_with=tensorboard."""
    from nlptransfer.pipeline import run

    output_dir = tmp_path_factory.mktemp("tracked") / "run"
    run(RunConfig(model=tiny_model_dir, output_dir=str(output_dir), log_with="tensorboard",
                  data=DataConfig(train_file=str(reviews_csv), max_length=32),
                  train=TrainConfig(epochs=2, batch_size=16, patience=None)))
    return output_dir


def test_event_file_holds_the_loop_scalars(tracked_run):
    runs = event_files(tracked_run / "tensorboard")
    scalar_runs = [accumulator for accumulator in runs.values() if accumulator.Tags()["scalars"]]
    assert len(scalar_runs) == 1
    events = scalar_runs[0]
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_second", "train/epoch_loss", "validation/accuracy",
            "validation/macro_f1", "test/accuracy", "test/macro_f1"} <= tags
    assert not any("per_class" in tag or "confusion" in tag for tag in tags)  # only scalar metrics
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]  # one per optimizer step
    assert [e.step for e in events.Scalars("validation/accuracy")] == [3, 6]  # one per epoch
    assert all(e.value > 0 for e in events.Scalars("train/samples_per_second"))
    learning_rates = [e.value for e in events.Scalars("train/lr")]
    assert learning_rates == sorted(learning_rates, reverse=True) and learning_rates[0] > 0  # linear decay
    assert events.Scalars("test/accuracy")[0].step == 6


def test_config_is_logged_as_hyperparameters(tracked_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    runs = event_files(tracked_run / "tensorboard")
    sessions = []
    for accumulator in runs.values():
        try:
            content = accumulator.PluginTagToContent("hparams")
        except KeyError:
            continue
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            sessions.append(data.session_start_info.hparams)
    assert len(runs) == 1 and len(sessions) == 1  # one run folder: the HParams view finds the metrics beside them
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert {"test/accuracy", "test/macro_f1"} <= metric_tags <= set(accumulator.Tags()["scalars"])
    hparams = sessions[0]
    assert hparams["train.epochs"].number_value == 2
    assert hparams["strategy"].string_value == "full"
    assert hparams["log_with"].string_value == "tensorboard"
    assert hparams["train.lr"].string_value == "none"


def test_no_tracker_without_log_with(full_run):
    assert not (full_run / "tensorboard").exists()
    assert not any(full_run.rglob("events.out.tfevents.*"))


def test_hyperparameters_are_flat_scalars():
    cfg = RunConfig(lora=LoraSettings(target_modules=["query", "value"]))
    flat = hyperparameters(cfg)
    assert all(isinstance(value, (bool, int, float, str)) for value in flat.values())
    assert flat["lora.target_modules"] == "query,value"
    assert flat["train.lr"] == "none" and flat["train.batch_size"] == 32 and flat["strategy"] == "full"


def test_scalars_leave_out_tables_and_non_finite_values():
    metrics = {"accuracy": 0.5, "macro_f1": 1, "loss": float("nan"), "per_class": {"a": {"f1": 1.0}},
               "confusion_matrix": [[1, 0], [0, 1]], "best": True, "name": "x"}
    assert scalars("validation", metrics) == {"validation/accuracy": 0.5, "validation/macro_f1": 1.0}


def test_unknown_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match="log_with must be one of tensorboard, wandb, mlflow, none"):
        validate(RunConfig(log_with="comet"))
    validate(RunConfig(log_with="none"))
    validate(RunConfig(log_with="tensorboard"))


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_missing_tracker_package_is_named(tracker):
    if importlib.util.find_spec(tracker) is not None:
        pytest.skip(f"{tracker} is installed")
    with pytest.raises(ConfigError, match=f"log_with={tracker} needs the {tracker} package: pip install {tracker}"):
        validate(RunConfig(log_with=tracker))
