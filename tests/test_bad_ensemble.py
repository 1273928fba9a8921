"""The ensemble command's bad inputs: each one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nlptransfer.cli.ensemble import main


@pytest.fixture(scope="module")
def variants(full_run, tmp_path_factory) -> dict[str, Path]:
    """Copies of a finished run, each changed in one way: other labels, another test split, unfinished."""
    root = tmp_path_factory.mktemp("variants")
    found = {}
    for name in ("other-labels", "other-test", "unfinished"):
        found[name] = root / name
        shutil.copytree(full_run, found[name])
    metrics_file = found["other-labels"] / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["data"]["label_names"] = list(reversed(metrics["data"]["label_names"]))
    metrics_file.write_text(json.dumps(metrics))
    predictions = found["other-test"] / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    rows[0]["text"] = "a text the other runs were not tested on"
    predictions.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    (found["unfinished"] / "metrics.json").unlink()
    return found


CASES = {
    "a single member": (lambda runs, v: [runs], "at least two finished runs, got 1"),
    "an empty list": (lambda runs, v: ["method=mean"], "at least two finished runs, got 0"),
    "a missing folder": (lambda runs, v: [runs, "no/such/run"], "no/such/run is not a folder"),
    "an unfinished run": (lambda runs, v: [runs, str(v["unfinished"])], "is not a finished run"),
    "other label sets": (lambda runs, v: [runs, str(v["other-labels"])], "have other label sets"),
    "other test splits": (lambda runs, v: [runs, str(v["other-test"])], "other test splits"),
    "an unknown method": (lambda runs, v: [runs, runs, "method=vote"], "unknown method 'vote'"),
    "a named token-classification run": (None, "no per-text label probabilities"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_ensemble_input_is_one_line_exit_2_nothing_written(case, full_run, ner_run, variants, tmp_path, capsys):
    make, expected = CASES[case]
    argv = make(str(full_run), variants) if make else [str(ner_run), str(ner_run)]
    out = tmp_path / "ens"
    assert main([*argv, f"output_dir={out}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and expected in error[0], error
    assert not out.exists()


def test_an_output_folder_of_the_users_files_is_refused(full_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([str(full_run), str(full_run), f"output_dir={tmp_path}"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_finished_ensemble_is_not_replaced_without_overwrite(full_run, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main([str(full_run), str(full_run), f"output_dir={out}", "--quiet"]) == 0
    before = (out / "metrics.json").read_text()
    assert main([str(full_run), str(full_run), f"output_dir={out}"]) == 2
    assert "already holds an ensemble" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    assert main([str(full_run), str(full_run), f"output_dir={out}", "overwrite=true", "--quiet"]) == 0


def test_stack_refuses_members_without_a_validation_split(full_run, tmp_path, capsys, monkeypatch):
    from nlptransfer import ensembles

    real = ensembles.predict_member

    def without_validation(member, with_validation, batch_size):
        data = real(member, with_validation, batch_size)
        data.validation = data.validation.take([])
        return data

    monkeypatch.setattr(ensembles, "predict_member", without_validation)
    out = tmp_path / "ens"
    assert main([str(full_run), str(full_run), "method=stack", f"output_dir={out}"]) == 2
    assert "fits on the validation split, and the members have none" in capsys.readouterr().err
    assert not out.exists()
