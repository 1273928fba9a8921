"""The one rule for every folder the toolkit writes (a run, a sweep, a comparison, a curve, an export, an adapted
encoder): it replaces or empties only a folder that it wrote, and only the entries it writes there.

A folder the toolkit writes carries `.nlptransfer.json`, naming its kind. Before a command writes into a folder
that is there, `check_writable` refuses (one line) a folder of another kind, a folder holding anything its kind does
not write (the user's notes, data, a sub-folder) unless it is marked as one of the kind (then those entries are
left alone), and, before replacing or emptying it, a folder holding one of the command's inputs (a data file, the
model, a config file). A folder written before these markers existed counts as its kind when it holds the kind's
`signature` files and only entries its kind writes. Stdlib only.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from . import files

MARKER = ".nlptransfer.json"
LOCKS = ".nlptransfer.lock"
"""A run folder's lock and its temporary and claim files: they belong to the lock, not to what a run wrote."""


@dataclass(frozen=True)
class Kind:
    """A kind of folder the toolkit writes: its name, the top-level entries it writes (glob patterns), and the file
    that marks one written before the markers existed."""

    name: str
    writes: tuple[str, ...]
    signature: tuple[str, ...]

    def wrote(self, name: str) -> bool:
        """Whether entry `name` is one this kind writes (its hidden temporary files too)."""
        return (name.startswith(".") and name.endswith(".tmp")) or any(fnmatch.fnmatchcase(name, pattern)
                                                                       for pattern in self.writes)


ENSEMBLE = Kind("ensemble", ("ensemble.json", "metrics.json", "predictions.jsonl", "report.md", "README.md", "*.png"),
                ("ensemble.json",))
"""An ensemble of finished runs (`nlptransfer.ensemble`): what it writes; `nlptransfer.predict` serves the folder."""
CONTINUAL = Kind("continual", ("continual.yaml", "state.json", "checkpoints", "model", "report.md", "metrics.json",
                                "*.png", "predictions.jsonl", "README.md", "naive", "adapters", "joint", "replay*",
                                "ewc*", "lwf*"), ("continual.yaml",))
"""A sequence of stages (`nlptransfer.continual`): what it writes (a method's own folder is named after it)."""


def entries(folder: Path) -> list[Path]:
    """The folder's entries but the marker and the lock's files."""
    return [entry for entry in Path(folder).iterdir() if entry.name != MARKER and not entry.name.startswith(LOCKS)]


def kind_of(folder: Path) -> str | None:
    """The kind named by the folder's marker; None without a (readable) one."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("kind") if isinstance(record, dict) and isinstance(record.get("kind"), str) else None


def foreign(folder: Path, kind: Kind) -> list[str]:
    """The entries of `folder` that `kind` does not write, sorted; [] for a missing folder."""
    if not Path(folder).is_dir():
        return []
    return sorted(entry.name for entry in entries(folder) if not kind.wrote(entry.name))


def is_of_kind(folder: Path, kind: Kind) -> bool:
    """Whether `folder` is one the toolkit wrote as `kind`: marked so, or (written before the markers) holding its
    signature and only entries the kind writes."""
    marked = kind_of(folder)
    if marked is not None:
        return marked == kind.name
    return any((Path(folder) / name).exists() for name in kind.signature) and not foreign(folder, kind)


def check_writable(folder: Path, kind: Kind, option: str, replacing: bool = False,
                   inputs: Iterable[tuple[str, str | Path]] = (), whole: bool = False) -> None:
    """Refuse (ConfigError, one line) to write a `kind` into `folder` (given as `option`) unless it is missing, empty,
    or one the toolkit wrote as `kind`; with `replacing` (it is emptied or replaced), also a folder holding one of
    `inputs` ((option, path) pairs: the data files, the model, ...); with `whole` (it is replaced as a whole), also a
    marked folder to which files its kind does not write were added."""
    folder = Path(folder)
    if not folder.is_dir() or not entries(folder):
        return
    marked = kind_of(folder)
    if marked is not None and marked != kind.name:
        raise ConfigError(f"{option}={folder} is {article(marked)} folder, not {article(kind.name)} folder; choose "
                          f"another {option}")
    if not is_of_kind(folder, kind) or (whole and foreign(folder, kind)):
        names = foreign(folder, kind) if marked else sorted(entry.name for entry in entries(folder))
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise ConfigError(f"{option}={folder} holds files that nlptransfer did not write ({shown}); nothing there "
                          f"is replaced or deleted: choose a new or empty folder for {option}")
    if replacing:
        for name, path in inputs:
            if path and inside(Path(path), folder):
                raise ConfigError(f"{option}={folder} holds {name}={path}, an input of this command, which "
                                  f"replacing the folder would delete; choose another {option} or move the input")


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (both resolved: links and `..` followed)."""
    try:
        path, folder = path.expanduser().resolve(), folder.expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


def make_output_dir(folder: Path, option: str = "output_dir") -> Path:
    """Create a command's output folder (and its parents); one line when it cannot be."""
    try:
        return files.make_dir(folder)
    except OSError as error:
        raise ConfigError(f"cannot create {option}={folder} ({error.strerror}); choose a folder you can write to") \
            from None


def claim(folder: Path, kind: Kind) -> None:
    """Mark `folder` (created if missing) as written by the toolkit as `kind`."""
    if kind_of(folder) != kind.name:
        files.write_text(Path(folder) / MARKER, json.dumps({"kind": kind.name, "written_by": "nlptransfer"}) + "\n")


def clear(folder: Path, kind: Kind) -> list[str]:
    """Remove the entries of `folder` that `kind` writes (never others, the marker or the lock); return their names,
    sorted. `first` entries go first: a finished marker (metrics.json, report.md) before what it vouches for."""
    removed = sorted((entry for entry in entries(folder) if kind.wrote(entry.name)), key=lambda entry: entry.name)
    for entry in removed:
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as error:
            raise ConfigError(f"overwrite=true cannot remove {entry} ({error.strerror}); remove it yourself or "
                              "choose another output folder") from error
    return [entry.name for entry in removed]


def article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def config_inputs(cfg, skip: Iterable[str] = ("output_dir", "resume", "pretrain.output_dir")) -> list[tuple[str, str]]:
    """(dotted option, value) for every string option of `cfg` (a dataclass tree) that names an existing path:
    what a run reads (data files, a local model, pretrain.text_file, ...), which overwrite must never delete."""
    import dataclasses

    found = []

    def collect(value, prefix: str) -> None:
        for field in dataclasses.fields(value):
            item, name = getattr(value, field.name), f"{prefix}{field.name}"
            if dataclasses.is_dataclass(item):
                collect(item, f"{name}.")
            elif isinstance(item, str) and item and name not in skip:
                try:
                    exists = Path(item).expanduser().exists()
                except (OSError, ValueError):
                    exists = False
                if exists:
                    found.append((name, item))

    collect(cfg, "")
    return found
