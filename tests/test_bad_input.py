"""The bad-input catalogue: every case is one line on stderr naming the problem and the fix, exit code 2,
and nothing in the run folder that a later run could mistake for good output."""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import pytest
from conftest import ASSETS
from helpers import write

from nlptransfer.cli.run import main

ROWS = "".join(f"this is text number {i},{'ab'[i % 2]}\n" for i in range(30))
HEADER = "text,label\n"
MULTI = "".join(f'{{"text": "text number {i}", "labels": {["a", "b"] if i % 3 else ["c"]}}}\n'.replace("'", '"')
                for i in range(30))
ONE_CLASS = "".join(f"words number {i},a\n" for i in range(20))


def train_file(tmp_path: Path, content: str | bytes, name: str = "d.csv") -> str:
    return f"data.train_file={write(tmp_path / name, content)}"


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
    # options that used to raise a traceback or a message without the key or the fix
    ("metric_for_best not a metric of the task", lambda t, m: ["train.metric_for_best=f1"],
     "train.metric_for_best=f1 is not a metric of task=classification: metric_for_best must be one of accuracy, "
     "macro_f1"),
    ("zero eval batch size", lambda t, m: ["train.eval_batch_size=0"], "train.eval_batch_size must be at least 1"),
    ("negative seed", lambda t, m: ["seed=-1"], "seed must be from 0 to 4294967295"),
    ("seed too large for numpy", lambda t, m: [f"seed={2 ** 40}"], "seed must be from 0 to 4294967295"),
    ("output_dir is an existing file", lambda t, m: [f"output_dir={write(t / 'notes.txt', 'x')}"],
     "notes.txt is a file; choose a folder for output_dir"),
    ("output_dir inside a file", lambda t, m: [f"output_dir={write(t / 'notes.txt', 'x') / 'run'}"],
     "notes.txt is a file, not a folder; choose another output_dir"),
    ("config file holding a list", lambda t, m: ["--config", str(write(t / "c.yaml", "- train.epochs=1\n"))],
     "holds a list at its top level; write `key: value` lines"),
    ("config file holding a scalar", lambda t, m: ["--config", str(write(t / "c.yaml", "3\n"))],
     "holds a single value (3) at its top level; write `key: value` lines"),
    ("config section given a value", lambda t, m: ["--config", str(write(t / "c.yaml", "train: 5\n"))],
     "'train' is a section of options, not a value: give it `key: value` lines indented under `train:`"),
    ("nested config section given a value", lambda t, m: ["--config", str(write(t / "c.yaml", "lora: [4]\n"))],
     "'lora' is a section of options, not a value"),
    ("section given a value on the command line", lambda t, m: ["train=5"],
     "'train' is a section of options, not a value: set its options one by one (e.g. train.epochs=2)"),
    ("Hydra's + prefix", lambda t, m: ["+train.foo=1"],
     "'+train.foo=1': the leading '+' is Hydra syntax; nlptransfer options are set without it: train.foo=1"),
    ("Hydra's ++ prefix", lambda t, m: ["++train.epochs=1"], "set without it: train.epochs=1"),
    ("Hydra's ~ prefix", lambda t, m: ["~train.epochs"], "the leading '~' is Hydra syntax"),
    ("more examples per class than the rarest class has", lambda t, m: ["data.examples_per_class=50"],
     "data.examples_per_class=50 but class"),
    ("a description of a label the data lacks", lambda t, m: ["strategy=zeroshot", "labels.descriptions={good: x}"],
     "labels.descriptions names good, which the data does not have (its labels: neg, neu, pos)"),
    ("zero-shot with labels that are not words", lambda t, m: ["strategy=zeroshot", train_file(t, HEADER + "".join(
        f"text number {i},{i % 2}\n" for i in range(30)))], "the labels 0, 1 are not words"),
    ("contrastive with a single class", lambda t, m: ["strategy=contrastive", train_file(t, HEADER + ONE_CLASS)],
     "single class"),
    ("a description of bars alone", lambda t, m: ["strategy=zeroshot", "labels.descriptions={pos: ' | ', neg: bad}"],
     "labels.descriptions gives pos an empty description"),
    ("a template alternative without its {}", lambda t, m: ["strategy=zeroshot", "labels.template=It is {}. | Hm."],
     "labels.template must hold one '{}' where the description goes, in each alternative separated by |"),
    ("a negative calibration sample", lambda t, m: ["strategy=zeroshot", "zeroshot.calibrate=-1"],
     "zeroshot.calibrate is a number of training texts: 0 (none) or more"),
    ("an empty label description", lambda t, m: ["strategy=zeroshot", "labels.descriptions={pos: '', neg: bad}"],
     "labels.descriptions gives pos an empty description; describe each in words, or leave it out"),
    ("a blank label description for templated examples", lambda t, m: [
        "strategy=contrastive", "contrastive.synthetic_per_class=2", "labels.descriptions={neu: '  '}"],
     "labels.descriptions gives neu an empty description"),
    ("a contrastive temperature that overflows the loss", lambda t, m: ["strategy=contrastive",
                                                                       "contrastive.temperature=1e-9"],
     "contrastive.temperature must be between 0.01 and 1, e.g. 0.05"),
    ("a contrastive temperature of 0", lambda t, m: ["strategy=contrastive", "contrastive.temperature=0"],
     "contrastive.temperature must be between 0.01 and 1"),
    ("zero-shot on text pairs", lambda t, m: ["strategy=zeroshot", "data.text_pair_column=label"],
     "strategy=zeroshot compares one text with the label descriptions"),
    ("no labeled example for a strategy that trains", lambda t, m: ["data.examples_per_class=0"],
     "no labeled training example (data.examples_per_class=0): strategy=full trains on some"),
    ("a pooled head for token classification", lambda t, m: ["recipe=ner", "head.pooling=mean"],
     "head.pooling=mean pools a text into one embedding"),
]

FILE_CASES = ("missing file", "missing text column", "missing label column", "empty file", "header only",
              "empty after filtering", "one class", "unseen eval labels", "non-UTF-8 text")
"""Cases of reading files that the Arrow backend meets too: the same message either way."""


def on_arrow(overrides):
    return lambda t, m: [*overrides(t, m), "data.backend=arrow"]


def other_tokenizer_cache(t: Path, m: str) -> list[str]:
    """A data.token_cache folder filled by a run whose tokenizer lowercases nothing (another definition)."""
    from transformers import AutoTokenizer

    other = t / "other-tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(m)
    tokenizer.backend_tokenizer.normalizer = None
    tokenizer.save_pretrained(other)
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((Path(m) / name).read_bytes())
    cache = t / "tokens"
    assert main(["recipe=sentiment", f"model={other}", f"data.train_file={ASSETS / 'reviews.csv'}", "data.name=null",
                 "data.backend=arrow", f"data.token_cache={cache}", "train.max_steps=1", f"output_dir={t / 'first'}",
                 "--quiet"]) == 0
    return ["data.backend=arrow", f"data.token_cache={cache}"]


CASES += [(f"{name} (arrow backend)", on_arrow(overrides), expected)
          for name, overrides, expected in CASES if name in FILE_CASES]
CASES += [
    ("malformed CSV row (arrow backend)", on_arrow(lambda t, m: [train_file(t, HEADER + ROWS + "a,b,c,d\n")]),
     "cannot parse"),
    ("unknown data backend", lambda t, m: ["data.backend=disk"], "data.backend must be one of auto, memory, arrow"),
    ("arrow backend for a packaged corpus", lambda t, m: ["data.backend=arrow", "data.train_file=null",
                                                          "data.name=tweets"], "data.backend=arrow reads local files"),
    ("arrow backend for a json array", lambda t, m: ["data.backend=arrow", train_file(t, "[]", "d.json")],
     "data.backend=arrow reads .csv, .tsv, .jsonl, .parquet files, not 'd.json'"),
    ("arrow backend for multi-label data", lambda t, m: ["task=multilabel", "data.backend=arrow"],
     "data.backend=arrow holds single-label tables"),
    ("arrow backend for NER", lambda t, m: ["recipe=ner", "data.backend=arrow"],
     "data.backend=arrow holds single-label classification tables"),
    ("zero tokenizing processes", lambda t, m: ["data.num_proc=0"], "data.num_proc must be at least 1"),
    ("no label names", lambda t, m: ["data.label_names=[]"], "data.label_names is an empty list"),
    ("a token cache from another tokenizer", other_tokenizer_cache,
     "holds train tokens of another tokenizer (BertTokenizer"),
]



def multitask(tmp_path: Path, change, **section) -> list[str]:
    """task=multitask with a sentiment and an ner task (`change(tasks)` edits them) as a --config YAML."""
    import yaml

    tasks = [{"name": "sentiment", "task": "classification", "data": {"train_file": str(ASSETS / "reviews.csv")}},
             {"name": "ner", "task": "token-classification", "data": {"train_file": str(ASSETS / "ner_tiny.conll")}}]
    change(tasks)
    config = {"task": "multitask", "train": {"metric_for_best": "mean"}, "multitask": {"tasks": tasks} | section}
    return ["--config", str(write(tmp_path / "multitask.yaml", yaml.safe_dump(config)))]


CASES += [
    ("multitask: tasks sharing a name", lambda t, m: multitask(t, lambda ts: ts[1].update(name="sentiment")),
     "multitask.tasks share the name sentiment: give each task its own name"),
    ("multitask: a task without data", lambda t, m: multitask(t, lambda ts: ts[1].update(data={})),
     "multitask task ner has no data"),
    ("multitask: a task without a test split", lambda t, m: multitask(
        t, lambda ts: ts[0]["data"].update(test_fraction=0.0)),
     "multitask task sentiment: data.test_fraction must be in (0, 1)"),
    ("multitask: a task naming another checkpoint", lambda t, m: multitask(t, lambda ts: ts[1].update(model="bert")),
     "multitask task ner names another checkpoint than model="),
    ("multitask: a sampler temperature of 0", lambda t, m: multitask(t, lambda ts: None, sampler="temperature",
                                                                     temperature=0.0),
     "multitask.temperature must be above 0"),
    ("multitask: an empty task list", lambda t, m: multitask(t, lambda ts: ts.clear()),
     "task=multitask needs a non-empty multitask.tasks list"),
    ("multitask: a task named as a path", lambda t, m: multitask(t, lambda ts: ts[0].update(name="../x")),
     "a multitask task's name is a folder name"),
    ("multitask: a task named mean", lambda t, m: multitask(t, lambda ts: ts[0].update(name="mean")),
     "may not be named mean"),
    ("multitask: a task's data option out of range", lambda t, m: multitask(
        t, lambda ts: ts[1]["data"].update(max_length=2)), "multitask task ner: data.max_length must be at least 8"),
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


def test_missing_tracker_package_is_one_line(tmp_path, tiny_model_dir, reviews_csv, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        find_spec(name, *a))
    argv = ["recipe=sentiment", f"model={tiny_model_dir}", f"data.train_file={reviews_csv}", "data.name=null",
            "log_with=tensorboard", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("error: log_with=tensorboard needs the tensorboard package: pip install tensorboard "
                     "(or pip install 'nlptransfer[tensorboard]')")
    assert not (tmp_path / "run").exists()


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_write_failed(*args, **kwargs):  # what torch.save raises when the disk fills up mid-file
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")


def safetensors_no_space(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                          'left on device" })')


def partial_model_save(self, folder, *args, **kwargs):  # writes half a model, then the disk is full
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "model.safetensors").write_bytes(b"half a model")
    no_space()


def fail_on_call(number: int, original, failure):
    calls = {"n": 0}

    def replacement(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            return failure(*args, **kwargs)
        return original(*args, **kwargs)
    return replacement


def inject(monkeypatch, where: str, failure) -> None:
    """Make the second checkpoint's weights (or torch) file, or the final save, fail as a full disk does."""
    import torch
    from transformers import PreTrainedModel

    from nlptransfer.engine import checkpoint
    from nlptransfer.outputs import run_folder

    if where == "checkpoint weights":
        monkeypatch.setattr(checkpoint, "save_file", fail_on_call(2, checkpoint.save_file, failure))
    elif where == "checkpoint optimizer":
        monkeypatch.setattr(torch, "save", fail_on_call(5, torch.save, failure))  # rng, optimizer: 2nd checkpoint
    elif where == "final model":
        monkeypatch.setattr(PreTrainedModel, "save_pretrained", partial_model_save)
    elif where == "metrics.json":
        monkeypatch.setattr(run_folder.files, "write_json", failure)


WRITE_FAILURES = [
    ("checkpoint weights", safetensors_no_space, "checkpoints"),
    ("checkpoint weights", no_space, "checkpoints"),
    ("checkpoint optimizer", torch_write_failed, "checkpoints"),
    ("final model", no_space, "run"),
    ("metrics.json", no_space, "run"),
]


@pytest.mark.parametrize("where, failure, folder", WRITE_FAILURES,
                         ids=[f"{w[0]}: {w[1].__name__}" for w in WRITE_FAILURES])
def test_a_full_disk_is_one_line_naming_the_folder_and_the_space_and_leaves_no_partial_write(
        where, failure, folder, tmp_path, tiny_model_dir, reviews_csv, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    argv = ["recipe=sentiment", f"model={tiny_model_dir}", f"data.train_file={reviews_csv}", "data.name=null",
            "data.max_length=32", "train.max_steps=3", "train.batch_size=8", "checkpoint.every_steps=1",
            f"output_dir={run_dir}", "--quiet"]
    inject(monkeypatch, where, failure)
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    error = lines[0]
    expected_folder = run_dir / "checkpoints" if folder == "checkpoints" else run_dir
    assert f"no space left on the disk to write in {expected_folder}" in error
    assert "it needs about " in error and " MB" in error and "resume=auto" in error
    assert not (run_dir / "metrics.json").exists()
    hidden = [p for p in run_dir.rglob(".*") if p.name != ".nlptransfer.json"]  # the run folder's marker stays
    assert not hidden, hidden  # no staging folder, temporary file or lock left behind
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert steps and all((run_dir / "checkpoints" / step / "COMPLETE.json").is_file() for step in steps)
