"""The bad-input catalogue: every case is one line on stderr naming the problem and the fix, exit code 2,
and nothing in the run folder that a later run could mistake for good output."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlptransfer.cli.run import main

ROWS = "".join(f"this is text number {i},{'ab'[i % 2]}\n" for i in range(30))
HEADER = "text,label\n"
MULTI = "".join(f'{{"text": "text number {i}", "labels": {["a", "b"] if i % 3 else ["c"]}}}\n'.replace("'", '"')
                for i in range(30))
ONE_CLASS = "".join(f"words number {i},a\n" for i in range(20))


def train_file(tmp_path: Path, content: str | bytes, name: str = "d.csv") -> str:
    return f"data.train_file={write(tmp_path / name, content)}"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def mismatched_model(tmp_path: Path, tiny_model_dir: str) -> Path:
    """A checkpoint whose embedding table is smaller than its tokenizer's vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "mismatched"
    BertModel(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


# (name, extra overrides given tmp_path and tiny model, expected fragment of the message)
CASES = [
    ("missing file", lambda t, m: [f"data.train_file={t / 'missing.csv'}"], "data file not found"),
    ("folder given as a file", lambda t, m: [f"data.train_file={(t / 'dir.csv').mkdir() or t / 'dir.csv'}"],
     "data file not found"),
    ("unknown format", lambda t, m: [f"data.train_file={write(t / 'data.xlsx', 'x')}"], "use one of .csv"),
    ("missing text column", lambda t, m: [train_file(t, "body,label\n" + ROWS)],
     "no column 'text' (data.text_column); columns found: body, label"),
    ("missing label column", lambda t, m: [train_file(t, "text,y\n" + ROWS)],
     "no column 'label' (data.label_column); columns found: text, y"),
    ("empty file", lambda t, m: [train_file(t, "")], "is empty"),
    ("header only", lambda t, m: [train_file(t, HEADER)], "has no rows"),
    ("empty after filtering", lambda t, m: [train_file(t, HEADER + " ,a\n" * 9)],
     "usable rows"),
    ("one class", lambda t, m: [train_file(t, HEADER + ONE_CLASS)],
     "single class"),
    ("unseen eval labels", lambda t, m: [train_file(t, HEADER + ROWS),
                                         f"data.validation_file={write(t / 'v.csv', HEADER + 'hi there,c')}"],
     "labels not seen in training"),
    ("non-UTF-8 text", lambda t, m: [train_file(t, b"text,label\n" + b"caf\xe9,a\nok,b\n" * 5)],
     "not valid utf-8 text (byte 0xe9"),
    ("malformed CSV row", lambda t, m: [train_file(t, HEADER + ROWS + "a,b,c,d\n")],
     "cannot parse"),
    ("negative lr", lambda t, m: ["train.lr=-1"], "train.lr must be positive"),
    ("zero batch size", lambda t, m: ["train.batch_size=0"], "train.batch_size must be at least 1"),
    ("fractions too large", lambda t, m: ["data.validation_fraction=0.5", "data.test_fraction=0.45"],
     "must leave at least 10% for training"),
    ("wrong value type", lambda t, m: ["train.epochs=two"], "bad value for 'train.epochs'"),
    ("unknown key", lambda t, m: ["train.epoch=2"], "unknown option 'train.epoch'; did you mean: train.epochs"),
    ("tokenizer/model mismatch", lambda t, m: [f"model={mismatched_model(t, m)}"], "embeds only 20"),
    ("folder that is not a model", lambda t, m: [f"model={write(t / 'notes' / 'a.txt', 'x').parent}"],
     "cannot load model"),
    ("unreachable hub id offline", lambda t, m: ["model=nobody/no-such-model"], "check the hub id"),
    ("resume without a checkpoint", lambda t, m: ["resume=auto"], "holds no run to resume"),
    ("empty label list", lambda t, m: ["task=multilabel", "data.label_column=labels",
                                       train_file(t, MULTI + '{"text": "nothing", "labels": []}\n', "m.jsonl")],
     "empty label list"),
    ("label outside the known set", lambda t, m: ["task=multilabel", "data.label_column=labels",
                                                  "data.label_names=[a,b]", train_file(t, MULTI, "m.jsonl")],
     "labels not seen in training or data.label_names: c"),
    ("threshold outside [0, 1]", lambda t, m: ["task=multilabel", "threshold=1.5"], "threshold must be in [0, 1]"),
    ("stride not smaller than max length", lambda t, m: ["long_text=sliding", "data.max_length=32",
                                                         "data.stride=32"], "data.stride (32)"),
    ("unknown long_text policy", lambda t, m: ["long_text=chunk"], "long_text must be one of"),
    ("class weights of the wrong length", lambda t, m: ["loss.class_weights=[1,2]"], "2 weights for 3 labels"),
]


@pytest.mark.parametrize("name, overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, overrides, expected, tmp_path, tiny_model_dir,
                                                         reviews_csv, capsys):
    run_dir = tmp_path / "run"
    argv = ["recipe=sentiment", f"model={tiny_model_dir}", f"data.train_file={reviews_csv}", "data.name=null",
            "train.max_steps=1", f"output_dir={run_dir}", "--quiet"]
    assert main(argv + overrides(tmp_path, tiny_model_dir)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    error = lines[-1]  # warnings may come before it (e.g. rows dropped), never a traceback
    assert error.startswith("error: ")
    assert not any(line.startswith(("error", "Traceback", "--- Logging error")) for line in lines[:-1]), lines
    assert expected.lower() in error.lower()
    left = {p.name for p in run_dir.iterdir()} if run_dir.exists() else set()
    assert left <= {"config.yaml", "train.log"}  # never metrics.json, model/ or checkpoints/


def test_unknown_recipe(capsys):
    assert main(["recipe=sentimnet"]) == 2
    error = capsys.readouterr().err
    assert "unknown recipe 'sentimnet'" in error and "sentiment" in error
