"""The active-learning folder: what the person labeled, each round's record, the batch waiting for labels.

`labels.jsonl` is append-only: one JSON record a line (`text`, `label`, `by`, `round`, `at`), each written by one
`write` and fsynced before the call returns, so a label given is on disk when the person sees the next text. A record
with `label: null` takes a label back (undo); the last record of a text wins. A line torn by a kill mid-write is
skipped on reading and cut off before the next append; a full disk cuts the file back to the labels before it and
says so in one line. `rounds.jsonl` appends each round's record the same way; `active.json`, `batch.json` and
`to_label.csv` are replaced atomically. The folder is marked `active` (`outputs/folders.py`) and locked as a run
folder is: a second loop on it is refused. Stdlib only.
"""

from __future__ import annotations

import errno
import json
import os
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError, DataError
from ..outputs import files, folders
from ..outputs.run_folder import RunFolder

ACTIVE = folders.Kind("active", ("active.json", "labels.jsonl", "rounds.jsonl", "batch.json", "to_label.csv",
                                 "round-model", "pool_predictions.json", "learning_curve.png",
                                 "report.md", "pool_features.pt", "labels.csv", "labels.conll"), ("labels.jsonl",))
"""An active-learning folder (`nlptransfer.active`): what it writes."""
LABELS, ROUNDS, SETTINGS, BATCH = "labels.jsonl", "rounds.jsonl", "active.json", "batch.json"


def append_record(path: Path, record: dict) -> None:
    """Append `record` as one JSON line with one write, fsynced; a torn last line (a kill mid-write) is cut off first;
    a failed write (a full disk) leaves the file as it was and raises DataError."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    new = not path.exists()
    handle = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = cut_torn_line(handle)
        try:
            if os.write(handle, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(handle)
        except OSError as error:
            os.ftruncate(handle, size)
            if files.is_disk_full(error):
                raise DataError(files.no_space_message(path.parent, path.name, len(data),
                                                       "label again (every label given before is kept)")) from None
            raise
    finally:
        os.close(handle)
    if new:
        sync_folder(path.parent)


def cut_torn_line(handle: int) -> int:
    """Cut the file back to its last complete line; return its size."""
    size = os.fstat(handle).st_size
    if size == 0 or os.pread(handle, 1, size - 1) == b"\n":
        return size
    tail = os.pread(handle, min(size, 1 << 20), max(0, size - (1 << 20)))
    keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    os.ftruncate(handle, keep)
    return keep


def sync_folder(folder: Path) -> None:
    """Make a new file's name durable (a crash right after creating it keeps it)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines file the loop appended; a torn last line is skipped, a damaged one elsewhere is a
    one-line DataError."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # the last line without its newline: a write a kill cut short
                break
            raise DataError(f"{path} line {number} is not a JSON record (edited by hand?); fix or delete that line "
                            "(the others are kept)") from None
    return records


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class ActiveFolder:
    """The folder of one active-learning loop, locked while a loop works in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = RunFolder(self.path)

    def check(self, overwrite: bool = False, inputs: list[tuple[str, str]] = ()) -> None:
        """Refuse (one line) a file, a folder of another kind or of the user's files; writes nothing."""
        blocking = next((p for p in (self.path, *self.path.absolute().parents) if p.is_file()), None)
        if blocking is not None:
            raise ConfigError(f"output_dir={self.path}: {blocking} is a file, not a folder; choose another output_dir")
        folders.check_writable(self.path, ACTIVE, "output_dir", replacing=overwrite, inputs=inputs)

    def open(self, overwrite: bool = False, inputs: list[tuple[str, str]] = ()) -> ActiveFolder:
        """Check, create, lock (a second loop is refused) and mark the folder; with `overwrite` empty it first."""
        self.check(overwrite, inputs)
        try:
            files.make_dir(self.path)
        except OSError as error:
            raise ConfigError(f"cannot create output_dir={self.path} ({error.strerror}); choose a folder you can "
                              "write to") from None
        self._lock.lock()
        try:
            self.check(overwrite, inputs)  # again under the lock
            folders.claim(self.path, ACTIVE)
            if overwrite:
                folders.clear(self.path, ACTIVE)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> ActiveFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return (self.path / SETTINGS).is_file()

    def settings(self) -> dict:
        try:
            return json.loads((self.path / SETTINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_settings(self, settings: dict) -> None:
        files.write_json(self.path / SETTINGS, settings)

    def records(self) -> list[dict]:
        return read_records(self.path / LABELS)

    def labels(self) -> dict[str, object]:
        """Text -> its current label, in the order the texts were first labeled (a taken-back label is gone)."""
        current: dict[str, object] = {}
        for record in self.records():
            text = record.get("text")
            if record.get("label") is None:
                current.pop(text, None)
            else:
                current[text] = record["label"]
        return current

    def add_label(self, text: str, label, by: str, round_number: int) -> None:
        """Append one label (None takes the text's label back); on disk when this returns."""
        append_record(self.path / LABELS, {"text": text, "label": label, "by": by, "round": round_number,
                                           "at": now()})

    def rounds(self) -> list[dict]:
        return read_records(self.path / ROUNDS)

    def add_round(self, record: dict) -> None:
        append_record(self.path / ROUNDS, record)

    def batch(self) -> dict:
        """The batch waiting for labels: {round, items: [{text, suggestion, confidence}]}; empty before round 0."""
        try:
            return json.loads((self.path / BATCH).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"round": -1, "items": []}

    def write_batch(self, batch: dict) -> None:
        files.write_json(self.path / BATCH, batch)

    def unlabeled_in_batch(self) -> list[dict]:
        labeled = self.labels()
        return [item for item in self.batch()["items"] if item["text"] not in labeled]


STORED = ("pool", "labels", "descriptions", "text_column", "label_column", "task", "model", "strategy", "query",
          "cold_start", "balance", "batch_size", "seed", "test", "oracle", "score_sample", "aggregate", "mc_passes")
"""The options active.json keeps (and `run_options`, the round's run options as given): a rerun without them continues
as the loop began."""


def stored_options(output_dir: str | Path) -> dict:
    """What an active folder's active.json holds (the loop's first options), {} for a new folder."""
    return {key: value for key, value in ActiveFolder(output_dir).settings().items()
            if key in STORED or key == "run_options"}
