"""Command line: `python -m nlptransfer.predict model=RUN_OR_MODEL text="..."` or `input=FILE [output=FILE]`.

Every column of a table input besides the text (an `id`, a gold label, ...) is carried to its prediction
row, so predictions join back to the input; one that a prediction key already names (`label`, ...) is
carried as `input_<name>`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import runtimes
from ..errors import ConfigError, DataError
from ..outputs.console import quiet_libraries
from ..outputs.files import write_jsonl
from ..outputs.model_files import first_line
from .run import parse_args, parse_options, run_command, usage_exit


@dataclass
class PredictOptions:
    model: str | None = None
    """A run folder, a saved model folder, a LoRA adapter folder or a hub id."""
    text: str | None = None
    """One text to predict; printed as one JSON line."""
    input: str | None = None
    """A .txt (one text a line), .csv, .tsv, .json, .jsonl or .parquet file of texts; other columns are carried."""
    output: str | None = None
    """Write the predictions here as JSON lines (.jsonl); default: print them."""
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
    runtime: str = "torch"
    """torch (exact fp32), bf16 (fast on GPUs and AMX/AVX-512 BF16 CPUs), int8 (int8 linear layers); after
    python -m nlptransfer.export: onnx, onnx-int8."""
    task: str | None = None
    """A multi-task run: predict this task only (its name); unset, every task answers under each row's `tasks`."""


INPUTS = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".parquet")
TABLE_OUTPUTS = (".csv", ".tsv", ".parquet", ".xlsx", ".xls")
"""Output names that promise another format than the JSON lines predict writes."""

USAGE = """usage: python -m nlptransfer.predict model=RUN_OR_MODEL_DIR_OR_HUB_ID (text="..." | input=FILE [output=FILE])
                                      [all_scores=true] [batch_size=32] [task=NAME]
                                      [runtime=torch|bf16|int8|onnx|onnx-int8]
                                      [--debug] [--quiet] [--help]
examples:
  python -m nlptransfer.predict model=runs/sentiment-full-20250101-120000 text="what a great day"
  python -m nlptransfer.predict model=user/my-ner input=tweets.txt output=entities.jsonl"""


@dataclass
class InputRows:
    """What an input file holds: the texts, their pair texts, and each row's other columns."""

    texts: list[str]
    pairs: list[str] | None
    columns: list[dict]


def read_records(path: Path, column: str) -> list[dict]:
    """The rows of an input file as dicts, values as written (a csv's `007` stays the text `007`)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":  # one text a line, blank lines skipped
            return [{column: line} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if suffix in (".csv", ".tsv"):
            return table_rows(path, "\t" if suffix == ".tsv" else ",")
        if suffix == ".jsonl":
            return json_lines(path)
        if suffix == ".json":
            return json_records(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "convert it to UTF-8") from None
    except ValueError as e:  # pandas' EmptyDataError and ParserError are ValueErrors
        if "No columns to parse" in str(e):
            raise DataError(f"{path} is empty; give a table with a header and rows") from None
        raise DataError(f"cannot parse {path}: {first_line(e)}; fix the file's format") from None
    from ..data.readers import read_table

    return read_table(path).to_dict("records")


def table_rows(path: Path, separator: str) -> list[dict]:
    """A csv or tsv file's rows, every value as written; a row longer than the header is refused, not shifted."""
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas would drop the extra values
        try:
            frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, index_col=False)
        except pd.errors.ParserWarning:
            raise DataError(f"cannot parse {path}: a row has more values than the header has columns; quote "
                            f"values that hold the separator ('{separator}') or fix the header") from None
    return frame.to_dict("records")


def json_lines(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"cannot parse {path} line {number}: {first_line(e)}; "
                            "write one JSON object a line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is not a JSON object; write one object a line, e.g. "
                            '{"text": "..."}')
        rows.append(row)
    return rows


def json_records(path: Path) -> list[dict]:
    """A .json file: a list of objects, or an object of columns; JSON lines named .json read as such."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return json_lines(path)
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        size = max(len(v) for v in data.values())
        return [{key: values[i] if i < len(values) else None for key, values in data.items()} for i in range(size)]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return data
    raise DataError(f"{path} holds no rows: write a list of objects, e.g. [{{\"text\": \"...\"}}]")


def jsonable(value):
    """A carried value as plain JSON: numpy numbers as numbers, missing values as null, others as text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    import pandas as pd

    return None if pd.isna(value) is True else str(value)


def as_text(value) -> str:
    value = jsonable(value)
    return "" if value is None else value if isinstance(value, str) else str(value)


def read_input(path: str, column: str, pair_column: str | None) -> InputRows:
    """The texts (and pair texts) of an input file, with the other columns of each row."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise DataError(f"input={path} is a folder; pass a file ({', '.join(INPUTS)})")
    if not file.is_file():
        raise DataError(f"input file not found: {path}; check the path (input=...)")
    if file.suffix.lower() not in INPUTS:
        raise DataError(f"cannot read '{file.name}': use one of {', '.join(INPUTS)} files")
    if file.suffix.lower() == ".txt" and pair_column:
        raise ConfigError("text_pair_column= needs a table input (.csv, .tsv, .json, .jsonl or .parquet), not .txt")
    records = read_records(file, column)
    if not records:
        raise DataError(f"{path} holds no texts; give one text a line (.txt) or rows with a '{column}' column")
    columns = list(dict.fromkeys(key for row in records for key in row))
    for name, option in ((column, "text_column"), (pair_column, "text_pair_column")):
        if name is not None and name not in columns:
            raise DataError(f"{path} has no column '{name}' ({option}=); columns: {', '.join(map(str, columns))}")
    carried = [{str(k): jsonable(v) for k, v in row.items() if k not in (column, pair_column)} for row in records]
    return InputRows(texts=[as_text(row.get(column)) for row in records],
                     pairs=[as_text(row.get(pair_column)) for row in records] if pair_column else None,
                     columns=carried)


def check_options(options: PredictOptions) -> None:
    """Refuse contradictory or empty options before the model is loaded."""
    if not options.model:
        raise ConfigError("pass model=RUN_OR_MODEL_DIR_OR_HUB_ID")
    if (options.text is None) == (options.input is None):
        raise ConfigError('pass exactly one of text="..." and input=FILE')
    if options.text is not None and not options.text.strip():
        raise ConfigError('text= is empty; pass the text to predict, e.g. text="what a great day"')
    if options.text_pair is not None and options.input is not None:
        raise ConfigError("text_pair= goes with text=; with input= name the pair column: text_pair_column=")
    if options.text_pair_column and options.text is not None:
        raise ConfigError("text_pair_column= goes with input=; with text= pass the pair text: text_pair=")
    if options.text_pair is not None and not options.text_pair.strip():
        raise ConfigError('text_pair= is empty; pass the second text, e.g. text_pair="..."')
    runtimes.get(options.runtime)
    if options.output:
        check_output(options.output, options.input)
    from ..predictor import check_batch_size  # torch loads here: the checks above answer at once

    check_batch_size(options.batch_size)


def check_output(output: str, source: str | None) -> None:
    """The output must be a file predict can write, not a folder, not the input, not a table it would not be."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise ConfigError(f"output={output} is a folder; pass a file in it, e.g. output={path / 'predictions.jsonl'}")
    if path.suffix.lower() in TABLE_OUTPUTS:
        raise ConfigError(f"output= writes JSON lines, not {path.suffix}; name it {path.with_suffix('.jsonl').name} "
                          "(pandas reads it with read_json(path, lines=True))")
    if source and path.resolve() == Path(source).expanduser().resolve():
        raise ConfigError(f"output={output} is the input file; pass another file, or it would be overwritten")
    ancestor = next(p for p in [path.absolute(), *path.absolute().parents] if p.exists())
    if ancestor != path.absolute() and not ancestor.is_dir():
        raise ConfigError(f"output={output}: {ancestor} is a file, not a folder; pass a path in a folder")
    if not os.access(ancestor if ancestor != path.absolute() else path, os.W_OK):
        raise ConfigError(f"output={output} cannot be written here (no permission on {ancestor}); pass another path")


def with_columns(columns: dict, row: dict, renamed: set[str]) -> dict:
    """The input row's other columns, then its prediction; a column named like a prediction key gets `input_`."""
    carried = {}
    for key, value in columns.items():
        if key in row:
            renamed.add(key)
            key = f"input_{key}"
        carried[key] = value
    return carried | row


def predict_command(argv: list[str]) -> int:
    """The command line: parse the options, load the model, write or print the predictions."""
    flags, overrides, config_file = parse_args(argv)
    if (code := usage_exit(flags, overrides, config_file, USAGE, PredictOptions(), "predict")) is not None:
        return code
    options = parse_options(PredictOptions(), overrides)
    check_options(options)
    quiet_libraries()
    if options.input is None:
        rows_in = InputRows([options.text], None if options.text_pair is None else [options.text_pair], [{}])
    else:
        rows_in = read_input(options.input, options.text_column, options.text_pair_column)
    empty = [i for i, text in enumerate(rows_in.texts, 1) if not text.strip()]
    if empty and not flags["quiet"]:
        print(f"warning: {len(empty)} of {len(rows_in.texts)} input texts are empty (the first in row {empty[0]}); "
              "their predictions read no text", file=sys.stderr)
    from ..predictor import load_model

    predictor = load_model(options.model, base_model=options.base_model, runtime=options.runtime,
                           task=options.task)
    predictions = predictor.predict(rows_in.texts, all_scores=options.all_scores, batch_size=options.batch_size,
                                    text_pairs=rows_in.pairs)
    renamed: set[str] = set()
    rows = [with_columns(columns, row, renamed) for columns, row in zip(rows_in.columns, predictions)]
    if renamed and not flags["quiet"]:
        print(f"note: input columns {', '.join(sorted(renamed))} are carried as "
              f"{', '.join('input_' + name for name in sorted(renamed))} beside the predictions", file=sys.stderr)
    if options.output:
        try:
            write_jsonl(Path(options.output).expanduser(), rows)
        except OSError as e:
            raise DataError(f"cannot write output={options.output}: {first_line(e)}; "
                            "pass a writable file path") from None
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
