"""Command line: `python -m nlptransfer.distill TEACHER [TEACHER ...] [model=...|layers=...] [key=value ...]`
(also `nlptransfer distill ...`).

Distils finished runs or an ensemble (the library side: `nlptransfer.distillation`) into a student whose folder is
a normal run folder (`nlptransfer.predict model=FOLDER`, `nlptransfer.push FOLDER`).
"""

from __future__ import annotations

import sys

from ..config import load_yaml
from ..distillation.settings import DistillOptions, check_options
from .run import configure_console, parse_args, parse_options, run_command, usage_exit

USAGE = """usage: python -m nlptransfer.distill TEACHER [TEACHER ...] [model=CHECKPOINT | layers=every_other|K]
                                      [temperature=2] [alpha=0.5] [unlabeled.file=FILE] [unlabeled.unused_rows=true]
                                      [train.epochs=N ...] [output_dir=FOLDER] [overwrite=true | resume=auto]
                                      [--config FILE.yaml] [--debug] [--quiet] [--help] [--version]
A teacher (a finished run folder, an ensemble folder, or several runs whose probabilities are averaged) teaches a
student on its soft targets mixed with the hard labels, over the teacher's training texts and unlabeled ones. The
student's folder is a run folder (model/, metrics.json, predictions.jsonl, README.md) with report.md (teacher and
student side by side: test metric, parameters, size on disk, CPU texts/s) and distill/ (the cached teacher outputs,
comparison.json). Classification, multilabel and token-classification (NER) teachers.
examples:
  python -m nlptransfer.distill runs/sentiment-full layers=3 unlabeled.unused_rows=true output_dir=runs/student
  python -m nlptransfer.distill runs/ensemble-ab model=minilm unlabeled.file=tweets.txt temperature=4 alpha=0.7
  python -m nlptransfer.predict model=runs/student text="what a great day\""""


def distill_command(argv: list[str]) -> int:
    flags, items, config_file = parse_args(argv)
    if (code := usage_exit(flags, items, config_file, USAGE, DistillOptions(), "distill", takes_config=True)) \
            is not None:
        return code
    options = load_yaml(DistillOptions(), config_file) if config_file else DistillOptions()
    options = parse_options(options, [item for item in items if "=" in item])
    teachers = list(options.teachers) + [item for item in items if "=" not in item]
    check_options(options)
    configure_console(quiet=flags["quiet"], verbose=flags["verbose"])
    from ..distillation import distill  # torch loads here: --help and option errors answer at once

    distill(teachers, options)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(distill_command, argv)


if __name__ == "__main__":
    sys.exit(main())
