"""The continual command's bad inputs: each one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import write

from nlptransfer.cli.continual import main


def stages_file(tmp_path, tiny_model_dir, reviews_csv, change=None) -> str:
    data = {"train_file": str(reviews_csv), "max_length": 32}
    options = {"model": tiny_model_dir, "output_dir": str(tmp_path / "out"),
               "stages": [{"name": "a", "data": dict(data), "labels": ["pos", "neg"]},
                          {"name": "b", "data": dict(data), "labels": ["neu"]}]}
    if change:
        change(options)
    return str(write(tmp_path / "stages.yaml", yaml.safe_dump(options)))


def second(key, value):
    return lambda options: options["stages"][1].update({key: value})


CASES = {
    "stages sharing a name": (second("name", "a"), [], "share the name a"),
    "no stages": (lambda o: o.update(stages=[]), [], "no stages"),
    "a stage without data": (second("data", {}), [], "stage b has no data"),
    "a stage without a test split": (second("data", {"train_file": "REVIEWS", "test_fraction": 0}), [],
                                     "stage b: data.test_fraction must be in (0, 1)"),
    "a stage whose labels have no test example": (second("data", {"train_file": "REVIEWS", "test_file": "POSNEG"}),
                                                  [], "stage b has no test split"),
    "a class-incremental stage repeating a class": (second("labels", ["neu", "pos"]), [], "repeats label pos"),
    "task-incremental stages with clashing labels": (second("labels", ["neu", "pos"]),
                                                     ["scenario=task-incremental"], "heads are told apart by name"),
    "domain-incremental stages with other labels": (None, ["scenario=domain-incremental"], "share one label set"),
    "an empty labels list": (second("labels", []), [], "labels list is empty"),
    "a label the data lacks": (second("labels", ["happy"]), [], "label 'happy' is not in its data"),
    "an unknown scenario": (None, ["scenario=sideways"], "scenario=sideways is not one of"),
    "an unknown method": (None, ["methods=[naive,magic]"], "unknown continual method 'magic'"),
    "a method combined with naive": (None, ["methods=[naive+replay]"], "combine with nothing"),
    "no method": (None, ["methods=[]"], "methods is empty"),
    "a negative lambda": (None, ["ewc.strength=-1"], "ewc.strength (lambda) must be 0 or more"),
    "a negative replay buffer": (None, ["replay.per_stage=-1"], "replay.per_stage must be 0 or more"),
    "a replay buffer larger than the data seen": (None, ["methods=[replay]", "replay.per_stage=1000"],
                                                  "cannot hold more than the data seen"),
    "an adapter for a one-label stage": (None, ["methods=[adapters]"], "stage b teaches one label (neu)"),
    "lwf alpha above 1": (None, ["lwf.alpha=1.5"], "lwf.alpha must be from 0 to 1"),
    "a train option a stage does not read": (None, ["train.patience=5"], "train.patience has no effect"),
    "extend under another scenario": (None, ["extend=RUN", "scenario=task-incremental"], "it is class-incremental"),
    "extend of a folder that is no run": (None, ["extend=NOWHERE"], "is not a finished run"),
    "extend with adapters": (None, ["extend=RUN", "methods=[adapters]"], "extend= grows the run's own head"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_continual_input_is_one_line_exit_2_nothing_written(case, tiny_model_dir, reviews_csv, full_run, tmp_path,
                                                                capsys):
    change, overrides, message = CASES[case]
    config = stages_file(tmp_path, tiny_model_dir, reviews_csv, change)
    posneg = write(tmp_path / "posneg.csv", "text,label\nthe film was great,pos\nthe day was awful,neg\n")
    text = open(config).read().replace("REVIEWS", str(reviews_csv)).replace("POSNEG", str(posneg))
    write(tmp_path / "stages.yaml", text)
    overrides = [item.replace("RUN", str(full_run)).replace("NOWHERE", str(tmp_path)) for item in overrides]
    assert main(["--config", config, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # a data warning may come before the error
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert sum(line.startswith("error") for line in err) == 1
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_users_files_or_another_sequence_is_refused(tiny_model_dir, reviews_csv, tmp_path, capsys):
    config = stages_file(tmp_path, tiny_model_dir, reviews_csv)
    write(tmp_path / "out" / "notes.txt", "mine")
    assert main(["--config", config]) == 2
    assert "holds files that nlptransfer did not write (notes.txt)" in capsys.readouterr().err
    (tmp_path / "out" / "notes.txt").unlink()
    write(tmp_path / "out" / ".nlptransfer.json", json.dumps({"kind": "continual"}))
    write(tmp_path / "out" / "state.json", json.dumps({"options": {"seed": 1}, "methods": {}}))
    write(tmp_path / "out" / "continual.yaml", "seed: 1\n")
    assert main(["--config", config, "--quiet"]) == 2
    assert "holds an unfinished sequence of other options" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "state.json").read_text()) == {"options": {"seed": 1}, "methods": {}}
