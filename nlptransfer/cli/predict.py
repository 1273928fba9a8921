"""Command line: `python -m nlptransfer.predict model=RUN_OR_MODEL text="..."` or `input=FILE [output=FILE]`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import describe
from ..errors import ConfigError, DataError
from ..outputs.console import quiet_libraries
from ..outputs.files import write_jsonl
from ..predictor import load_model
from .run import parse_args, parse_options, run_command


@dataclass
class PredictOptions:
    model: str | None = None
    """A run folder, a saved model folder, a LoRA adapter folder or a hub id."""
    text: str | None = None
    """One text to predict; printed as one JSON line."""
    input: str | None = None
    """A .txt (one text a line), .csv, .tsv, .json or .jsonl file of texts."""
    output: str | None = None
    """Write the predictions here as JSON lines; default: print them."""
    text_column: str = "text"
    """The column (csv) or key (jsonl) holding the text in `input`."""
    text_pair: str | None = None
    """Pair models (paraphrase, NLI): the second text of `text`."""
    text_pair_column: str | None = None
    """Pair models: the column (csv) or key (jsonl) of `input` holding each second text."""
    all_scores: bool = False
    """Classification: add the score of every label."""
    batch_size: int = 32
    """Texts per forward pass."""
    base_model: str | None = None
    """LoRA adapter: load it onto this checkpoint instead of the one its adapter_config.json names."""


VERBATIM = ("model", "text", "input", "output", "text_column", "base_model", "text_pair", "text_pair_column")
"""Options whose value is used as typed: free text and paths."""

USAGE = """usage: python -m nlptransfer.predict model=RUN_OR_MODEL_DIR_OR_HUB_ID (text="..." | input=FILE [output=FILE])
                                      [all_scores=true] [batch_size=32] [--debug] [--quiet] [--help]
examples:
  python -m nlptransfer.predict model=runs/sentiment-full-20250101-120000 text="what a great day"
  python -m nlptransfer.predict model=user/my-ner input=tweets.txt output=entities.jsonl"""


def read_texts(path: str, column: str) -> list[str]:
    """The texts of a .txt file (one a line, blank lines skipped) or of a table's `column`."""
    from ..data.classification import read_table

    if Path(path).suffix.lower() == ".txt":
        if not Path(path).is_file():
            raise DataError(f"input file not found: {path}")
        return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    table = read_table(path)
    if column not in table.columns:
        raise DataError(f"{path} has no column '{column}' (text_column=); columns: "
                        f"{', '.join(map(str, table.columns))}")
    return table[column].fillna("").astype(str).tolist()


def predict_command(argv: list[str]) -> int:
    """The command line: parse the options, load the model, write or print the predictions."""
    flags, overrides, config_file = parse_args(argv)
    if flags["help"]:
        print(f"{USAGE}\noptions (key=default):\n{describe(PredictOptions())}")
        return 0
    if not overrides and not config_file:
        print(USAGE, file=sys.stderr)
        return 2
    if config_file:
        raise ConfigError("predict takes no --config file; pass its options as key=value")
    options = parse_options(PredictOptions(), overrides, verbatim=VERBATIM)
    if not options.model:
        raise ConfigError("pass model=RUN_OR_MODEL_DIR_OR_HUB_ID")
    if (options.text is None) == (options.input is None):
        raise ConfigError('pass exactly one of text="..." and input=FILE')
    quiet_libraries()
    texts = [options.text] if options.text is not None else read_texts(options.input, options.text_column)
    pairs = None
    if options.text_pair is not None:
        pairs = [options.text_pair]
    elif options.text_pair_column and options.input:
        pairs = read_texts(options.input, options.text_pair_column)
    predictor = load_model(options.model, base_model=options.base_model)
    rows = predictor.predict(texts, all_scores=options.all_scores, batch_size=options.batch_size, text_pairs=pairs)
    if options.output:
        write_jsonl(Path(options.output), rows)
        if not flags["quiet"]:
            print(f"{len(rows)} predictions written to {options.output}", file=sys.stderr)
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(predict_command, argv)


if __name__ == "__main__":
    sys.exit(main())
