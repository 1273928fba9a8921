"""The student's run: a normal `pipeline.run` whose objective is the teacher's soft targets (`pipeline.Inputs`).

`prepare` checks that the run read the teachers' data (the same test split), computes the teachers' probabilities on
the training texts, the unlabeled texts and the test texts once (cached in `distill/teacher-outputs.npz`: a resumed or
re-run distillation reuses them), scores the teachers on the test split, encodes the unlabeled texts with the
student's own tokenizer after the training rows, and gives every row its softened targets. `wrap` puts the student in
`engine.distillation.DistilledStudent`, whose loss the loop minimizes; `unwrap` gives the plain student back to be
tested and saved as any run's model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..engine import distillation as engine
from ..errors import DataError
from ..outputs import files
from .teachers import Teacher, probabilities

logger = logging.getLogger("nlptransfer")

CACHE = Path("distill") / "teacher-outputs.npz"
PARTS = ("train", "unlabeled", "test")


class Distillation:
    """The objective of a student's run: the teachers' softened outputs (temperature, alpha) on its training texts
    and the unlabeled ones."""

    def __init__(self, teachers: list[Teacher], unlabeled: list, temperature: float, alpha: float, batch_size: int,
                 student: str):
        self.teachers, self.unlabeled = teachers, unlabeled
        self.temperature, self.alpha, self.batch_size, self.student = temperature, alpha, batch_size, student
        self.kind: str | None = None
        self.teacher_test: dict = {}
        self.labeled_texts = 0

    def fingerprint(self) -> dict:
        digest = hashlib.sha256(json.dumps([str(t) for t in self.unlabeled], ensure_ascii=False).encode("utf-8"))
        return {"distill.teachers": [str(t.path.resolve()) for t in self.teachers],
                "distill.temperature": self.temperature, "distill.alpha": self.alpha,
                "distill.student": self.student, "distill.unlabeled_sha256": digest.hexdigest()}

    def prepare(self, folder: Path, task, data, encoded: dict, tokenizer, cfg) -> dict:
        """The training rows with the unlabeled ones after them, each with its soft targets (see the module)."""
        from ..ensembles import split_key

        self.kind, self.labeled_texts = task.distillation, len(data.train)
        if split_key(list(task.split_texts(data.test)), getattr(data.test, "text_pairs", None)) \
                != self.teachers[0].test_key:
            raise DataError(f"reading the teacher's data again gives another test split than its predictions.jsonl "
                            f"(its data file changed since {self.teachers[0].path} ran?); train the teacher again")
        unlabeled = unlabeled_split(self.unlabeled, data, self.kind)
        several = len(self.teachers) > 1  # one teacher's test scores are its folder's; averaged ones are computed
        outputs = self.teacher_outputs(folder / CACHE, {"train": data.train, "unlabeled": unlabeled,
                                                        "test": data.test if several else first(data.test, 0)})
        self.teacher_test = (teacher_scores(outputs["test"], outputs["thresholds"], data, self.kind) if several
                             else recorded_scores(self.teachers[0]))
        logger.info("distillation: teacher test %s", ", ".join(f"{k} {v:.4f}" for k, v in self.teacher_test.items()
                                                                 if isinstance(v, float)))
        if not len(data.train) and not len(unlabeled):
            raise DataError("nothing to distil on: no labeled training example and no unlabeled text; give "
                            "unlabeled.file=texts.txt")
        extra = task.encode(dataclasses.replace(data, train=unlabeled, validation=first(unlabeled),
                                                test=first(unlabeled)), tokenizer, cfg)["train"] if len(unlabeled) \
            else None
        joined = engine.join_splits(encoded["train"], extra, len(data.train))
        soft = [engine.tempered(p, self.temperature, self.kind) for p in [*outputs["train"], *outputs["unlabeled"]]]
        self.targets = engine.row_targets(soft, joined, self.kind)
        sources = ([w.sentence for w in joined.windows] if self.kind == "tokens" else joined.documents)
        self.labeled = torch.tensor([source < len(data.train) for source in sources], dtype=torch.bool)
        self.padding_side = tokenizer.padding_side
        logger.info("distillation: %d labeled + %d unlabeled %s (%d training rows), temperature %g, alpha %g",
                    len(data.train), len(unlabeled), "sentences" if self.kind == "tokens" else "texts", len(joined),
                    self.temperature, self.alpha)
        return encoded | {"train": joined}

    def teacher_outputs(self, cache: Path, splits: dict) -> dict:
        """The teachers' averaged probabilities on each split (and their multi-label thresholds), from the cache when
        it holds them for these teachers and texts."""
        from ..ensembles import split_key
        from ..predictor import load_model

        key = hashlib.sha256(json.dumps({
            "teachers": [[str(t.path.resolve()), files_digest(t)] for t in self.teachers], "kind": self.kind,
            "splits": {name: split_key([str(x) for x in texts_of(split, self.kind)]) for name, split in
                       splits.items()}}).encode("utf-8")).hexdigest()
        cached = read_cache(cache, key)
        if cached is not None:
            logger.info("distillation: the teachers' outputs come from %s (computed before)", cache)
            return cached
        predictors = [load_model(teacher.path) for teacher in self.teachers]
        outputs = {name: probabilities(predictors, self.kind, split, self.batch_size, name)
                   for name, split in splits.items()}
        found = [p.settings.get("thresholds") for p in predictors if p.settings.get("thresholds")]
        outputs["thresholds"] = np.mean(found, axis=0) if found else None
        write_cache(cache, key, outputs)
        return outputs

    def wrap(self, model, loss_fn):
        return engine.DistilledStudent(model, self.targets, self.labeled, self.temperature, self.alpha, self.kind,
                                       loss_fn, self.padding_side)

    def unwrap(self, module):
        return module.student

    def summary(self) -> dict:
        return {"distilled_from": {
            "teachers": [str(t.path) for t in self.teachers],
            "ensembles": [str(t.path) for t in self.teachers if t.ensemble], "student": self.student,
            "temperature": self.temperature, "alpha": self.alpha, "labeled_texts": self.labeled_texts,
            "unlabeled_texts": len(self.unlabeled), "teacher_test": self.teacher_test}}


def texts_of(split, kind: str) -> list:
    """A split's texts (with their pairs), or its sentences' words."""
    if kind == "tokens":
        return [json.dumps(words, ensure_ascii=False) for words in split.words]
    pairs = split.text_pairs if split.text_pairs is not None else [None] * len(split)
    return [json.dumps([str(text), pair], ensure_ascii=False) for text, pair in zip(split.texts, pairs)]


def files_digest(teacher: Teacher) -> str:
    """What identifies a teacher's trained state: its runs' metrics.json (rewritten by every new run)."""
    digest = hashlib.sha256()
    for run in teacher.runs:
        digest.update((run / "metrics.json").read_bytes())
    return digest.hexdigest()


def unlabeled_split(texts: list, data, kind: str):
    """The unlabeled texts as a split of the task's kind; their labels are placeholders the loss never reads."""
    if kind == "tokens":
        from ..data.conll import TaggedSentence, TokenSplit

        return TokenSplit([TaggedSentence(list(words), [data.label_names[0]] * len(words), "unlabeled")
                           for words in texts])
    from ..data.classification import TextSplit

    return TextSplit(list(texts), [[] if data.multilabel else 0 for _ in texts])


def first(split, count: int = 1):
    """The split's first `count` examples (the task encodes three splits; the unlabeled text needs one)."""
    return dataclasses.replace(split, sentences=split.sentences[:count]) if hasattr(split, "sentences") \
        else split.take(list(range(count)))


def recorded_scores(teacher: Teacher) -> dict:
    """The test scores a teacher's folder recorded (its run's, or its ensemble's) on the test split the student is
    tested on (the same texts: checked by their hash)."""
    test = json.loads((teacher.path / "metrics.json").read_text(encoding="utf-8")).get("test", {})
    return {key: value for key, value in test.items() if isinstance(value, float)}


def teacher_scores(test: list, thresholds, data, kind: str) -> dict:
    """The teachers' (averaged) test metrics, on the split the student is tested on."""
    from ..ensembles import gold, score

    if kind == "tokens":
        tags = [[data.label_names[int(i)] for i in np.asarray(words).argmax(-1)] for words in test]
        found = metrics.entity_metrics(tags, data.test.tags, data.entity_types)
        return {k: found[k] for k in ("f1", "precision", "recall", "accuracy")}
    found = score(np.asarray(test), gold(data.test, data), data.label_names, kind == "sigmoid", thresholds)
    return {k: v for k, v in found.items() if isinstance(v, float)}


def write_cache(path: Path, key: str, outputs: dict) -> None:
    """One npz (no pickles): per split its rows, and per sentence its word count (`tokens`)."""
    arrays = {"key": np.asarray(key)}
    for name in PARTS:
        rows = outputs[name]
        arrays[name] = np.concatenate(rows) if rows and np.ndim(rows[0]) == 2 else np.asarray(rows, dtype=np.float32)
        arrays[f"{name}_lengths"] = np.asarray([len(r) for r in rows] if rows and np.ndim(rows[0]) == 2 else [],
                                               dtype=np.int64)
    if outputs["thresholds"] is not None:
        arrays["thresholds"] = np.asarray(outputs["thresholds"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.make_dir(path.parent)
    files.write_bytes(path, buffer.getvalue())


def read_cache(path: Path, key: str) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                return None
            outputs = {}
            for name in PARTS:
                rows, lengths = saved[name], saved[f"{name}_lengths"]
                outputs[name] = (np.split(rows, np.cumsum(lengths)[:-1]) if len(lengths) else list(rows))
            outputs["thresholds"] = saved["thresholds"] if "thresholds" in saved.files else None
            return outputs
    except (OSError, ValueError, KeyError):
        return None
