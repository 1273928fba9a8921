"""Teachers: finished run folders or ensemble folders, checked from their files alone, and what they predict.

A teacher is a finished run (metrics.json, config.yaml, predictions.jsonl, model/ or adapter/) of a task that
distillation is built for (`Task.distillation`), or an ensemble folder (`nlptransfer.ensemble`; its data is its
first member's). Several teachers must share one task, one label set (in order) and one test split (by a hash of
their predictions.jsonl): their probabilities are averaged. Per text a teacher gives every label's probability
(`Predictor.probabilities`, an ensemble's combined); per word of a sentence (NER) the distribution at the word's
first sub-token of the teacher's own tokenizer, so teacher and student may tokenize differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import tasks
from ..config import RunConfig, load_yaml
from ..errors import ConfigError
from ..outputs import folders


@dataclass
class Teacher:
    path: Path
    cfg: RunConfig
    """Its run's config (an ensemble's: its first member's): the data and splits the student learns from."""
    label_names: list[str]
    test_key: str
    """sha256 of its test texts in order (ensembles.split_key)."""
    runs: list[Path]
    """The run folders whose models predict (an ensemble: its members)."""
    ensemble: bool = False


def row_text(row: dict) -> str:
    """A predictions.jsonl row's text: its `text`, or its `words` joined by spaces (NER)."""
    return str(row["text"]) if "text" in row else " ".join(row["words"])


def read_run(location: str | Path, what: str = "teacher") -> Teacher:
    """A finished run as its folder describes it, before any model or data loads."""
    from ..ensembles import split_key

    path = Path(location).expanduser()
    if not (path / "metrics.json").is_file() or not (path / "config.yaml").is_file():
        raise ConfigError(f"{what} {location} is not a finished run (no metrics.json and config.yaml); finish it "
                          "(resume=auto), or pass a finished run or ensemble folder")
    cfg = load_yaml(RunConfig(), path / "config.yaml")
    if tasks.get(cfg.task).distillation is None:
        raise ConfigError(f"{what} {location} is a {cfg.task} run: distillation is built for classification, "
                          "multilabel and token-classification runs")
    if not cfg.data.name and not cfg.data.train_file:
        raise ConfigError(f"{what} {location} was trained on in-memory data (the Python API): its splits cannot be "
                          "read again; train it from a file or corpus (data.train_file=...)")
    if not (path / "model" / "config.json").is_file() and not (path / "adapter").is_dir():
        raise ConfigError(f"{what} {location} has no model/ or adapter/ folder to predict with; run it again")
    try:
        label_names = list(json.loads((path / "metrics.json").read_text(encoding="utf-8"))["data"]["label_names"])
        rows = [json.loads(line) for line in (path / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        pairs = [row.get("text_pair") for row in rows] if any("text_pair" in row for row in rows) else None
        key = split_key([row_text(row) for row in rows], pairs)
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{what} {location} has no readable metrics.json data.label_names and predictions.jsonl; "
                          "run it again with this nlptransfer version") from None
    return Teacher(path=path, cfg=cfg, label_names=label_names, test_key=key, runs=[path])


def read_teacher(location: str | Path) -> Teacher:
    """A teacher folder: a finished run, or a finished ensemble of runs."""
    from ..predictor import ENSEMBLE_FILE

    path = Path(location).expanduser()
    if not path.is_dir():
        raise ConfigError(f"teacher {location} is not a folder; pass finished run folders or an ensemble folder")
    if folders.kind_of(path) != folders.ENSEMBLE.name:
        return read_run(path)
    try:
        spec = json.loads((path / ENSEMBLE_FILE).read_text(encoding="utf-8"))
        members = [path / member for member in spec["members"]]
        label_names, key = list(spec["label_names"]), spec["test_split_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"teacher {location} is an unfinished or unreadable ensemble (no {ENSEMBLE_FILE}); build "
                          "it again with python -m nlptransfer.ensemble") from None
    if not (path / "metrics.json").is_file():
        raise ConfigError(f"teacher {location} is an unfinished ensemble (no metrics.json); build it again")
    first = read_run(members[0], f"the member {members[0]} of teacher")
    return Teacher(path=path, cfg=first.cfg, label_names=label_names, test_key=key, runs=members, ensemble=True)


def check_teachers(locations: list[str | Path]) -> list[Teacher]:
    """The teachers, refused in one line unless they are one or more finished runs or ensembles of one task, one
    label set and one test split."""
    if not locations:
        raise ConfigError("distillation needs a teacher: python -m nlptransfer.distill runs/<teacher run> "
                          "[runs/<another> ...] [model=...|layers=...]")
    from ..ensembles import refuse_unlike

    teachers = [read_teacher(location) for location in locations]
    for teacher in teachers[1:]:
        refuse_unlike("teachers", "distil", teachers[0], teacher)
    return teachers


def teacher_depth(teacher: Teacher) -> int:
    """The number of encoder layers of the teacher's (first) model, from its config.json; 0 where it has none
    (an adapter-only run, a pooled or stacked model: no plain transformers model to copy)."""
    config_file = teacher.runs[0] / "model" / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if str(config.get("model_type", "")).startswith("nlptransfer"):
        return 0
    return int(config.get("num_hidden_layers") or 0)


def probabilities(predictors: list, kind: str, split, batch_size: int, desc: str) -> list:
    """Every teacher's probabilities on a split, averaged: per text a row (`softmax`, `sigmoid`), per sentence a
    (words, labels) array (`tokens`)."""
    import numpy as np

    from ..ensembles import probabilities_of

    if not len(split):
        return []
    if kind == "tokens":
        each = [word_probabilities(predictor, split.words, batch_size, desc) for predictor in predictors]
        return [np.mean([member[i] for member in each], axis=0) for i in range(len(split))]
    return list(np.mean([probabilities_of(predictor, split, f"teacher: {desc}", batch_size)
                         for predictor in predictors], axis=0))


def word_probabilities(predictor, sentences: list[list[str]], batch_size: int, desc: str) -> list:
    """Per sentence, each word's tag distribution at its first sub-token (the teacher's own tokenizer and windows)."""
    import numpy as np
    import torch

    from ..engine import tokens
    from ..outputs import console

    model, tokenizer, names = predictor.pipe.model, predictor.pipe.tokenizer, predictor.label_names
    encoded = tokens.encode_words(sentences, [[names[0]] * len(words) for words in sentences], tokenizer, names,
                                  tokenizer.model_max_length, predictor.stride)
    found = [np.zeros((len(words), len(names)), dtype=np.float32) for words in sentences]
    bar = console.progress_bar(None, total=len(encoded), desc=f"teacher: {desc}", unit="window", leave=False)
    for start in range(0, len(encoded), batch_size):
        rows = encoded.features[start:start + batch_size]
        batch = tokenizer.pad([{k: v for k, v in row.items() if k not in ("labels", "example_index")}
                               for row in rows], return_tensors="pt").to(model.device)
        with torch.inference_mode():
            probs = torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy()
        for i, (row, window) in enumerate(zip(rows, encoded.windows[start:start + batch_size])):
            shift = probs.shape[1] - len(row["input_ids"]) if tokenizer.padding_side == "left" else 0
            for word, position in window.word_starts:
                found[window.sentence][word] = probs[i, position + shift]
        bar.update(len(rows))
    bar.close()
    return found
