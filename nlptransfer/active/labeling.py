"""Two of the three ways to give labels, both writing into the folder's labels.jsonl: `to_label.csv` (the person fills
the label column and reruns the command) and the terminal (one text at a time, a key per label, skip, undo).
The third, the labeling page, is `server.py`."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from ..errors import DataError
from ..outputs import files
from .inputs import SEPARATOR, parse_label
from .state import ActiveFolder

TO_LABEL = "to_label.csv"
COLUMNS = ("text", "suggestion", "confidence", "label")


def shown(label) -> str:
    return "" if label is None else SEPARATOR.join(label) if isinstance(label, list) else str(label)


def csv_text(rows: list[list]) -> str:
    """Rows as CSV text, a value holding a line break or a carriage return quoted (rows end in CRLF, so the writer
    quotes both; with "\n" alone it leaves a lone "\r" bare, which readers take for a row's end: tweets hold some)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def write_to_label(folder: ActiveFolder) -> Path:
    """to_label.csv: the batch's texts not labeled yet, the model's suggestion and confidence, an empty label column."""
    rows = [["" if item["confidence"] is None else item["confidence"], item] for item in folder.unlabeled_in_batch()]
    files.write_text(folder.path / TO_LABEL, csv_text(
        [list(COLUMNS)] + [[item["text"], shown(item["suggestion"]), confidence, ""] for confidence, item in rows]))
    return folder.path / TO_LABEL


def read_to_label(folder: ActiveFolder, label_names: list[str], multilabel: bool) -> dict[str, object]:
    """Text -> label of the filled rows of to_label.csv, every row checked before any is taken; {} without the file."""
    path = folder.path / TO_LABEL
    if not path.exists():
        return {}
    try:
        with path.open(encoding="utf-8", newline="") as file:  # a line break inside a quoted text stays as written
            rows = list(csv.reader(file))
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be read as CSV ({error}); fix it, or delete it to get the batch again "
                        "(every label given before is kept)") from None
    if not rows or "text" not in rows[0] or "label" not in rows[0]:
        raise DataError(f"{path} lacks its text or label column (header: {', '.join(rows[0]) if rows else 'none'}); "
                        "keep the header as written, or delete the file to get the batch again")
    text_at, label_at = rows[0].index("text"), rows[0].index("label")
    given: dict[str, object] = {}
    for number, row in enumerate(rows[1:], 2):
        if len(row) <= max(text_at, label_at):
            if any(cell.strip() for cell in row):
                raise DataError(f"{path} row {number} has {len(row)} of the header's {len(rows[0])} columns; keep "
                                "each row's commas (quote a text holding one), or delete the file to get the batch "
                                "again")
            continue
        label = parse_label(row[label_at], label_names, multilabel, f"{path} row {number}")
        if label is not None and row[text_at].strip():
            given[row[text_at].strip()] = label
    return given


def keys_line(label_names: list[str], multilabel: bool) -> str:
    keys = "  ".join(f"{i}={name}" for i, name in enumerate(label_names, 1))
    several = " (several: 13)" if multilabel else ""
    return f"  {keys}{several}  enter=suggestion  s=skip  u=undo  q=quit"


def read_keys(answer: str, label_names: list[str], multilabel: bool):
    """The label a typed answer means, or None when it means none."""
    digits = [int(ch) for ch in answer if ch.isdigit()]
    if not digits or len(digits) != len(answer) or any(not 1 <= d <= len(label_names) for d in digits):
        return None
    if multilabel:
        return sorted({label_names[d - 1] for d in digits}, key=label_names.index)
    return label_names[digits[0] - 1] if len(digits) == 1 else None


class Keys(Protocol):
    """How the terminal shows an item and reads an answer (a text's label keys; NER's tag edits: `ner.TagEdits`)."""

    def help(self) -> str: ...

    def show(self, item: dict) -> str: ...

    def answer(self, item: dict, answer: str) -> tuple[object, str]:
        """(the label to store, or None to ask again; what to print first)."""
        ...


@dataclass
class LabelKeys:
    """A key per label (several keys at once for multi-label), Enter for the suggestion."""

    label_names: list[str]
    multilabel: bool = False

    def help(self) -> str:
        return keys_line(self.label_names, self.multilabel)

    def show(self, item: dict) -> str:
        suggestion = item["suggestion"]
        hint = f"  suggestion: {shown(suggestion)} ({item['confidence']:.2f})" if suggestion is not None else ""
        return f"{item['text']}\n{hint}"

    def answer(self, item: dict, answer: str) -> tuple[object, str]:
        answer = answer.lower()
        label = item["suggestion"] if answer == "" and item["suggestion"] else read_keys(answer, self.label_names,
                                                                                            self.multilabel)
        return label, "" if label is not None else self.help()


def label_in_terminal(folder: ActiveFolder, label_names: list[str], multilabel: bool, round_number: int,
                      ask: Callable[[str], str] | None = None, out: TextIO | None = None,
                      keys: Keys | None = None) -> str:
    """Show the batch's unlabeled texts one by one and store each label at once; returns why it ended: `done` (the
    batch is labeled), `skipped` (texts were skipped) or `quit`. `ask` reads an answer (default: input()); `keys`
    shows an item and reads answers (default: a key per label)."""
    import sys

    out = out or sys.stdout
    ask = ask or (lambda prompt: input(prompt))
    keys = keys or LabelKeys(label_names, multilabel)
    queue = folder.unlabeled_in_batch()
    given: list[dict] = []  # what this session labeled, for undo
    skipped, position, total = 0, 0, len(queue)
    print(keys.help(), file=out)
    while position < len(queue):
        item = queue[position]
        print(f"\n[{position + 1}/{total}] {keys.show(item)}", file=out)
        try:
            answer = ask("> ").strip()
        except EOFError:
            return "quit"
        if answer.lower() == "q":
            return "quit"
        if answer.lower() == "s":
            skipped, position = skipped + 1, position + 1
        elif answer.lower() == "u":
            if not given:
                print("  nothing to undo", file=out)
                continue
            last = given.pop()
            folder.add_label(last["text"], None, "terminal", round_number)
            position = queue.index(last)
            print(f"  took back the label of: {last['text']}", file=out)
        else:
            label, said = keys.answer(item, answer)
            if said:
                print(said, file=out)
            if label is not None:
                folder.add_label(item["text"], label, "terminal", round_number)
                given.append(item)
                position += 1
    return "skipped" if skipped else "done"
