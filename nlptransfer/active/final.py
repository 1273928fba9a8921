"""When the labeling is done: the labels as a file `python -m nlptransfer.run` reads, and the command that trains the
final model on them with a stronger strategy than the rounds' fast one.

Each round trains with a fast strategy (`frozen` by default: its encoder's pool outputs are cached, so a round takes
seconds); the final model is worth minutes. The folder keeps `labels.csv` (text, label; a multi-label row's labels
joined by `|`) or, for NER, `labels.conll` (a word and its tag a line, a blank line between sentences), rewritten
with every label given at the end of each round and of each session, and the session ends by printing the command.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..outputs import files
from .labeling import csv_text, shown
from .loop import ActiveLoop

FINAL_STRATEGY = {True: "contrastive", False: "full"}
"""The final model's strategy, by whether the task has a pooled head (classification: `contrastive`; NER: `full`)."""


def labels_path(loop: ActiveLoop) -> Path:
    return loop.folder.path / ("labels.conll" if loop.tagging else "labels.csv")


def write_labels(loop: ActiveLoop) -> Path:
    """The folder's labels as labels.csv or labels.conll (replaced atomically); its path."""
    labels = loop.folder.labels()
    path = labels_path(loop)
    if loop.tagging:
        text = "\n\n".join("\n".join(f"{word}\t{tag}" for word, tag in zip(sentence.split(" "), tags))
                           for sentence, tags in labels.items())
        files.write_text(path, text + "\n" if text else "")
    else:
        columns = [loop.options.text_column, loop.options.label_column]
        files.write_text(path, csv_text([columns] + [[text, shown(label)] for text, label in labels.items()]))
    return path


def final_command(loop: ActiveLoop) -> list[str]:
    """`python -m nlptransfer.run ...` training the final model on the folder's labels file (`write_labels`), tested
    on the loop's test file when it has one (else the run holds out a share of the labels)."""
    from .. import tasks

    options = loop.options
    folder = loop.folder.path
    items = ["recipe=ner" if loop.tagging else "recipe=topic", f"task={options.task}", f"model={options.model}",
             f"strategy={FINAL_STRATEGY[bool(tasks.get(options.task).pooled_head)]}",
             f"data.train_file={labels_path(loop)}",
             f"data.label_names=[{', '.join(quoted(name) for name in loop.label_names)}]"]
    if loop.cfg is not None:
        items.append(f"data.max_length={loop.cfg.data.max_length}")
    if not loop.tagging and (options.text_column, options.label_column) != ("text", "label"):
        items += [f"data.text_column={options.text_column}", f"data.label_column={options.label_column}"]
    if loop.multilabel:
        items.append("data.label_separator=|")
    if options.test:
        items.append(f"data.test_file={options.test}")
    items.append(f"output_dir={folder.with_name(folder.name + '-final')}")
    return ["python", "-m", "nlptransfer.run", *items]


def quoted(name: str) -> str:
    """A label name as a quoted YAML item: commas, brackets and colons in it stay part of the name."""
    return "'" + str(name).replace("'", "''") + "'"


def announce(loop: ActiveLoop) -> str:
    """Write the labels file; the sentence telling how to train the final model on it."""
    write_labels(loop)
    return (f"{len(loop.folder.labels())} labels in {labels_path(loop)}; when you are done labeling, train the final "
            f"model on them with: {shlex.join(final_command(loop))}")
