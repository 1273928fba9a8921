"""The bad-data catalogue: files and frames a run must refuse, through the CLI as a user meets them.

Every case is one `error:` line on stderr naming the problem and the fix, exit code 2, no traceback,
and nothing in the run folder but the config and the log written before the data is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import write

from nlptransfer.cli.run import main

HEADER = "text,label\n"
ROWS = "".join(f"this is text number {i},{'ab'[i % 2]}\n" for i in range(30))
TSV_ROWS = ROWS.replace(",", "\t")
TOPICS = ["sport", "business", "sport|business", "tech", "tech|sport"]
SHOUTED = "".join(f"  THIS is  Text number {i} ,{'ab'[i % 2]}\n" for i in range(30))  # ROWS, other case and spaces
SENTENCES = "".join(f"john\tB-PER\nsays\tO\nword{i}\tO\n\n" for i in range(20))
SHOUTED_SENTENCES = "".join(f"JOHN\tB-PER\nSAYS\tO\nWORD{i}\tO\n\n" for i in range(3))  # 3 of SENTENCES


def train_file(tmp_path: Path, content: str, name: str = "d.csv") -> str:
    return given("train_file", tmp_path / name, content)


def given(option: str, path: Path, content: str) -> str:
    """`data.<option>=<path>` of a file written with `content`."""
    return f"data.{option}={write(path, content)}"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def parquet(tmp_path: Path, labels: list) -> str:
    path = tmp_path / "d.parquet"
    tmp_path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": [f"text number {i}" for i in range(len(labels))], "label": labels}).to_parquet(path)
    return f"data.train_file={path}"


def unreadable(path: Path) -> Path:
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("this user (root?) reads a file without read permission anyway")
    return path


def topics_csv(separator: str = "|") -> str:
    return "text,label\n" + "".join(f"text number {i},{TOPICS[i % 5].replace('|', separator)}\n" for i in range(30))


# (name, recipe, overrides given tmp_path, expected fragment of the message)
CASES = [
    ("multilabel cells joined by | without data.label_separator", "sentiment",
     lambda t: ["task=multilabel", train_file(t, topics_csv())], "pass data.label_separator='|'"),
    ("multilabel cells joined by ; with data.label_separator=','", "sentiment",
     lambda t: ["task=multilabel", "data.label_separator=,",
                train_file(t, topics_csv(";").replace(",", "\t"), "d.tsv")],
     "(data.label_separator=',' does not split them); pass data.label_separator=';'"),
    ("multilabel: every cell joined by a comma", "sentiment",
     lambda t: ["task=multilabel", train_file(t, "text\tlabel\n" + "".join(
         f"text {i}\tred,{['blue', 'green', 'gray'][i % 3]}\n" for i in range(30)), "d.tsv")],
     "pass data.label_separator=','"),
    ("multilabel: a label list holding a list", "sentiment",
     lambda t: ["task=multilabel", train_file(t, jsonl([{"text": f"t {i}", "label": ["a", ["b"]]} for i in range(9)]),
                                              "d.jsonl")], "has ['b'] in its label list"),
    ("multilabel: a dict label", "sentiment",
     lambda t: ["task=multilabel", train_file(t, jsonl([{"text": f"t {i}", "label": {"a": 1}} for i in range(9)]),
                                              "d.jsonl")], "holds dicts like {'a': 1}, not single labels"),
    ("NER data tagged O only", "ner",
     lambda t: [train_file(t, SENTENCES.replace("B-PER", "O"), "d.conll")], "no entity tags in the training data"),
    ("list labels in JSONL without task=multilabel", "sentiment",
     lambda t: [train_file(t, jsonl([{"text": f"t {i}", "label": ["ab"[i % 2]]} for i in range(20)]), "d.jsonl")],
     "holds lists like ['a'], not single labels; for several labels per example use task=multilabel"),
    ("list labels in parquet without task=multilabel", "sentiment",
     lambda t: [parquet(t, [["a", "b"], ["b"]] * 10)], "holds lists like ['a', 'b'], not single labels"),
    ("dict labels in parquet", "sentiment",
     lambda t: [parquet(t, [{"x": "a"}, {"x": "b"}] * 10)], "holds dicts like {'x': 'a'}"),
    ("texts that are word lists", "sentiment",
     lambda t: [train_file(t, jsonl([{"text": ["a", "b"], "label": "ab"[i % 2]} for i in range(20)]), "d.jsonl")],
     "column 'text' (data.text_column) holds lists like ['a', 'b'], not texts"),
    ("a csv without read permission", "sentiment",
     lambda t: [f"data.train_file={unreadable(write(t / 'd.csv', HEADER + ROWS))}"],
     "permission denied; make it readable"),
    ("a CoNLL file without read permission", "ner",
     lambda t: [f"data.train_file={unreadable(write(t / 'd.conll', SENTENCES))}"], "permission denied"),
    ("a tab-separated file named .csv", "sentiment",
     lambda t: [train_file(t, "text\tlabel\n" + TSV_ROWS)], "looks tab-separated, not comma-separated as .csv says; "
                                                            "rename it d.tsv"),
    ("a tab-separated file named .csv, commas in its texts", "sentiment",
     lambda t: [train_file(t, "text\tlabel\n" + "hello, world\ta\n" + TSV_ROWS)], "rename it d.tsv"),
    ("a comma-separated file named .tsv", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS, "d.tsv")], "looks comma-separated, not tab-separated"),
    ("a bare carriage return inside a csv row", "sentiment",  # as pandas' to_csv writes a tweet holding one
     lambda t: [train_file(t, HEADER + "a text with a\rcarriage return,a\n" + ROWS)],
     "which end a row (pandas leaves a carriage return bare: write with to_csv(..., lineterminator='\\r\\n'))"),
    ("a bare carriage return inside a csv row, data.backend=arrow", "sentiment",
     lambda t: [train_file(t, HEADER + "a text with a\rcarriage return,a\n" + ROWS), "data.backend=arrow"],
     "has a row with 1 of the header's 2 columns ('a text with a'); give every row all the columns"),
    ("a tsv row without its label", "sentiment",
     lambda t: [train_file(t, "text\tlabel\n" + "a text alone\n" + TSV_ROWS, "d.tsv")],
     "has a row with 1 of the header's 2 columns ('a text alone')"),
    ("a semicolon-separated csv", "sentiment",
     lambda t: [train_file(t, "text;label\n" + ROWS.replace(",", ";"))], "save it comma-separated (.csv)"),
    ("data.max_train_samples=1", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS), "data.max_train_samples=1"],
     "the training data is too small: data.max_train_samples=1"),
    ("NER data.max_train_samples=1", "ner",
     lambda t: [train_file(t, SENTENCES + "".join(f"in\tO\nparis\tB-LOC\nnow{i}\tO\n\n" for i in range(20)), "d.conll"),
                "data.max_train_samples=1"],
     "the training data is too small: data.max_train_samples=1"),
    ("a header naming the label column twice", "sentiment",
     lambda t: [train_file(t, "text,label,label\n" + ROWS.replace("\n", ",x\n"))],
     "names column 'label' 2 times, which is ambiguous"),
    ("data.text_column equal to data.label_column", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS), "data.text_column=label"],
     "data.text_column and data.label_column both name the column 'label'"),
    ("data.text_pair_column equal to data.text_column", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS), "data.text_pair_column=text"],
     "data.text_column and data.text_pair_column both name the column 'text'"),
    ("NER data.tokens_column equal to data.tags_column", "ner",
     lambda t: [train_file(t, jsonl([{"tokens": ["a"], "tags": ["O"]}]), "d.jsonl"), "data.tags_column=tokens"],
     "data.tokens_column and data.tags_column both name the column 'tokens'"),
    ("the test file given as the validation file", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS),
                given("test_file", t / "test.csv", HEADER + "held out one,a\nheld out two,b\n"),
                f"data.validation_file={t / 'test.csv'}"],
     "every validation example also occurs in test"),
    ("a test file of training texts in other case and spacing", "sentiment",
     lambda t: [train_file(t, HEADER + ROWS),
                given("test_file", t / "test.csv", HEADER + SHOUTED)],
     "every validation example also occurs in test (ignoring case and white space), and 27 of the 30 test examples "
     "occur in training"),
    ("NER: the training file given as the test file", "ner",
     lambda t: [train_file(t, SENTENCES, "d.conll"), f"data.test_file={t / 'd.conll'}"],
     "test examples occur in training"),
    ("NER: every test sentence in the training file", "ner",
     lambda t: [train_file(t, SENTENCES, "d.conll"), given("test_file", t / "test.conll", SHOUTED_SENTENCES),
                given("validation_file", t / "v.conll", "anna\tB-PER\nleft\tO\n")],
     "every test example also occurs in training"),
]


@pytest.mark.parametrize("name, recipe, overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_exit_2_and_writes_nothing(name, recipe, overrides, expected, tmp_path, tiny_model_dir,
                                                        capsys):
    run_dir = tmp_path / "run"
    argv = [f"recipe={recipe}", f"model={tiny_model_dir}", "data.name=null", "train.max_steps=1",
            f"output_dir={run_dir}", "--quiet"]
    code = main(argv + overrides(tmp_path / "data"))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    error = lines[-1]  # warnings may come before it (e.g. rows dropped), never a traceback
    assert error.startswith("error: ")
    assert not any(line.startswith(("error", "Traceback", "--- Logging error")) for line in lines[:-1]), lines
    assert "Traceback" not in err
    assert expected.lower() in error.lower(), error
    left = {p.name for p in run_dir.iterdir()} if run_dir.exists() else set()
    assert left <= {"config.yaml", "train.log"}  # never metrics.json, model/ or checkpoints/
