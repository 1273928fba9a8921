"""A labeling session, as `python -m nlptransfer.active` runs it: read and check every input, take the folder, add
the labels given since the last time (the start file, to_label.csv), then run rounds and hand each batch to the person
by file, terminal or page, or to the oracle in a simulation. Rerunning with the same output_dir continues.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..errors import ConfigError
from . import final, inputs, labeling, ner
from .loop import ActiveLoop, simulate
from .options import ActiveOptions, label_names, multilabel, tagging
from .state import STORED, ActiveFolder

logger = logging.getLogger("nlptransfer")

@dataclass
class Inputs:
    pool: list[str]
    start: dict[str, object]
    oracle: dict[str, object] | None
    test: dict[str, object] | None


def read_inputs(options: ActiveOptions) -> Inputs:
    """Every input file read and checked; nothing is written."""
    names = label_names(options)
    if tagging(options.task):
        def read(path: str, what: str) -> dict:
            return ner.read_sentences(path, what, names)
    else:
        def read(path: str, what: str) -> dict:
            return inputs.read_labeled(path, options.text_column, options.label_column, names,
                                       multilabel(options.task), what)
    oracle = read(options.oracle, "oracle") if options.oracle else None
    if options.pool:
        pool = list(ner.read_sentences(options.pool, "pool")) if tagging(options.task) else \
            inputs.read_pool(options.pool, options.text_column)
    elif oracle is not None:
        pool = list(oracle)
    else:
        raise ConfigError("pool= is needed: a file of unlabeled texts (pool=texts.csv)")
    if oracle is not None and (missing := [text for text in pool if text not in oracle]):
        raise ConfigError(f"oracle={options.oracle} has no label for {len(missing)} pool texts (e.g. "
                          f"{missing[0][:60]!r}); a simulation needs every pool text labeled")
    start = read(options.labeled, "labeled") if options.labeled else {}
    test = read(options.test, "test") if options.test else None
    check_batch_size(options, pool, start)
    return Inputs(pool, start, oracle, test)


def check_batch_size(options: ActiveOptions, pool: list[str], start: dict) -> None:
    """At the loop's start (no batch handed out yet) a batch larger than the unlabeled pool is refused; later rounds
    take what is left (`ActiveLoop.pick` says so)."""
    folder = ActiveFolder(options.output_dir)
    if folder.batch()["round"] >= 0:
        return
    labeled = {**start, **folder.labels()}
    unlabeled = sum(1 for text in pool if text not in labeled)
    if options.batch_size > unlabeled:
        raise ConfigError(f"batch_size={options.batch_size} is larger than the pool's {unlabeled} unlabeled texts; "
                          f"pass batch_size={max(1, unlabeled)} or less, or a bigger pool")


def file_labels(folder: ActiveFolder, options: ActiveOptions) -> tuple[str, dict]:
    """(the file's name, text -> label) of the filled rows of to_label.csv (to_label.conll for NER), all checked."""
    if tagging(options.task):
        return ner.TO_LABEL, ner.read_to_label(folder, label_names(options))
    return labeling.TO_LABEL, labeling.read_to_label(folder, label_names(options), multilabel(options.task))


def check_settings(options: ActiveOptions, folder: ActiveFolder) -> None:
    """A rerun keeps its label names and task: other ones would mix with the labels given."""
    settings = folder.settings()
    for key in ("labels", "task"):
        if settings and settings.get(key) != getattr(options, key):
            raise ConfigError(f"output_dir={folder.path} holds a loop with {key}={settings.get(key)}, not "
                              f"{getattr(options, key)}; keep them, or choose another output_dir")


def open_loop(options: ActiveOptions, cfg, read: Inputs, run_options: list[str] = ()) -> ActiveLoop:
    """Take the folder (locked), add the start labels and to_label.csv's, record the options; the loop."""
    folder = ActiveFolder(options.output_dir)
    folder.open(overwrite=options.overwrite)
    try:
        check_settings(options, folder)
        name, given = file_labels(folder, options)  # every row checked before any is added
        number = len(folder.rounds())
        if not folder.started:
            for text, label in read.start.items():
                folder.add_label(text, label, "labeled", number)
        current = folder.labels()
        added = [(text, label) for text, label in given.items() if current.get(text) != label]
        for text, label in added:
            folder.add_label(text, label, "file", max(0, number - 1))
        if added:
            logger.info("took %d labels from %s", len(added), name)
        folder.write_settings({key: getattr(options, key) for key in STORED} | {"run_options": list(run_options)})
        dropped = [text for text in read.pool if text in folder.labels()]
        logger.info("pool: %d texts, %d of them labeled already (not asked again); %d labels in all", len(read.pool),
                    len(dropped), len(folder.labels()))
    except BaseException:
        folder.close()
        raise
    return ActiveLoop(folder, read.pool, label_names(options), options, cfg, read.test)


def labels_since_last_round(loop: ActiveLoop) -> bool:
    """Whether a round is due: none yet, or labels given since the last one."""
    rounds = loop.folder.rounds()
    return not rounds or len(loop.folder.labels()) > rounds[-1]["labels"]


def by_file(loop: ActiveLoop) -> None:
    """A round if labels came since the last one, then to_label.csv for the person."""
    if labels_since_last_round(loop):
        loop.run_round()
    path = (ner if loop.tagging else labeling).write_to_label(loop.folder)
    left = len(loop.folder.unlabeled_in_batch())
    column = "tag column (the third)" if loop.tagging else "label column"
    logger.info("%d texts to label in %s: fill its %s, then run the same command again", left, path, column)


def by_terminal(loop: ActiveLoop, rounds: int, ask=None, out=None) -> str:
    """Rounds while the person labels whole batches (at most `rounds` new ones); how the labeling ended."""
    ended = "done"
    for _ in range(rounds):
        if not loop.folder.unlabeled_in_batch() and labels_since_last_round(loop):
            loop.run_round()
        ended = labeling.label_in_terminal(loop.folder, loop.label_names, loop.multilabel,
                                           len(loop.folder.rounds()) - 1, ask=ask, out=out,
                                           keys=ner.TagEdits(loop.label_names) if loop.tagging else None)
        if ended != "done":
            break
    (ner if loop.tagging else labeling).write_to_label(loop.folder)
    return ended


def run_session(options: ActiveOptions, cfg=None, ask=None, out=None, run_options: list[str] = ()) -> ActiveLoop:
    """The command's work after its options are checked: inputs, folder, then file, terminal, page or simulation,
    and last the labels file and the command training the final model on it; `run_options` (`train.epochs=1`, ...)
    are recorded for reruns."""
    read = read_inputs(options)
    server = None
    if options.label_with == "serve":
        from .server import bind

        server = bind(options.port)  # before anything is written: a port in use is refused first
    loop = open_loop(options, cfg, read, run_options)
    try:
        if read.oracle is not None:
            simulate(loop, read.oracle, options.rounds)
        elif server is not None:
            from .server import serve

            serve(server, loop)
        elif options.label_with == "terminal":
            by_terminal(loop, options.rounds, ask=ask, out=out)
        else:
            by_file(loop)
        logger.info("%s", final.announce(loop))
    finally:
        if server is not None:
            server.server_close()
        loop.folder.close()
    return loop


def options_with(options: ActiveOptions, **changes) -> ActiveOptions:
    return dataclasses.replace(options, **changes)
