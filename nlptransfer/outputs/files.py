"""Atomic file writers: a crash leaves the old file or the new one, never half of one.

Each file is written to a temporary file in its destination folder, flushed to disk and renamed into
place. The temporary file is created with mode 0o666 and the kernel applies the user's umask, as for
any file a program creates: 0644 under umask 022, so teammates can read a run's files (Python's
`tempfile.mkstemp` would create it 0600 whatever the umask). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_NAME_ATTEMPTS = 100


def make_dir(path: Path) -> Path:
    """Create folder `path` and its parents if missing (mode from the umask, like `mkdir -p`); return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    make_dir(path.parent)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def writing(path: Path):
    """A temporary path beside `path` for a writer that streams (Arrow, numpy); renamed onto `path` when the block
    ends without an error, removed when it fails: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    make_dir(path.parent)
    handle, temporary = _create_temporary(path)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, UTF-8 encoded."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: dict) -> None:
    """Write `data` as indented UTF-8 JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write `rows` to `path` atomically, one JSON object a line."""
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a new hidden file beside `path`, mode 0o666 less the umask; return its descriptor and path."""
    for _ in range(_NAME_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, _CREATE_FLAGS, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {path} after {_NAME_ATTEMPTS} attempts")


def umask_file_mode(folder: Path) -> int:
    """The mode a new file in `folder` gets from the umask (0o644 under 022), read off a probe file: reading
    the umask itself would change it for the whole process for a moment."""
    handle, probe = _create_temporary(Path(folder) / ".mode-probe")
    try:
        return stat.S_IMODE(os.fstat(handle).st_mode)
    finally:
        os.close(handle)
        probe.unlink(missing_ok=True)


def readable_as_umask_says(folder: Path) -> None:
    """Give every file under `folder` the umask's mode: some writers (safetensors) create theirs 0600."""
    mode = umask_file_mode(folder)
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)


NO_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
NO_SPACE_MESSAGES = ("No space left on device", "Disk quota exceeded", "os error 28", "code: 28", "StorageFull",
                     "enforce fail at inline_container.cc", "file write failed")
"""How a full disk shows in errors that are not an OSError: safetensors' (a Rust io::Error in its message) and
torch.save's (`[enforce fail at inline_container.cc:...]` from its zip writer: a short write, in practice a
full disk)."""


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) says the disk or the user's quota is full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return True
        if not isinstance(error, (KeyboardInterrupt, SystemExit)) and any(
                marker in str(error) for marker in NO_SPACE_MESSAGES):
            return True
        error = error.__cause__ or error.__context__
    return False


def megabytes(size: float) -> str:
    """`size` bytes in MB, with two significant digits below 0.1 MB (a tiny test model's checkpoint)."""
    return f"{size / 1e6:,.1f}" if size >= 1e5 else f"{size / 1e6:.2g}"


def free_bytes(folder: Path) -> int | None:
    """Free space where `folder` is (or would be created); None if it cannot be told."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def no_space_message(folder: Path, what: str, needed_bytes: int, then: str) -> str:
    """The one line for a write that a full disk stopped: where, how much it needs, how much is free, what next."""
    free = free_bytes(folder)
    available = f", {megabytes(free)} MB are free" if free is not None else ""
    return (f"no space left on the disk to write in {folder} ({what}): it needs about {megabytes(needed_bytes)} MB"
            f"{available}; free some space, then {then}")


def folder_bytes(folder: Path) -> int:
    """The size of the files under `folder` (0 if it does not exist)."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file()) if Path(folder).is_dir() \
        else 0
