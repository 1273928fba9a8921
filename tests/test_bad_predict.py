"""The bad-input catalogue of `python -m nlptransfer.predict` and of a run's `model=`: each case is one line on
stderr that names the problem and the fix, exit code 2, no traceback, and nothing of the model loaded
that should not be (pickles, remote code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import write
from test_models import copy_checkpoint, headed_checkpoint, pickle_only, remote_code_checkpoint

from nlptransfer.cli import predict, run

pytestmark = pytest.mark.usefixtures("one_thread")


def runs_folder(tmp: Path) -> str:
    """`runs/does_not_exist` beside an existing `runs/` (the test runs in `tmp`)."""
    (tmp / "runs").mkdir(exist_ok=True)
    return "runs/does_not_exist"


def pickled_adapter(tmp: Path, lora_run: Path) -> Path:
    shutil.copytree(lora_run, tmp / "run")
    return pickle_only(tmp / "run" / "adapter")


PAIRS = "text,b2\nhi,there\n"
LONG_ROW = "text\ngood, really good,yes\n"  # pandas would read `yes` as the text and the rest as an index
BAD_ROW = "text,id\nfine,1\nbad,2,3\n"

# (name, argv given tmp_path, the full run and the LoRA run, expected fragment of the message)
PREDICT_CASES = [
    ("zero batch size", lambda t, f, lo: [f"model={f}", "text=hi", "batch_size=0"],
     "batch_size must be a whole number of at least 1"),
    ("negative batch size", lambda t, f, lo: [f"model={f}", "text=hi", "batch_size=-4"],
     "batch_size must be a whole number of at least 1"),
    ("fractional batch size", lambda t, f, lo: [f"model={f}", "text=hi", "batch_size=1.5"],
     "bad value for 'batch_size'"),
    ("output is a folder", lambda t, f, lo: [f"model={f}", "text=hi", f"output={t}"], "is a folder; pass a file in it"),
    ("output inside a file", lambda t, f, lo: [f"model={f}", "text=hi", f"output={write(t / 'f', 'x') / 'o.jsonl'}"],
     "is a file, not a folder"),
    ("output named as a table", lambda t, f, lo: [f"model={f}", "text=hi", f"output={t / 'out.csv'}"],
     "output= writes JSON lines, not .csv; name it out.jsonl"),
    ("output is the input", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', 'hi')}",
                                              f"output={t / 'in.txt'}"], "is the input file"),
    ("empty text", lambda t, f, lo: [f"model={f}", "text="], "text= is empty"),
    ("blank text", lambda t, f, lo: [f"model={f}", "text=   "], "text= is empty"),
    ("empty text pair", lambda t, f, lo: [f"model={f}", "text=hi", "text_pair="], "text_pair= is empty"),
    ("text pair with an input file", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', 'hi')}",
                                                       "text_pair=there"], "text_pair= goes with text="),
    ("pair column with a text", lambda t, f, lo: [f"model={f}", "text=hi", "text_pair_column=b"],
     "text_pair_column= goes with input="),
    ("pair column of a .txt file", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', 'hi')}",
                                                     "text_pair_column=b"], "needs a table input"),
    ("missing pair column", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.csv', PAIRS)}",
                                              "text_pair_column=b"], "has no column 'b' (text_pair_column=)"),
    ("empty .txt file", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', '')}"], "holds no texts"),
    ("blank lines only", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', chr(10) * 3 + '  ')}"],
     "holds no texts"),
    ("empty .csv file", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.csv', '')}"], "is empty"),
    ("header only", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.csv', 'text,id' + chr(10))}"],
     "holds no texts"),
    ("empty .jsonl file", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.jsonl', '')}"], "holds no texts"),
    ("input is a folder", lambda t, f, lo: [f"model={f}", f"input={t}"], "is a folder; pass a file"),
    ("unknown input format", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.xlsx', 'x')}"],
     "cannot read 'in.xlsx': use one of .txt"),
    ("non-UTF-8 input", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.txt', b'caf' + bytes([233]))}"],
     "is not valid UTF-8 text (byte 0xe9"),
    ("malformed JSON line", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.jsonl', '{}' + chr(10) + '{x')}"],
     "line 2"),
    ("JSON line not an object", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.jsonl', '[1, 2]')}"],
     "line 1 is not a JSON object"),
    ("csv row longer than its header", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.csv', LONG_ROW)}"],
     "a row has more values than the header has columns"),
    ("csv row with too many values", lambda t, f, lo: [f"model={f}", f"input={write(t / 'in.csv', BAD_ROW)}"],
     "cannot parse"),
    ("pickle-only model folder", lambda t, f, lo: [f"model={pickle_only(copy_checkpoint(f / 'model', t / 'm'))}",
                                                   "text=hi"], "only pickle weights (pytorch_model.bin)"),
    ("pickle-only adapter", lambda t, f, lo: [f"model={pickled_adapter(t, lo)}", "text=hi"],
     "only pickle weights (adapter_model.bin)"),
    ("model with its own code", lambda t, f, lo: [f"model={remote_code_checkpoint(f / 'model', t / 'm')}", "text=hi"],
     "runs its own Python code"),
    ("missing run folder", lambda t, f, lo: [f"model={runs_folder(t)}", "text=hi"],
     "model folder 'runs/does_not_exist' does not exist"),
    ("base model for a whole model", lambda t, f, lo: [f"model={f}", "text=hi", f"base_model={f}"],
     "base_model= is for an adapter"),
    ("unknown runtime", lambda t, f, lo: [f"model={f}", "text=hi", "runtime=fast"],
     "unknown runtime 'fast'; pass one of torch, bf16, int8, onnx, onnx-int8"),
    ("onnx runtime on a model never exported", lambda t, f, lo: [f"model={f}", "text=hi", "runtime=onnx"],
     "model.onnx, which this model folder lacks; export it first: python -m nlptransfer.export"),
    ("onnx-int8 runtime on a model never exported", lambda t, f, lo: [f"model={f}", "text=hi", "runtime=onnx-int8"],
     "formats=onnx-int8 (or predict with runtime=torch)"),
    ("onnx runtime on an adapter", lambda t, f, lo: [f"model={lo / 'adapter'}", "text=hi", "runtime=onnx"],
     "runs an exported whole model, not an adapter"),
]


@pytest.mark.parametrize("name, argv, expected", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_bad_predict_input_is_one_line_exit_2(name, argv, expected, tmp_path, full_run, lora_run, monkeypatch,
                                              capsys):
    monkeypatch.chdir(tmp_path)
    assert predict.main(argv(tmp_path, full_run, lora_run)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0]
    assert not captured.out
    assert not (tmp_path / "pwned").exists()


# A run's model=: refused before anything trains, in one line.

RUN_CASES = [
    ("pickle-only checkpoint", lambda t, m: [f"model={pickle_only(copy_checkpoint(m, t / 'm'))}"],
     "only pickle weights (pytorch_model.bin)"),
    ("checkpoint with its own code", lambda t, m: [f"model={remote_code_checkpoint(m, t / 'm')}"],
     "runs its own Python code"),
    ("missing relative folder", lambda t, m: [f"model={runs_folder(t)}"], "the folder does not exist"),
    ("keep_head with other labels", lambda t, m: [f"model={headed_checkpoint(t / 'h', m, ['a', 'b', 'c'])[0]}",
                                                  "keep_head=true"],
     "keep_head=true needs the checkpoint's labels in its order, but"),
    ("keep_head without a head", lambda t, m: [f"model={m}", "keep_head=true"], "has none (architectures: BertModel)"),
    ("keep_head not a boolean", lambda t, m: [f"model={m}", "keep_head=maybe"], "bad value for 'keep_head'"),
]


@pytest.mark.parametrize("name, overrides, expected", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_model_of_a_run_is_one_line_exit_2(name, overrides, expected, tmp_path, tiny_model_dir, reviews_csv,
                                               monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["recipe=sentiment", f"data.train_file={reviews_csv}", "data.name=null", "train.max_steps=1",
            f"output_dir={run_dir}", "--quiet"]
    assert run.main(argv + overrides(tmp_path, tiny_model_dir)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines
    assert not any(line.startswith(("error", "Traceback")) for line in lines[:-1]), lines
    left = {p.name for p in run_dir.iterdir()} if run_dir.exists() else set()
    assert left <= {"config.yaml", "train.log"}
