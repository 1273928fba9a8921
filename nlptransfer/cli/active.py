"""Command line: `python -m nlptransfer.active pool=FILE labels=[a, b] output_dir=DIR [--terminal | --serve]
[key=value ...]` (also `nlptransfer active ...`).

Active learning over a folder (the library side: `nlptransfer.active`): each run takes the labels given since the
last one, trains a round, scores the pool and hands the next batch to the person (to_label.csv, the terminal or a
page on localhost), or to an oracle in a simulation. Options of the round's run (`train.epochs=2`, `data.max_length=64`,
`contrastive.epochs=1`, ...) pass through. Rerunning with the same output_dir continues.
"""

from __future__ import annotations

import dataclasses
import sys

from ..active.options import COLD_STARTS, LABEL_WITH, QUERY_NAMES, TASKS, ActiveOptions, multilabel, tagging
from ..active.state import stored_options
from ..config import RunConfig, apply_overrides
from ..errors import ConfigError
from .run import configure_console, parse_args, parse_options, run_command, usage_exit

USAGE = f"""usage: python -m nlptransfer.active pool=FILE labels=[a, b, ...] output_dir=FOLDER [--terminal | --serve]
                                     [query={'|'.join(QUERY_NAMES[:4])}|...] [batch_size=16]
                                     [strategy=frozen]
                                     [oracle=LABELED_FILE rounds=N] [train.epochs=...] [--debug] [--quiet] [--help]
Each run: the labels given since the last (to_label.csv's label column, the terminal, the page), one round (train,
score the pool, pick the next batch), the batch handed over. The folder keeps labels.jsonl (append-only), rounds.jsonl
(each round's accuracy, picks, kappa and the stopping suggestion), batch.json, to_label.csv and labels.csv (every
label, for the final model: each run ends by printing the `python -m nlptransfer.run ...` command that trains it).
examples:
  python -m nlptransfer.active pool=texts.csv labels=[pos, neg, neu] output_dir=runs/al
  (fill the label column of runs/al/to_label.csv, then rerun: python -m nlptransfer.active output_dir=runs/al)
  python -m nlptransfer.active output_dir=runs/al --terminal rounds=5
  python -m nlptransfer.active output_dir=runs/al --serve port=8765
  python -m nlptransfer.active oracle=labeled.csv test=test.csv labels=[pos, neg] output_dir=runs/sim rounds=10"""

FLAGS = {"--serve": "serve", "--terminal": "terminal"}


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own key=value items, the round's run options)."""
    own = {field.name for field in dataclasses.fields(ActiveOptions)}
    mine = [item for item in items if item.split("=", 1)[0] in own]
    return mine, [item for item in items if item not in mine]


def check(options: ActiveOptions) -> None:
    """Every option checked before anything is read or written."""
    choices = {"query": QUERY_NAMES, "cold_start": COLD_STARTS, "label_with": LABEL_WITH, "task": TASKS}
    for key, allowed in choices.items():
        if getattr(options, key) not in allowed:
            raise ConfigError(f"unknown {key} '{getattr(options, key)}'; choose one of {', '.join(allowed)}")
    for key in ("batch_size", "rounds", "score_batch_size", "stop_rounds", "mc_passes"):
        value = getattr(options, key)
        if isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a whole number of at least 1, got {value}")
    if options.score_sample is not None and (isinstance(options.score_sample, bool) or options.score_sample < 1):
        raise ConfigError(f"score_sample must be a whole number of at least 1 (or null: the whole pool), got "
                          f"{options.score_sample}")
    if options.score_sample is not None and options.score_sample < options.batch_size:
        raise ConfigError(f"score_sample={options.score_sample} is smaller than batch_size={options.batch_size}: a "
                          "batch is picked among the scored texts; raise score_sample or lower batch_size")
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {options.port}")
    if not options.output_dir:
        raise ConfigError("output_dir= is needed: the active-learning folder (a new one, or one to continue)")
    if not options.labels or len(set(map(str, options.labels))) < 2:
        raise ConfigError("labels= needs two label names or more, e.g. labels=[pos, neg]")
    if len(set(map(str, options.labels))) != len(options.labels):
        raise ConfigError(f"labels={options.labels} repeats a name; give each label once")
    if (multilabel(options.task) or tagging(options.task)) and options.query == "badge":
        raise ConfigError(f"query=badge is for single-label classification; with task={options.task} use "
                          "least_confidence, breaking_ties, entropy, embedding_kmeans or coreset")
    if tagging(options.task) and options.query == "bald":
        raise ConfigError(f"query=bald scores texts, not words; with task={options.task} use least_confidence, "
                          "breaking_ties or entropy (aggregated per sentence), embedding_kmeans or coreset")
    if options.balance and (multilabel(options.task) or tagging(options.task)
                            or options.query in ("embedding_kmeans", "coreset", "badge")):
        raise ConfigError(f"balance=true shares a batch among predicted classes: single-label classification with "
                          f"query=random, least_confidence, breaking_ties, entropy or bald (not task={options.task} "
                          f"query={options.query})")
    if options.aggregate not in ("max", "mean", "sum"):
        raise ConfigError(f"unknown aggregate '{options.aggregate}'; choose one of max, mean, sum")


def active_command(argv: list[str], ask=None, out=None) -> int:
    label_with = [FLAGS[item] for item in argv if item in FLAGS]
    argv = [item for item in argv if item not in FLAGS]
    flags, items, config_file = parse_args(argv)
    if (code := usage_exit(flags, items + label_with, config_file, USAGE, ActiveOptions(), "active")) is not None:
        return code
    mine, run_items = split_items(items)
    given = parse_options(ActiveOptions(), mine)
    stored = stored_options(given.output_dir) if given.output_dir else {}
    run_items = [*stored.pop("run_options", []), *run_items]
    options = parse_options(ActiveOptions(**stored), mine)  # a rerun continues with the loop's first options
    options.labels = [str(name) for name in options.labels] if options.labels else options.labels
    if label_with:
        options.label_with = label_with[-1]
    check(options)
    cfg = apply_overrides(RunConfig(), run_items)
    configure_console(quiet=flags["quiet"], verbose=flags["verbose"])
    from ..active.session import run_session  # torch loads here: --help and option errors answer at once

    run_session(options, cfg, ask=ask, out=out, run_options=run_items)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(active_command, argv)


if __name__ == "__main__":
    sys.exit(main())
