"""Ensembles of finished runs (the library side of `python -m nlptransfer.ensemble RUN1 RUN2 ...`).

    from nlptransfer.ensembles import ensemble
    ensemble(["runs/full", "runs/lora", "runs/contrastive"], method="weights", output_dir="runs/ensemble")

Each member is a finished run folder (metrics.json) of a task whose models give every label's probability
(`Task.ensembles`: classification, multi-label). The members must share the label names (in order) and the test
split (the same texts in the same order, by a hash of their predictions.jsonl): one line refuses others. Each member's
data is read again from its config.yaml (the same seeded splits), its model loaded as `nlptransfer.predict` loads it,
and its validation and test probabilities recomputed. The method (`combiners`: mean, weights, stack) fits on the
validation probabilities only; the ensemble is scored on the shared test split beside every member. Multi-label
ensembles average probabilities with thresholds tuned on validation (`stack` is single-label).

The folder (kind `ensemble`, outputs/folders.py) gets ensemble.json (members by path relative to it, the method and
its parameters as JSON), predictions.jsonl, report.md, ensemble.png, README.md and metrics.json last; it is locked
while written, every file atomically, and nothing is written before every check passed and every member predicted.
`nlptransfer.predict model=FOLDER` and `load_model(FOLDER)` serve it (predictor.EnsemblePredictor).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from . import combiners, metrics, tasks
from .config import RunConfig, load_yaml
from .errors import ConfigError, DataError
from .outputs import console, files, folders, plots
from .outputs.run_folder import RunFolder
from .predictor import ENSEMBLE_FILE, Predictor, load_model

logger = logging.getLogger("nlptransfer")

CHUNK = 512
"""Texts per progress step while a member predicts a split."""


@dataclass
class Member:
    """One finished run of the ensemble: where it is, what it was trained on, what it predicts."""

    path: Path
    cfg: RunConfig
    label_names: list[str]
    test_key: str
    """sha256 of its test texts (and pairs) in order, as its predictions.jsonl holds them."""
    recorded: dict = field(default_factory=dict)
    """Its metrics.json's test scores."""
    validation: np.ndarray | None = None
    test: np.ndarray | None = None
    thresholds: list[float] | None = None
    """Multi-label: the thresholds its own run tuned."""
    validation_key: str | None = None
    """sha256 of its validation texts in order, as read again."""


@dataclass
class Ensemble:
    """What `ensemble` built: its folder, method and parameters, its test scores and each member's."""

    output_dir: Path
    method: str
    params: dict
    test_metrics: dict
    member_metrics: list[dict]


def split_key(texts, pairs=None) -> str:
    """A hash of a split's texts (and pair texts) in order: two runs with the same key hold out the same examples."""
    digest = hashlib.sha256()
    for text, pair in zip(texts, pairs if pairs is not None else [None] * len(texts)):
        digest.update(json.dumps([str(text), pair], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def read_member(location: str | Path) -> Member:
    """A member run as its folder describes it (config, labels, test split), before any model or data loads."""
    path = Path(location).expanduser()
    if not path.is_dir():
        raise ConfigError(f"ensemble member {location} is not a folder; pass finished run folders (runs/<run>)")
    if not (path / "metrics.json").is_file() or not (path / "config.yaml").is_file():
        raise ConfigError(f"ensemble member {location} is not a finished run (no metrics.json and config.yaml); "
                          "finish it (resume=auto) or leave it out")
    cfg = load_yaml(RunConfig(), path / "config.yaml")
    if not tasks.get(cfg.task).ensembles:
        raise ConfigError(f"ensemble member {location} is a {cfg.task} run: its models give no per-text label "
                          "probabilities to combine; ensembles combine classification and multilabel runs")
    if not cfg.data.name and not cfg.data.train_file:
        raise ConfigError(f"ensemble member {location} was trained on in-memory data (the Python API): its splits "
                          "cannot be read again; train it from a file or corpus (data.train_file=...)")
    try:
        recorded = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in (path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        label_names = list(recorded["data"]["label_names"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"ensemble member {location} has no readable metrics.json data.label_names and "
                          "predictions.jsonl; run it again with this nlptransfer version") from None
    pairs = [row.get("text_pair") for row in rows] if any("text_pair" in row for row in rows) else None
    return Member(path=path, cfg=cfg, label_names=label_names, recorded=recorded.get("test", {}),
                  test_key=split_key([row.get("text") for row in rows], pairs))


def check_members(runs: list[str | Path]) -> list[Member]:
    """The members, refused in one line unless there are two or more finished runs of one label set, one task and
    one test split."""
    runs = list(runs)
    if len(runs) < 2:
        raise ConfigError(f"an ensemble needs at least two finished runs, got {len(runs)}: "
                          "python -m nlptransfer.ensemble runs/A runs/B [method=mean]")
    members = [read_member(run) for run in runs]
    for member in members[1:]:
        refuse_unlike("ensemble members", "combine", members[0], member)
    return members


def refuse_unlike(noun: str, verb: str, first, other) -> None:
    """Refuse two runs (ensemble members, distillation teachers: objects with `path`, `cfg`, `label_names`,
    `test_key`) of other tasks, label sets or test splits, in one line."""
    if other.cfg.task != first.cfg.task:
        raise ConfigError(f"{noun} {first.path} and {other.path} are runs of different tasks ({first.cfg.task}, "
                          f"{other.cfg.task}); {verb} runs of one task")
    if other.label_names != first.label_names:
        raise ConfigError(f"{noun} {first.path} and {other.path} have other label sets "
                          f"({', '.join(first.label_names)} vs {', '.join(other.label_names)}); {verb} runs "
                          "trained on the same labels in the same order")
    if other.test_key != first.test_key:
        raise ConfigError(f"{noun} {first.path} and {other.path} were tested on other test splits "
                          f"(their predictions.jsonl texts differ); {verb} runs of the same data, seed and "
                          "split options")


def check_output(out: Path, overwrite: bool, members: list[Member]) -> None:
    """Refuse a file, a folder of another kind or of the user's files, a finished ensemble without overwrite, and a
    folder inside a member or holding one; nothing is written here."""
    blocking = next((path for path in (out, *out.absolute().parents) if path.is_file()), None)
    if blocking is not None:
        raise ConfigError(f"output_dir={out}: {blocking} is a file, not a folder; choose another output_dir")
    for member in members:
        if folders.inside(out, member.path):
            raise ConfigError(f"output_dir={out} is inside the member run {member.path}; choose a folder of its own")
    folders.check_writable(out, folders.ENSEMBLE, "output_dir", replacing=overwrite,
                           inputs=[("member", member.path) for member in members])
    if (out / "metrics.json").exists() and not overwrite:
        raise ConfigError(f"{out} already holds an ensemble; choose another output_dir or pass overwrite=true")


def ensemble(runs: list[str | Path], method: str = "mean", output_dir: str | Path | None = None,
             overwrite: bool = False, batch_size: int = 32) -> Ensemble:
    """Combine finished `runs` by `method` (mean, weights, stack), score on their shared test split beside each
    member, and write the ensemble folder; returns what was built."""
    combiner = combiners.get(method)
    members = check_members(runs)
    multilabel = tasks.get(members[0].cfg.task).multilabel
    if multilabel and not combiner.multilabel:
        raise ConfigError(f"method={method} is single-label; combine multi-label runs with method=mean or "
                          "method=weights")
    out = Path(output_dir or f"runs/ensemble-{method}-{datetime.now():%Y%m%d-%H%M%S}")
    check_output(out, overwrite, members)
    needs_validation = combiner.fits or multilabel  # fitted weights, or thresholds tuned on validation
    data = None
    for number, member in enumerate(members, 1):
        logger.info("ensemble: member %d of %d: %s", number, len(members), member.path)
        data = predict_member(member, needs_validation, batch_size)
    validation_gold, test_gold = gold(data.validation, data), gold(data.test, data)
    if needs_validation:
        check_validation(members, combiner, len(validation_gold))
    params = combiner.fit([m.validation for m in members], validation_gold, multilabel) if combiner.fits else {}
    thresholds = None
    if multilabel and len(validation_gold):
        thresholds = metrics.tune_thresholds(combiner.combine(params, [m.validation for m in members], multilabel),
                                             validation_gold).tolist()
    combined = combiner.combine(params, [m.test for m in members], multilabel)
    scored = score(combined, test_gold, members[0].label_names, multilabel, thresholds)
    member_scores = [score(m.test, test_gold, m.label_names, multilabel, m.thresholds) for m in members]
    result = Ensemble(out, method, params, scored, [
        {"run": str(m.path), **{k: s[k] for k in columns(multilabel)}, "recorded": {k: m.recorded.get(k) for k in
                                                                                     columns(multilabel)}}
        for m, s in zip(members, member_scores)])
    write_folder(result, members, data, combined, thresholds, overwrite)
    logger.info("ensemble (%s) test accuracy %.4f; best member %.4f; outputs in %s", method, scored["accuracy"],
                max(s["accuracy"] for s in member_scores), out)
    return result


def predict_member(member: Member, with_validation: bool, batch_size: int):
    """Read the member's data again (its seeded splits), check that its test split is the one its run predicted,
    and set its validation and test probabilities; returns the data."""
    task = tasks.get(member.cfg.task)
    data = task.load_data(member.cfg)
    if split_key(list(data.test.texts), data.test.text_pairs) != member.test_key:
        raise DataError(f"reading the data of member {member.path} again gives another test split than its "
                        "predictions.jsonl (its data file changed since the run?); train it again on this data")
    if list(data.label_names) != member.label_names:
        raise DataError(f"the data of member {member.path} now has other labels ({', '.join(data.label_names)}) "
                        "than its run; train it again on this data")
    predictor = load_model(member.path)
    if predictor.label_names != member.label_names:
        raise DataError(f"the model of member {member.path} predicts {', '.join(predictor.label_names)}, not its "
                        f"run's labels; train it again")
    member.thresholds = predictor.settings.get("thresholds")
    member.validation = (probabilities_of(predictor, data.validation, "validation", batch_size)
                         if with_validation else None)
    member.test = probabilities_of(predictor, data.test, "test", batch_size)
    member.validation_key = split_key(list(data.validation.texts), data.validation.text_pairs)
    return data


def probabilities_of(predictor: Predictor, split, name: str, batch_size: int) -> np.ndarray:
    """The member's probabilities on a split, in chunks, with a progress bar."""
    texts, pairs = list(split.texts), list(split.text_pairs) if split.text_pairs is not None else None
    labels = len(predictor.label_names)
    if not texts:
        return np.zeros((0, labels))
    bar = console.progress_bar(None, total=len(texts), desc=f"predicting {name}", unit="text", leave=False)
    parts = []
    for start in range(0, len(texts), CHUNK):
        part = slice(start, start + CHUNK)
        parts.append(predictor.probabilities(texts[part], pairs[part] if pairs else None, batch_size))
        bar.update(len(texts[part]))
    bar.close()
    return np.concatenate(parts)


def check_validation(members: list[Member], combiner: combiners.Combiner, size: int) -> None:
    """A fitted method needs the members' one, non-empty validation split (multi-label thresholds want one too)."""
    keys = {member.validation_key for member in members}
    if len(keys) > 1:
        raise ConfigError("the members were validated on other validation splits (other data.validation_fraction, "
                          "max_validation_samples or few-shot options), so nothing can be fitted on their shared "
                          "validation predictions; use method=mean or runs of the same split options")
    if combiner.fits and not size:
        raise ConfigError(f"method={combiner.name} fits on the validation split, and the members have none "
                          "(few-shot or data.validation_fraction=0); use method=mean")


def gold(split, data) -> np.ndarray:
    from .tasks.classification import targets

    return targets(split, data)


def columns(multilabel: bool) -> list[str]:
    return ["accuracy", "macro_f1"] + (["micro_f1"] if multilabel else [])


def score(probabilities: np.ndarray, references: np.ndarray, label_names: list[str], multilabel: bool,
          thresholds=None) -> dict:
    """The task's test metrics of these probabilities (multi-label at `thresholds`, 0.5 without)."""
    if multilabel:
        return metrics.multilabel_metrics(probabilities, references, label_names,
                                          0.5 if thresholds is None else np.asarray(thresholds))
    return metrics.classification_metrics(probabilities.argmax(-1).tolist(), references.tolist(), label_names)


def prediction_rows(members: list[Member], data, combined: np.ndarray, thresholds) -> list[dict]:
    """predictions.jsonl: each test text with its gold label(s), the ensemble's prediction and each member's."""
    names, split = members[0].label_names, data.test
    pairs = list(split.text_pairs) if split.text_pairs is not None else [None] * len(split)
    rows = []
    for i, (text, pair, labels) in enumerate(zip(split.texts, pairs, split.labels)):
        row = {"text": str(text)} | ({"text_pair": pair} if pair is not None else {})
        if data.multilabel:
            cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(names))
            row |= {"labels": [names[j] for j in labels],
                    "predicted": [n for n, p, t in zip(names, combined[i], cut) if p >= t],
                    "scores": {n: round(float(p), 6) for n, p in zip(names, combined[i])}}
        else:
            row |= {"label": names[labels], "predicted": names[int(combined[i].argmax())],
                    "score": round(float(combined[i].max()), 6),
                    "members": [names[int(m.test[i].argmax())] for m in members]}
        rows.append(row)
    return rows


def write_folder(result: Ensemble, members: list[Member], data, combined: np.ndarray, thresholds,
                 overwrite: bool) -> None:
    """The ensemble folder, under its lock: marker, ensemble.json, predictions, report, plot, card, metrics last."""
    out, kind = result.output_dir, folders.ENSEMBLE
    folders.make_output_dir(out)
    with RunFolder(out) as lock:
        lock.lock()
        check_output(out, overwrite, members)  # again under the lock: another ensemble may have finished there
        folders.claim(out, kind)
        (out / "metrics.json").unlink(missing_ok=True)  # first: a folder half replaced never looks finished
        folders.clear(out, kind)
        spec = {"members": [os.path.relpath(m.path.resolve(), out.resolve()) for m in members],
                "method": result.method, "summary": combiners.get(result.method).summary, "params": result.params,
                "fitted_on": "validation" if combiners.get(result.method).fits else None,
                "task": members[0].cfg.task, "label_names": members[0].label_names, "thresholds": thresholds,
                "test_split_sha256": members[0].test_key}
        files.write_json(out / ENSEMBLE_FILE, spec)
        files.write_jsonl(out / "predictions.jsonl", prediction_rows(members, data, combined, thresholds))
        plot(result, out / "ensemble.png")
        files.write_text(out / "report.md", "\n".join(report_lines(result, members, data)))
        files.write_text(out / "README.md", "\n".join(card_lines(result, members, data)))
        files.write_json(out / "metrics.json", {
            "test": result.test_metrics, "members": result.member_metrics, "method": result.method,
            "best_member": best_member(result)["run"],
            "gain_over_best_member": {key: result.test_metrics[key] - best_member(result)[key]
                                      for key in columns(data.multilabel)},
            "data": {"label_names": members[0].label_names,
                     "examples": {"validation": len(data.validation), "test": len(data.test)}}})


def best_member(result: Ensemble) -> dict:
    return max(result.member_metrics, key=lambda row: row["accuracy"])


def table_lines(result: Ensemble, multilabel: bool) -> list[str]:
    keys = columns(multilabel)
    lines = ["| model | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for row in result.member_metrics:
        lines.append(f"| member `{row['run']}` | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
    lines.append(f"| **ensemble ({result.method})** | "
                 + " | ".join(f"**{result.test_metrics[k]:.4f}**" for k in keys) + " |")
    return lines


def method_line(result: Ensemble) -> str:
    combiner = combiners.get(result.method)
    line = f"Method `{result.method}`: {combiner.summary}."
    if "weights" in result.params:
        line += " Weights: " + ", ".join(f"{w:.3f}" for w in result.params["weights"]) + " (members in order)."
    if combiner.fits:
        line += " Fitted on the members' validation predictions only; the test split was not seen."
    return line


def report_lines(result: Ensemble, members: list[Member], data) -> list[str]:
    best = best_member(result)
    gain = result.test_metrics["accuracy"] - best["accuracy"]
    return [f"# Ensemble of {len(members)} runs", "", method_line(result), "",
            f"Scored on the members' shared test split ({len(data.test)} examples; labels "
            f"{', '.join(members[0].label_names)}). Each member's scores are recomputed here from its model on the "
            "same texts, as the ensemble's are.", "", *table_lines(result, data.multilabel), "",
            f"Test accuracy against the best member (`{best['run']}`): {gain:+.4f}.", "",
            "![test scores of the members and the ensemble](ensemble.png)", ""]


def card_lines(result: Ensemble, members: list[Member], data) -> list[str]:
    """The ensemble's model card: what it combines, how, how well, how to use it."""
    return ["---", "library_name: nlptransfer", "tags:", "- nlptransfer", "- ensemble", "---", "",
            f"# An ensemble of {len(members)} text classifiers", "",
            f"It predicts {'any number' if data.multilabel else 'one'} of: {', '.join(members[0].label_names)}.",
            method_line(result), "", "## Members", "",
            *[f"- `{m.path}` (strategy `{m.cfg.strategy}`, model `{m.cfg.model}`)" for m in members], "",
            "Their paths are kept relative to this folder (ensemble.json): keep the member runs beside it.", "",
            "## Results on the shared test split", "", *table_lines(result, data.multilabel), "", "## Usage", "",
            "```bash", f"python -m nlptransfer.predict model={result.output_dir} text=\"...\"", "```", "",
            "```python", "from nlptransfer import load_model", "",
            f"load_model(\"{result.output_dir}\").predict([\"...\"])", "```", "",
            "Each prediction runs every member: it costs the sum of their prediction times.", ""]


def plot(result: Ensemble, path: Path) -> None:
    """Bars of test accuracy and macro-F1: each member, then the ensemble."""
    figure = plots.new_figure(max(5, 1.2 * len(result.member_metrics) + 3), 3.5)
    axes = figure.subplots()
    names = [Path(row["run"]).name for row in result.member_metrics] + [f"ensemble ({result.method})"]
    width = 0.4
    for offset, key in ((-width / 2, "accuracy"), (width / 2, "macro_f1")):
        values = [row[key] for row in result.member_metrics] + [result.test_metrics[key]]
        axes.bar(np.arange(len(names)) + offset, values, width, label=key)
    axes.set_xticks(np.arange(len(names)), names, rotation=20, ha="right")
    axes.set_ylabel("test score")
    axes.set_ylim(0, 1)
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    plots.save_figure(figure, path)
