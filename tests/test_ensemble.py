"""Ensembles of finished runs (nlptransfer/ensembles.py, combiners.py, cli/ensemble.py): what they predict, what
their methods fit on, the folder they write and that predict serves, and the inputs they refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nlptransfer import combiners
from nlptransfer.cli.ensemble import main
from nlptransfer.ensembles import ensemble
from nlptransfer.predictor import EnsemblePredictor, load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def full_copy(full_run, tmp_path_factory) -> Path:
    """A second folder holding the same finished run as `full_run`."""
    copy = tmp_path_factory.mktemp("copy") / "full-copy"
    shutil.copytree(full_run, copy)
    return copy


def texts_of(run: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (run / "predictions.jsonl").read_text().splitlines()]


def test_two_identical_runs_predict_as_either(full_run, full_copy, tmp_path):
    built = ensemble([full_run, full_copy], "mean", tmp_path / "ens")
    member = load_model(full_run)
    served = load_model(tmp_path / "ens")
    assert isinstance(served, EnsemblePredictor)
    texts = texts_of(full_run) + ["a great film", "the food was bad"]
    assert np.allclose(served.probabilities(texts), member.probabilities(texts), atol=1e-6)
    assert [row["label"] for row in served.predict(texts)] == [row["label"] for row in member.predict(texts)]
    assert built.test_metrics["accuracy"] == built.member_metrics[0]["accuracy"]
    written = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert not any(Path(m).is_absolute() for m in written["members"])  # the folder moves with its members
    assert [(tmp_path / "ens" / m).resolve() for m in written["members"]] == [full_run.resolve(), full_copy.resolve()]
    names = {p.name for p in (tmp_path / "ens").iterdir()}
    assert {"ensemble.json", "metrics.json", "predictions.jsonl", "report.md", "README.md", "ensemble.png"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib"))]


def test_mean_of_two_runs_is_the_average_of_their_probabilities(full_run, lora_run, tmp_path, capsys):
    assert main([str(full_run), str(lora_run), f"output_dir={tmp_path / 'ens'}", "--quiet"]) == 0
    texts = texts_of(full_run)[:4] + ["an amazing show"]
    expected = (load_model(full_run).probabilities(texts) + load_model(lora_run).probabilities(texts)) / 2
    assert np.allclose(load_model(tmp_path / "ens").probabilities(texts), expected, atol=1e-6)
    capsys.readouterr()
    from nlptransfer.cli.predict import main as predict

    assert predict([f"model={tmp_path / 'ens'}", "text=an amazing show", "all_scores=true"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["label"] in ("neg", "neu", "pos") and set(row["scores"]) == {"neg", "neu", "pos"}
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert [m["run"] for m in metrics["members"]] == [str(full_run), str(lora_run)]
    assert "| **ensemble (mean)** |" in (tmp_path / "ens" / "report.md").read_text()


def test_stack_and_weights_fit_on_validation_predictions_only(full_run, lora_run, tmp_path, monkeypatch):
    from nlptransfer import ensembles

    seen = {}
    for method in ("stack", "weights"):
        combiner = combiners.get(method)
        fit = type(combiner).fit

        def spy(self, probabilities, gold, multilabel, fit=fit, method=method):
            seen[method] = ([p.copy() for p in probabilities], gold.copy())
            return fit(self, probabilities, gold, multilabel)

        monkeypatch.setattr(type(combiner), "fit", spy)
        ensemble([full_run, lora_run], method, tmp_path / method)
    cfg = ensembles.read_member(full_run).cfg
    from nlptransfer import tasks

    data = tasks.get(cfg.task).load_data(cfg)
    validation = [load_model(run).probabilities(list(data.validation.texts)) for run in (full_run, lora_run)]
    assert set(seen) == {"stack", "weights"}
    for probabilities, gold in seen.values():
        assert gold.tolist() == list(data.validation.labels) != list(data.test.labels)
        assert all(np.allclose(p, v, atol=1e-6) for p, v in zip(probabilities, validation))
    weights = json.loads((tmp_path / "weights" / "ensemble.json").read_text())["params"]["weights"]
    assert min(weights) >= 0 and sum(weights) == pytest.approx(1)
    stacked = json.loads((tmp_path / "stack" / "ensemble.json").read_text())
    assert stacked["fitted_on"] == "validation" and len(stacked["params"]["coef"][0]) == 2 * 3


@pytest.mark.parametrize("classes", [2, 3])
def test_stack_combines_as_the_fitted_logistic_regression_predicts(classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    members = [rng.dirichlet(np.ones(classes), size=40) for _ in range(2)]
    gold = rng.integers(0, classes, size=40)
    params = combiners.get("stack").fit(members, gold, multilabel=False)
    expected = LogisticRegression(max_iter=1000).fit(np.hstack(members), gold).predict_proba(np.hstack(members))
    assert np.allclose(combiners.get("stack").combine(params, members, False), expected, atol=1e-8)
    json.dumps(params)  # plain JSON, never a pickle


def test_weights_prefer_the_member_that_knows_the_labels():
    gold = np.array([0, 1, 2, 0, 1, 2] * 5)
    right = np.eye(3)[gold] * 0.9 + 0.1 / 3
    noise = np.full((len(gold), 3), 1 / 3)
    params = combiners.get("weights").fit([noise, right], gold, multilabel=False)
    assert params["weights"][1] > 0.9 and sum(params["weights"]) == pytest.approx(1)


def test_the_command_module_loads_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys\nfrom nlptransfer.cli.ensemble import main\nassert main(['--help']) == 0\n"
            "assert main(['a', 'b', 'method=vote']) == 2\nimport nlptransfer.ensemble\n"
            "print('heavy:', *[m for m in ('torch', 'transformers', 'sklearn', 'numpy') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy:"
