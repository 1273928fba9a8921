"""nlptransfer/runtimes.py: export a run's model to ONNX (fp32 and int8) and predict with runtime=int8|onnx|onnx-int8,
against the exact torch runtime; the export command and its bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nlptransfer import runtimes
from nlptransfer.cli import export, predict
from nlptransfer.errors import ConfigError, ModelError
from nlptransfer.predictor import export_model, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a great movie", "terrible food and awful service", "the news today", "great " * 200, "ok"]


@pytest.fixture(scope="module")
def exported_run(full_run, tmp_path_factory) -> Path:
    """A copy of the full run with both ONNX files exported into its model/onnx/."""
    run = tmp_path_factory.mktemp("serving") / "run"
    shutil.copytree(full_run, run)
    written = export_model(run, ["onnx", "onnx-int8"])
    assert [path.relative_to(run) for path in written] == [Path("model/onnx/model.onnx"),
                                                           Path("model/onnx/model_int8.onnx")]
    return run


def scores(rows: list[dict]) -> list[float]:
    """Every row's score of every label, labels in name order, in one list."""
    return [row["scores"][name] for row in rows for name in sorted(row["scores"])]


def test_onnx_predicts_what_torch_predicts(exported_run):
    exact = load_model(exported_run).predict(TEXTS, all_scores=True, batch_size=2)
    served = load_model(exported_run, runtime="onnx").predict(TEXTS, all_scores=True, batch_size=2)
    assert [row["label"] for row in served] == [row["label"] for row in exact]
    assert scores(served) == pytest.approx(scores(exact), abs=1e-5)
    assert set(served[0]) == set(exact[0])


@pytest.mark.parametrize("runtime", ["bf16", "int8", "onnx-int8"])
def test_approximate_runtimes_stay_close_to_torch(exported_run, runtime):
    exact = load_model(exported_run).predict(TEXTS, all_scores=True)
    served = load_model(exported_run, runtime=runtime).predict(TEXTS, all_scores=True)
    assert scores(served) == pytest.approx(scores(exact), abs=0.05)
    assert all(list(row["scores"].values()) == sorted(row["scores"].values(), reverse=True) for row in served)


def test_int8_quantizes_every_linear_layer(exported_run):
    from torch import nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    model = load_model(exported_run, runtime="int8").pipe.model
    assert not [name for name, module in model.named_modules() if type(module) is nn.Linear]
    assert sum(isinstance(module, DynamicQuantizedLinear) for module in model.modules()) == 2 * 6 + 2  # + pooler, head


def test_onnx_reads_long_texts_as_the_run_did(exported_run, tmp_path):
    """config.json's `nlptransfer` settings (here sliding windows, mean-pooled) apply to the ONNX runtime too."""
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    config_file = run / "model" / "config.json"
    config = json.loads(config_file.read_text())
    config["nlptransfer"] |= {"long_text": "sliding", "stride": 4}
    config_file.write_text(json.dumps(config))
    long_texts = ["great food " * 40 + "terrible " * 30, "ok"]
    exact = load_model(run).predict(long_texts, all_scores=True)
    served = load_model(run, runtime="onnx").predict(long_texts, all_scores=True)
    assert scores(served) == pytest.approx(scores(exact), abs=1e-5)


def test_onnx_token_classification(ner_run, tmp_path):
    run = tmp_path / "ner"
    shutil.copytree(ner_run, run)
    export_model(run, "onnx")
    texts = ["Alice met bob in london", " ".join(f"word{i}" for i in range(40))]  # the second needs windows
    exact = load_model(run).predict(texts)
    served = load_model(run, runtime="onnx").predict(texts)
    assert [[(e["start"], e["end"], e["type"]) for e in row["entities"]] for row in served] == \
        [[(e["start"], e["end"], e["type"]) for e in row["entities"]] for row in exact]


def test_cli_export_then_predict_onnx(full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    assert export.main([str(run), "formats=onnx"]) == 0
    assert "wrote" in capsys.readouterr().err and not (run / "model" / "onnx" / "model_int8.onnx").exists()
    record = json.loads((run / "model" / "onnx" / "export.json").read_text())
    assert list(record["files"]) == ["onnx/model.onnx"] and len(record["weights_sha256"]) == 64
    lines = {}
    for runtime in ("torch", "onnx"):
        assert predict.main([f"model={run}", "text=a great movie", f"runtime={runtime}", "all_scores=true"]) == 0
        lines[runtime] = json.loads(capsys.readouterr().out)
    assert lines["onnx"]["label"] == lines["torch"]["label"]
    assert lines["onnx"]["scores"] == pytest.approx(lines["torch"]["scores"], abs=1e-5)
    assert predict.main([f"model={run}", "text=hi", "runtime=onnx-int8"]) == 2  # exported onnx only
    assert "formats=onnx-int8" in capsys.readouterr().err


def test_export_help(capsys):
    assert export.main(["--help"]) == 0
    assert "formats=" in capsys.readouterr().out


def stale(run: Path) -> Path:
    """Weights that changed after the export (a run trained on)."""
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    return run


def adapter_of(lora_run: Path) -> Path:
    return lora_run / "adapter"


def no_onnxruntime(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it raises ImportError


# (name, export argv given tmp_path, the full run and the LoRA run, expected fragment of the message)
EXPORT_CASES = [
    ("unknown format", lambda t, f, lo, mp: [f"model={f}", "formats=tensorrt"], "unknown export format 'tensorrt'"),
    ("int8 needs no export", lambda t, f, lo, mp: [f"model={f}", "formats=int8"], "int8 needs no export"),
    ("empty formats", lambda t, f, lo, mp: [f"model={f}", "formats=,"], "formats= is empty"),
    ("no model", lambda t, f, lo, mp: ["formats=onnx"], "pass the model folder"),
    ("two folders", lambda t, f, lo, mp: [str(f), str(lo)], "pass one model folder"),
    ("missing folder", lambda t, f, lo, mp: [f"model={t / 'nope'}"], "does not exist"),
    ("adapter folder", lambda t, f, lo, mp: [f"model={adapter_of(lo)}"], "is an adapter; export the whole model"),
    ("onnxruntime not installed", lambda t, f, lo, mp: no_onnxruntime(mp) or [f"model={f}"],
     "pip install 'nlptransfer[serve]'"),
]


@pytest.mark.parametrize("name, argv, expected", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_bad_export_input_is_one_line_exit_2(name, argv, expected, tmp_path, full_run, lora_run, monkeypatch,
                                             capsys):
    before = sorted(p.relative_to(full_run) for p in full_run.rglob("*"))
    assert export.main(argv(tmp_path, full_run, lora_run, monkeypatch)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert sorted(p.relative_to(full_run) for p in full_run.rglob("*")) == before


def test_stale_export_is_refused(exported_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    with pytest.raises(ModelError, match="exported from other weights.*export it again"):
        load_model(stale(run), runtime="onnx")


def test_a_file_of_an_earlier_export_is_never_served(exported_run, tmp_path, monkeypatch):
    """Weights change, then only the fp32 graph is exported again: the int8 graph of the old weights is gone,
    and an int8 graph put back (or edited) is refused, as the record covers every exported file."""
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    int8 = run / "model" / "onnx" / "model_int8.onnx"
    old_int8 = int8.read_bytes()
    monkeypatch.setattr(runtimes, "onnx_graph", lambda model, tokenizer: b"a graph")  # the record is what is tested
    runtimes.export(torch.nn.Linear(1, 1), None, stale(run) / "model", ["onnx"])
    assert not int8.exists()
    int8.write_bytes(old_int8)
    with pytest.raises(ModelError, match="model_int8.onnx was exported from other weights.*formats=onnx-int8"):
        load_model(run, runtime="onnx-int8")


def test_unknown_runtime_in_the_python_api(full_run):
    with pytest.raises(ConfigError, match="unknown runtime 'fast'; pass one of torch, bf16, int8, onnx, onnx-int8"):
        load_model(full_run, runtime="fast")


def test_onnx_of_a_pooled_head(tiny_model_dir, reviews_csv, tmp_path):
    """A `head.pooling=mean` model (PooledForSequenceClassification) exports and predicts as in torch."""
    from nlptransfer.config import RunConfig
    from nlptransfer.pipeline import run

    results = run(RunConfig(model=tiny_model_dir, strategy="full", output_dir=str(tmp_path / "run"),
                            head={"pooling": "mean"}, data={"train_file": str(reviews_csv), "max_length": 32},
                            train={"epochs": 1, "batch_size": 8, "max_steps": 1}))
    export_model(results.output_dir, "onnx")
    exact = load_model(results.output_dir).predict(TEXTS, all_scores=True)
    served = load_model(results.output_dir, runtime="onnx").predict(TEXTS, all_scores=True)
    assert scores(served) == pytest.approx(scores(exact), abs=1e-5)
