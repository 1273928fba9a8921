"""Knowledge distillation (the library side of `python -m nlptransfer.distill TEACHER [TEACHER ...]`).

    from nlptransfer.distillation import DistillOptions, distill
    distill(["runs/sentiment-full"], DistillOptions(layers="3", unlabeled={"file": "tweets.txt"}))

A teacher (a finished run, an ensemble folder, or several runs whose probabilities are averaged) teaches a student
(any checkpoint under a new head, or a copy of the teacher's model keeping some of its encoder layers) on soft
targets at a temperature mixed with the hard labels, over the teacher's training texts plus unlabeled ones; the
student's training is a normal run (`pipeline.run` with the `objective.Distillation` objective), so its folder is a
run folder that predict, push and transformers' pipeline() load. Classification, multi-label and NER (per word, at
each model's first sub-token: the tokenizers may differ). The modules: `settings` (options and checks), `teachers`
(reading and checking teachers, their probabilities), `objective` (the student's training rows and targets, the
cached teacher outputs), `flow` (`distill`), `report` (teacher and student side by side).
"""

from __future__ import annotations

from .settings import DistillOptions, UnlabeledOptions

__all__ = ["DistillOptions", "UnlabeledOptions", "distill"]


def distill(teachers, options: DistillOptions | None = None):
    """Distil `teachers` into a student (see `flow.distill`); torch loads here, not when this package is imported."""
    from .flow import distill as run_distillation

    return run_distillation(teachers, options)
