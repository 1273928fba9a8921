"""Sequential (intermediate-task) transfer: `model=runs/A` fine-tunes run A's encoder under a new head for another
task, and the run's log, metrics.json and card say which run the encoder came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import ASSETS, NER_LABELS
from safetensors.torch import load_file

from nlptransfer import catalog, models, tasks
from nlptransfer.cli import run as run_command
from nlptransfer.engine.loop import Callback
from nlptransfer.hub import lineage
from nlptransfer.hub.card import metadata, run_card
from nlptransfer.pipeline import Inputs, run

pytestmark = pytest.mark.usefixtures("one_thread")

ENCODER_WEIGHT = "bert.embeddings.word_embeddings.weight"


def saved_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def unfinished(tmp: Path, full_run: Path) -> Path:
    """A copy of a finished run killed before it finished: no metrics.json."""
    folder = shutil.copytree(full_run, tmp / "killed")
    (folder / "metrics.json").unlink()
    return folder


def ensemble_folder(tmp: Path, full_run: Path) -> Path:
    (tmp / "ensemble").mkdir()
    (tmp / "ensemble" / "ensemble.json").write_text("{}")
    return tmp / "ensemble"


def without_model(tmp: Path, full_run: Path) -> Path:
    folder = shutil.copytree(full_run, tmp / "no-model")
    shutil.rmtree(folder / "model")
    return folder


@pytest.mark.parametrize("name", ["folder", "folder/model"])
def test_a_run_folder_as_model_is_its_model_folder(full_run, name):
    model = str(full_run) if name == "folder" else str(full_run / "model")
    assert catalog.resolve_model(model) == str(full_run / "model")
    assert lineage.source_run(model) == full_run
    assert catalog.resolve_model(str(full_run.parent)) == str(full_run.parent)  # no run folder: passes through


@pytest.mark.parametrize("task, labels", [("token-classification", NER_LABELS), ("multilabel", ["x", "y"]),
                                          ("classification", ["neg", "neu", "pos"])])
def test_the_encoder_carries_over_and_the_head_is_new(full_run, task, labels):
    saved = saved_weights(full_run)
    model = models.load_model(str(full_run), tasks.get(task), labels)
    state = model.state_dict()
    for key in (ENCODER_WEIGHT, "bert.encoder.layer.1.output.dense.weight"):
        assert torch.equal(state[key], saved[key]), key
    assert model.classifier.out_features == len(labels)
    assert not torch.equal(model.classifier.bias, saved["classifier.bias"][:len(labels)])  # not A's head, even with
    assert torch.all(model.classifier.bias == 0)  # A's label count: a fresh one, as transformers initializes a head


def test_an_adapter_run_gives_its_merged_model(lora_run):
    model = models.load_model(str(lora_run), tasks.get("token-classification"), NER_LABELS)
    merged = "bert.encoder.layer.0.attention.self.query.weight"  # a LoRA target: its update merged in
    for key in (ENCODER_WEIGHT, merged):
        assert torch.equal(model.state_dict()[key], saved_weights(lora_run)[key]), key
    assert model.classifier.out_features == len(NER_LABELS)


def test_an_ner_run_then_classification(ner_run):
    model = models.load_model(str(ner_run), tasks.get("classification"), ["a", "b"])
    assert torch.equal(model.state_dict()[ENCODER_WEIGHT], saved_weights(ner_run)[ENCODER_WEIGHT])
    assert model.classifier.out_features == 2
    source = lineage.encoder_source(str(ner_run))
    assert source["task"] == "token-classification" and source["test_metric"] == "f1"
    assert source["test_value"] == pytest.approx(1 / 3)


def test_a_pooled_run_gives_its_encoder_to_a_tagger(tmp_path, full_run, tiny_model_dir):
    from nlptransfer.outputs.export import save_model

    pooled = models.load_model(tiny_model_dir, tasks.get("classification"), ["a", "b"],
                               pooling={"mode": "mean", "normalize": True})
    run_dir = tmp_path / "pooled"
    save_model(pooled, models.load_tokenizer(tiny_model_dir), run_dir)
    for name in ("config.yaml", "metrics.json"):
        shutil.copy(full_run / name, run_dir / name)
    tagger = models.load_model(str(run_dir), tasks.get("token-classification"), NER_LABELS)
    assert torch.equal(tagger.state_dict()[ENCODER_WEIGHT], pooled.state_dict()[ENCODER_WEIGHT])
    assert tagger.classifier.out_features == len(NER_LABELS)


def test_a_chain_of_runs_names_the_first_runs_base(tmp_path, full_run):
    chained = shutil.copytree(full_run, tmp_path / "B")
    metrics = json.loads((chained / "metrics.json").read_text())
    metrics["encoder_from"] = {"run": "A", "base_model": "org/base", "base_checkpoint": "org/base"}
    (chained / "metrics.json").write_text(json.dumps(metrics))
    source = lineage.encoder_source(str(chained))
    assert source["run"] == "B" and source["base_model"] == "org/base"


class EncoderAtStart(Callback):
    """Keeps a copy of the encoder's embedding table as the loop starts, before the first optimizer step."""

    def on_fit_start(self, loop) -> None:
        self.weight = loop.model.state_dict()[ENCODER_WEIGHT].detach().clone()


def test_classification_run_then_ner_run_from_its_folder(tmp_path, full_run, tiny_model_dir, caplog):
    from nlptransfer import load_recipe

    at_start = EncoderAtStart()
    cfg = load_recipe("ner").Config(model=str(full_run), output_dir=str(tmp_path / "B"),
                                    data={"name": None, "train_file": str(ASSETS / "ner_tiny.conll"), "max_length": 32},
                                    train={"epochs": 1, "batch_size": 8, "max_steps": 2})
    with caplog.at_level("INFO", logger="nlptransfer"):
        results = run(cfg, Inputs(callbacks=[at_start]))
    assert torch.equal(at_start.weight, saved_weights(full_run)[ENCODER_WEIGHT])  # B starts from A's encoder
    log = (tmp_path / "B" / "train.log").read_text()
    assert f"model={full_run}: the encoder of run {full_run.name} (recipe custom: task classification" in log
    metrics = json.loads((tmp_path / "B" / "metrics.json").read_text())
    assert results.model.classifier.out_features == len(metrics["data"]["label_names"]) == 7  # B's tags: a new head
    recorded = metrics["encoder_from"]
    accuracy = json.loads((full_run / "metrics.json").read_text())["test"]["accuracy"]
    assert recorded["run"] == full_run.name and recorded["strategy"] == "full" and recorded["task"] == "classification"
    assert recorded["test_metric"] == "accuracy" and recorded["test_value"] == accuracy
    assert recorded["data"] == "local files: reviews.csv"
    assert recorded["base_checkpoint"] == tiny_model_dir and recorded["base_model"] is None
    card = run_card(tmp_path / "B")
    assert f"The encoder of run `{full_run.name}` (recipe `custom`: task `classification`" in card
    assert "under a new head" in card and "The base checkpoint was a local folder" in card


def test_the_card_names_the_earlier_runs_hub_base(full_run):
    from nlptransfer.config import RunConfig

    source = {"run": "topic", "recipe": "topic", "task": "classification", "strategy": "full", "data": "bbc_news",
              "test_metric": "accuracy", "test_value": 0.9, "base_model": "sentence-transformers/all-MiniLM-L6-v2",
              "base_checkpoint": "minilm"}
    cfg = RunConfig(model=str(full_run))
    header = metadata(cfg, {"test": {"accuracy": 0.5}, "encoder_from": source}, "b")
    assert header.base_model == "sentence-transformers/all-MiniLM-L6-v2" and header.base_model_relation == "finetune"
    assert header.license == "apache-2.0"
    assert metadata(cfg, {"test": {}, "encoder_from": source}, "b", adapter_only=True).base_model is None
    assert metadata(cfg, {"test": {}}, "b").base_model is None  # a local run folder without a record


SEQUENTIAL_CASES = [  # (name, model= given tmp_path and the full run, expected fragment)
    ("unfinished run", unfinished, "is an unfinished run (no metrics.json): finish it first"),
    ("ensemble folder", ensemble_folder, "is an ensemble folder"),
    ("finished run without model/", without_model, "is a finished run without its model/ folder"),
]


@pytest.mark.parametrize("name, model, expected", SEQUENTIAL_CASES, ids=[c[0] for c in SEQUENTIAL_CASES])
def test_a_bad_run_folder_as_model_is_one_line_exit_2_nothing_written(name, model, expected, tmp_path, full_run,
                                                                       reviews_csv, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "B"
    argv = ["recipe=sentiment", f"data.train_file={reviews_csv}", "data.name=null", "train.max_steps=1",
            f"model={model(tmp_path, full_run)}", f"output_dir={out}", "--quiet"]
    assert run_command.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()
