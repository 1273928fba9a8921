"""`distill(teachers, options)`: check everything, build the student, run it as a normal run, compare it.

Nothing is written before the teachers, the options, the unlabeled texts and the output folder passed their checks
(the run folder's own checks come from `pipeline.run`). A student copied from the teacher's model (`layers=`) is
built in a temporary folder, which the run loads as its model (`Inputs.model_path`), with the teacher's head
(keep_head); its config.yaml names the teacher's run as `model=`. A resume rebuilds the same copy.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path

from .. import tasks
from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..outputs.folders import config_inputs
from ..outputs.run_folder import RunFolder
from .settings import DistillOptions, check_options, layer_setting
from .teachers import Teacher, check_teachers, teacher_depth

logger = logging.getLogger("nlptransfer")


def distill(teachers: list[str | Path], options: DistillOptions | None = None):
    """Distil `teachers` (run or ensemble folders) into a student; returns the student run's `pipeline.Results`
    (its `extra["distilled_from"]` and the folder's report.md hold the comparison)."""
    from ..engine.distillation import layer_indices
    from ..pipeline import Inputs, run
    from .objective import Distillation
    from .report import compare

    options = options or DistillOptions()
    check_options(options)
    layers = layer_setting(options)
    found = check_teachers(teachers)
    first = found[0]
    kind = tasks.get(first.cfg.task).distillation
    indices, depth = None, 0
    if layers is not None:
        depth = teacher_depth(first)
        if not depth:
            raise ConfigError(f"layers= copies the teacher's model, but {first.runs[0]} has no plain transformers "
                              "model/ (adapter only, pooled or stacked head); pass a student checkpoint: model=...")
        indices = layer_indices(depth, layers)
    student = (f"model {options.model}" if indices is None else
               f"{len(indices)} of the teacher's {depth} layers: {', '.join(map(str, indices))}")
    unlabeled = unlabeled_texts(options, first, kind)
    cfg = student_config(first, options, keep_head=indices is not None)
    # the run folder's checks, before any model loads (pipeline.run makes them again as it takes the folder)
    RunFolder(cfg.output_dir).check(overwrite=cfg.overwrite, resume=bool(cfg.resume), inputs=config_inputs(cfg))
    objective = Distillation(found, unlabeled, options.temperature, options.alpha, options.batch_size, student)
    with tempfile.TemporaryDirectory(prefix="nlptransfer-student-") as folder:
        model_path = copy_teacher(first, indices, folder) if indices is not None else None
        results = run(cfg, Inputs(model_path=model_path, objective=objective))
    compare(found, results, options)
    return results


def student_config(teacher: Teacher, options: DistillOptions, keep_head: bool) -> RunConfig:
    """The student's run: the teacher's data, splits, seed and task options; full fine-tuning with `options.train`."""
    t = teacher.cfg
    output_dir = options.output_dir or f"runs/{t.recipe}-distilled-{datetime.now():%Y%m%d-%H%M%S}"
    return RunConfig(recipe=t.recipe, task=t.task, model=options.model or str(teacher.runs[0]), strategy="full",
                     long_text=t.long_text, threshold=t.threshold, data=t.data, labels=t.labels, loss=t.loss,
                     train=options.train, keep_head=keep_head, seed=t.seed, output_dir=output_dir,
                     overwrite=options.overwrite, resume=options.resume)


def copy_teacher(teacher: Teacher, indices: list[int], folder: str) -> str:
    """Save a copy of the teacher's (first) model keeping the encoder layers at `indices`, with its tokenizer."""
    from transformers import AutoTokenizer

    from ..engine.distillation import keep_layers

    source = teacher.runs[0] / "model"
    model = tasks.get(teacher.cfg.task).auto_class.from_pretrained(source, use_safetensors=True)
    keep_layers(model, indices).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    logger.info("student: a copy of %s keeping encoder layers %s of %d", source, ", ".join(map(str, indices)),
                model.config.num_hidden_layers)
    return folder


def unlabeled_texts(options: DistillOptions, teacher: Teacher, kind: str) -> list:
    """The unlabeled texts (NER: lists of words): the file's, then the teacher corpus's unused training rows."""
    settings = options.unlabeled
    texts = read_unlabeled(settings.file, settings.column or teacher.cfg.data.text_column) if settings.file else []
    if kind == "tokens":
        texts = [text.split() for text in texts]
    if settings.unused_rows:
        texts += unused_rows(teacher, kind)
    texts = [text for text in texts if len(text)]
    if settings.max_texts is not None:
        texts = texts[:settings.max_texts]
    return texts


def read_unlabeled(location: str, column: str) -> list[str]:
    """A .txt file's non-empty lines, or a table's `column`; an empty one is refused."""
    from ..data.readers import READERS, check_file, read_table

    path = Path(location).expanduser()
    check_file(path)
    if path.suffix.lower() in READERS:
        frame = read_table(path)
        if column not in frame.columns:
            raise DataError(f"unlabeled.file={location} has no column '{column}' (columns: "
                            f"{', '.join(map(str, frame.columns))}); set unlabeled.column=NAME")
        texts = [str(text) for text in frame[column].dropna().tolist() if str(text).strip()]
    else:
        try:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"unlabeled.file={location} cannot be read as UTF-8 text ({error}); save it as UTF-8, "
                            "one text per line") from None
    if not texts:
        raise DataError(f"unlabeled.file={location} holds no text; give one text per line (or a table column)")
    return texts


def unused_rows(teacher: Teacher, kind: str) -> list:
    """The training rows the teacher's run left out (data.max_train_samples): its data read again without it."""
    import dataclasses

    cfg = teacher.cfg
    if cfg.data.max_train_samples is None:
        raise ConfigError(f"unlabeled.unused_rows=true: the teacher {teacher.path} trained on every training row "
                          "(no data.max_train_samples); give unlabeled.file=texts.txt instead")
    task = tasks.get(cfg.task)
    used, whole = (task.load_data(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **limit)))
                   for limit in ({}, {"max_train_samples": None}))
    if kind == "tokens":
        seen = {tuple(words) for words in used.train.words}
        return [list(words) for words in whole.train.words if tuple(words) not in seen]
    seen = set(map(str, used.train.texts))
    return [str(text) for text in whole.train.texts if str(text) not in seen]

