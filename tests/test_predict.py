"""nlptransfer/predict.py: load a run, model, adapter or hub id and predict labels or entities."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

import nlptransfer
from nlptransfer.cli.predict import main
from nlptransfer.errors import ModelError
from nlptransfer.predictor import load_model


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_predictions(rows: list[dict], expected: list[dict]) -> None:
    assert [row["label"] for row in rows] == [row["label"] for row in expected]
    for row, other in zip(rows, expected):
        assert row["scores"] == pytest.approx(other["scores"], abs=1e-4)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_run_folder_predicts_what_the_run_evaluated(full_run):
    expected = read_jsonl(full_run / "predictions.jsonl")
    predictor = nlptransfer.load_model(full_run)  # the lazy public export
    assert predictor.task == "classification" and predictor.label_names == ["neg", "neu", "pos"]

    rows = predictor.predict([row["text"] for row in expected], all_scores=True, batch_size=4)
    assert [row["text"] for row in rows] == [row["text"] for row in expected]
    assert [row["label"] for row in rows] == [row["predicted"] for row in expected]
    for row, saved in zip(rows, expected):
        assert row["score"] == pytest.approx(saved["score"], abs=1e-4)
        assert set(row["scores"]) == {"neg", "neu", "pos"}
        assert sum(row["scores"].values()) == pytest.approx(1, abs=1e-4)
        assert row["scores"][row["label"]] == max(row["scores"].values())


def test_single_text_and_long_text(full_run):
    predictor = load_model(full_run)
    assert predictor.predict([]) == []
    [row] = predictor.predict("a great movie")
    assert set(row) == {"text", "label", "score"}
    [long_row] = predictor.predict("great " * 500)  # truncated to the run's max_length, not a crash
    assert long_row["label"] in predictor.label_names


def test_lora_run_merged_model_and_adapter_agree(lora_run, tmp_path):
    texts = ["a great movie", "terrible food", "the news today"]
    merged = load_model(lora_run).predict(texts, all_scores=True)
    assert load_model(lora_run).source == str(lora_run / "model")
    adapter = load_model(lora_run / "adapter").predict(texts, all_scores=True)
    assert_same_predictions(adapter, merged)

    lone = tmp_path / "run"  # a run folder whose merged model was deleted falls back to its adapter
    shutil.copytree(lora_run, lone)
    shutil.rmtree(lone / "model")
    assert_same_predictions(load_model(lone).predict(texts, all_scores=True), merged)  # labels.json has the labels
    (lone / "adapter" / "labels.json").unlink()  # an adapter saved elsewhere, without them
    with pytest.raises(ModelError, match="labels are unknown"):
        load_model(lone)


def test_adapter_whose_base_is_missing(lora_run, tmp_path, tiny_model_dir):
    adapter = tmp_path / "adapter"
    shutil.copytree(lora_run / "adapter", adapter)
    shutil.copytree(lora_run / "model", tmp_path / "model")  # the labels
    settings = json.loads((adapter / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(settings))

    with pytest.raises(ModelError, match=r"base model folder '.*gone' does not exist; pass base_model="):
        load_model(adapter)
    rows = load_model(adapter, base_model=tiny_model_dir).predict(["a great movie"])
    assert rows == load_model(lora_run).predict(["a great movie"])


def test_token_classification_entities_with_spans(ner_run):
    predictor = load_model(ner_run)
    assert predictor.task == "token-classification"
    text = "Alice met bob in london"
    [row] = predictor.predict(text)
    entities = row["entities"]
    assert [(e["start"], e["end"]) for e in entities] == [(0, 5), (6, 9), (10, 13), (14, 16), (17, 23)]
    for entity in entities:
        assert entity["type"] == "PER"  # the head tags every word B-PER
        assert text[entity["start"]:entity["end"]].lower() == entity["word"]
        assert 0.5 < entity["score"] <= 1


def test_token_classification_covers_texts_longer_than_max_length(ner_run):
    words = [f"word{i}" for i in range(40)]  # ~80 tokens, the run's max_length is 16
    text = " ".join(words)
    [row] = load_model(ner_run).predict([text])
    assert [text[e["start"]:e["end"]] for e in row["entities"]] == words


def test_hub_id_is_downloaded(monkeypatch, full_run):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kwargs: asked.append(repo_id) or str(full_run / "model"))
    rows = load_model("someone/tiny-reviews").predict(["a great movie"])
    assert asked == ["someone/tiny-reviews"]
    assert rows == load_model(full_run).predict(["a great movie"])


def test_unreachable_hub_id_is_one_clear_error():
    # the tests run with HF_HUB_OFFLINE=1, like a machine without network
    with pytest.raises(ModelError, match="'someone/nothing' is not a local folder and cannot be downloaded"):
        load_model("someone/nothing")


@pytest.mark.parametrize("make, message", [
    (lambda tmp, tiny: tmp / "missing", "model folder '.*missing' does not exist"),
    (lambda tmp, tiny: tmp, "is not a model: it has no config.json"),
    (lambda tmp, tiny: Path(tiny) / "config.json", "is a file; pass a run folder"),
    (lambda tmp, tiny: tiny, r"holds no classification or token-classification model \(architectures: BertModel\)"),
])
def test_not_a_model(tmp_path, tiny_model_dir, make, message):
    with pytest.raises(ModelError, match=message):
        load_model(make(tmp_path, tiny_model_dir))


def test_cli_text_prints_one_json_line(capsys, full_run):
    assert main([f"model={full_run}", "text=a great movie", "all_scores=true"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert row["text"] == "a great movie" and set(row["scores"]) == {"neg", "neu", "pos"}


@pytest.mark.parametrize("text, expected", [("yes", "yes"), ("#great: movie", "#great: movie"), ("[1, 2]", "[1, 2]"),
                                            ("3e-5", "3e-5"), ("'null'", "null"), ("${x}", "${x}"), ("'{}", "'{}")])
def test_cli_text_is_taken_as_typed(capsys, full_run, text, expected):
    assert main([f"model={full_run}", f"text={text}"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == expected


@pytest.mark.parametrize("suffix, content, carried", [
    (".txt", "a great movie\n\nterrible food\nthe news today\n", [{}, {}, {}]),
    (".csv", 'text,id\na great movie,1\nterrible food,2\n"the news today",3\n',
     [{"id": "1"}, {"id": "2"}, {"id": "3"}]),
    (".jsonl", '{"text": "a great movie"}\n{"text": "terrible food"}\n{"text": "the news today"}\n', [{}, {}, {}]),
])
def test_cli_input_file_to_output_file(tmp_path, full_run, suffix, content, carried):
    source = tmp_path / f"texts{suffix}"
    source.write_text(content)
    output = tmp_path / "out.jsonl"
    assert main([f"model={full_run}", f"input={source}", f"output={output}", "batch_size=2", "--quiet"]) == 0
    rows = read_jsonl(output)
    assert [row["text"] for row in rows] == ["a great movie", "terrible food", "the news today"]
    predicted = load_model(full_run).predict([row["text"] for row in rows])
    assert rows == [columns | row for columns, row in zip(carried, predicted)]


def test_cli_carries_the_input_columns_to_the_predictions(tmp_path, full_run, capsys):
    table = tmp_path / "reviews.csv"
    table.write_text('id,review,label,text\n007,a great movie,pos,first\n"a,b",terrible food,neg,second\n')
    output = tmp_path / "out.jsonl"
    assert main([f"model={full_run}", f"input={table}", "text_column=review", f"output={output}"]) == 0
    rows = read_jsonl(output)
    assert [row["id"] for row in rows] == ["007", "a,b"]  # as written: the join key is not reformatted
    assert [row["text"] for row in rows] == ["a great movie", "terrible food"]  # the text column stays `text`
    assert [row["input_label"] for row in rows] == ["pos", "neg"]  # the gold label is kept beside the predicted
    assert [row["input_text"] for row in rows] == ["first", "second"]
    assert all(row["label"] in ("neg", "neu", "pos") for row in rows)
    assert "carried as input_label, input_text" in capsys.readouterr().err

    lines = tmp_path / "reviews.jsonl"
    lines.write_text('{"id": 7, "meta": {"source": "web", "tags": [1, 2]}, "text": "a great movie"}\n'
                     '{"id": 8, "text": "terrible food", "score": null}\n')
    assert main([f"model={full_run}", f"input={lines}", f"output={output}", "--quiet"]) == 0
    first, second = read_jsonl(output)
    assert first["id"] == 7 and first["meta"] == {"source": "web", "tags": [1, 2]}
    assert second["id"] == 8 and second["input_score"] is None and isinstance(second["score"], float)
    assert list(first)[:3] == ["id", "meta", "text"]


def test_cli_warns_of_empty_texts_in_a_table_and_keeps_their_rows(tmp_path, full_run, capsys):
    table = tmp_path / "t.csv"
    table.write_text("id,text\n1,a great movie\n2,\n3,terrible food\n")
    assert main([f"model={full_run}", f"input={table}"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == ["1", "2", "3"]
    assert "warning: 1 of 3 input texts are empty (the first in row 2)" in captured.err


def test_cli_ner_input(tmp_path, ner_run):
    source = tmp_path / "tweets.txt"
    source.write_text("alice in london\n")
    output = tmp_path / "entities.jsonl"
    assert main([f"model={ner_run}", f"input={source}", f"output={output}", "--quiet"]) == 0
    [row] = read_jsonl(output)
    assert [(e["type"], e["word"]) for e in row["entities"]] == [("PER", "alice"), ("PER", "in"), ("PER", "london")]


@pytest.mark.parametrize("argv, message", [
    (["text=hi"], "pass model="),
    (["model=x"], "pass exactly one of text="),
    (["model=x", "text=hi", "input=f.txt"], "pass exactly one of text="),
    (["model=x", "txt=hi"], "unknown option 'txt'; did you mean: text"),
    (["model=x", "batch_size=many", "text=hi"], "bad value for 'batch_size'"),
    (["model=/no/such/run", "text=hi"], "model folder '/no/such/run' does not exist"),
])
def test_cli_errors_are_one_line_with_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in error_line(capsys)


def test_cli_missing_input_file_and_column(capsys, tmp_path, full_run):
    assert main([f"model={full_run}", f"input={tmp_path / 'none.txt'}"]) == 2
    assert "input file not found" in error_line(capsys)
    table = tmp_path / "t.csv"
    table.write_text("review\ngood\n")
    assert main([f"model={full_run}", f"input={table}"]) == 2
    assert "has no column 'text' (text_column=); columns: review" in error_line(capsys)


def test_cli_usage_and_help(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m nlptransfer.predict")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "  all_scores=false" in out and "  batch_size=32" in out


# Safetensors only: predict never unpickles a file.

class Payload:
    """A pickle that creates a file when unpickled: what a malicious pytorch_model.bin does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_model_folder_with_only_pickle_weights_is_refused_unopened(full_run, tmp_path):
    import pickle

    folder = tmp_path / "pickled"
    shutil.copytree(full_run / "model", folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError) as error:
        load_model(folder)
    message = str(error.value)
    assert "only pickle weights (pytorch_model.bin)" in message and "safe_serialization=True" in message
    assert not marker.exists()


def test_an_adapter_with_only_pickle_weights_is_refused(lora_run, tmp_path):
    from test_models import pickle_only

    shutil.copytree(lora_run, tmp_path / "run")
    adapter = pickle_only(tmp_path / "run" / "adapter")
    assert (adapter / "adapter_model.bin").is_file()
    with pytest.raises(ModelError, match=r"adapter in .* has only pickle weights \(adapter_model.bin\).*load the "
                                         r"folder with peft"):
        load_model(adapter)


def test_a_model_with_its_own_code_is_refused(full_run, tmp_path):
    from test_models import remote_code_checkpoint

    folder = remote_code_checkpoint(full_run / "model", tmp_path / "custom")
    with pytest.raises(ModelError, match="runs its own Python code .*which predict never runs"):
        load_model(folder)


def test_a_missing_run_folder_is_said_not_to_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError) as error:
        load_model("runs/does_not_exist")
    assert "model folder 'runs/does_not_exist' does not exist" in str(error.value)
    assert "HF_HUB_OFFLINE" not in str(error.value)


# The run's adapter/ loads as users load adapters.

def test_the_runs_adapter_loads_with_peft_as_users_load_adapters(lora_run):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    adapter = lora_run / "adapter"
    labels = json.loads((adapter / "labels.json").read_text())
    assert labels == {"task": "classification", "label_names": ["neg", "neu", "pos"]}
    assert not (adapter / "README.md").exists()  # no blank peft template
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute() and (Path(base) / "config.json").is_file()

    id2label = dict(enumerate(labels["label_names"]))
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        str(adapter), num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    classifier = pipeline("text-classification", model=model.merge_and_unload().eval(),
                          tokenizer=AutoTokenizer.from_pretrained(str(adapter)), device="cpu")
    texts = ["a great movie", "terrible food", "the news today"]
    expected = load_model(lora_run).predict(texts)
    found = classifier(texts)
    assert [row["label"] for row in found] == [row["label"] for row in expected]
    assert [row["score"] for row in found] == pytest.approx([row["score"] for row in expected], abs=1e-4)


def test_the_adapter_cards_snippet_runs_as_written(lora_run, capsys):
    """peft's AutoPeftModel builds the base's default head (2 labels): the card's one call gives the labels."""
    from nlptransfer.hub.card import run_card

    code = run_card(lora_run, adapter_only=True).split("```python\n")[1].split("```")[0]
    assert "AutoPeftModelForSequenceClassification.from_pretrained(" in code and "num_labels=3" in code
    namespace = {}
    exec(code.replace("path/to/this/folder", str(lora_run / "adapter")), namespace)
    printed = capsys.readouterr().out
    expected = load_model(lora_run).predict(["Your text here"])[0]["label"]
    assert printed.startswith(f"[{{'label': '{expected}'")
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("- **The adapter.**")[1].split("```python\n")[1].split("```")[0]
    namespace = {}
    exec(textwrap.dedent(block).replace("runs/<run>", str(lora_run)), namespace)
    assert namespace["model"].config.id2label == {0: "neg", 1: "neu", 2: "pos"}


def test_a_runs_adapter_names_its_base_as_it_loads_here(tmp_path, monkeypatch):
    """Offline, the packaged copy by its absolute path (a hub id would not load here); push names the hub id."""
    from nlptransfer import catalog
    from nlptransfer.outputs.export import adapter_base

    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    packaged = catalog.resolve_model("minilm")
    if packaged != hub_id:  # the packaged copy is installed
        assert adapter_base("minilm", "/anywhere/site-packages/minilm") == str(Path(packaged).resolve())
        assert adapter_base(packaged, packaged) == str(Path(packaged).resolve())
    else:
        assert adapter_base("minilm", "/anywhere/site-packages/minilm") == hub_id
    assert adapter_base("google-bert/bert-base-cased", "google-bert/bert-base-cased") == "google-bert/bert-base-cased"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)  # a local folder: by absolute path
    assert adapter_base("models/mine", "models/mine") == str((tmp_path / "models" / "mine").resolve())
