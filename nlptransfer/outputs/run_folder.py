"""One object owns a run folder's lifecycle: checks, lock, overwrite, the files a run writes, the finished marker.

    with RunFolder(cfg.output_dir).open(overwrite=cfg.overwrite, resume=cfg.resume == "auto") as run:
        run.write_config(to_yaml(cfg))      # only now: a refused run replaces nothing
        ...
        run.finish(metrics)                 # metrics.json, last: it marks a finished run

`open` checks the folder against overwrite/resume before writing anything, takes the folder's lock so
that two runs never write into one folder, and only then, with overwrite, empties it: a resume can never
pick up a checkpoint of the run that was overwritten.

The lock is a file holding {"pid", "host", "started"}. It appears complete (a finished temporary file is
linked into place, which fails if a lock exists) and its run holds flock(2) on it for its lifetime. The kernel
drops a flock when its process dies, even by SIGKILL: the next run finds the flock free and, once the pid is
no longer alive on this host either, takes the lock over with a warning. Racing runs flock the stale file
before replacing it, so exactly one of them wins; where flock is unsupported (Windows, some network
filesystems) the pid alone tells, and the one racer that creates the stale lock's claim file (O_EXCL) wins.
A lock from another host is never taken over: nothing here can tell whether its run is alive. Only the main
process of a distributed run opens the folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from ..errors import CheckpointError, ConfigError
from . import files, folders

try:
    import fcntl
except ImportError:  # Windows: stale locks are told by pid alone
    fcntl = None

logger = logging.getLogger("nlptransfer")

LOCK_FILE = folders.LOCKS
STARTED_ONLY = {"config.yaml", "train.log", "distill"}
"""What a run that failed before training left (before such a folder was removed again): re-running into it is safe
without overwrite (a distillation's `distill/` holds the teacher's outputs, which it reuses)."""
FINISHED_MARKER = "metrics.json"
UNTRAINED = {"config.yaml", "train.log", "tensorboard"}
"""What a run writes before it has trained anything worth keeping (a distillation's teacher outputs are worth it)."""
RUN = folders.Kind("run", ("config.yaml", "train.log", FINISHED_MARKER, "predictions.jsonl", "README.md", "model",
                           "adapter", "checkpoints", "export", "adapted-encoder", "alone", "tensorboard", "*.png",
                           "distill", "report.md"),
                  ("train.log", "config.yaml"))
"""What a run writes at the top of its folder: overwrite=true removes these and nothing else."""

_LOCK_ATTEMPTS = 20
_BUSY_WAIT_S = 0.1  # how long a flock may stay busy before its holder counts as alive (a takeover takes far less)
_NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EINVAL,
             errno.EBADF}
_REFUSALS = {
    "unfinished": "output_dir={path} holds an unfinished run (killed?); resume it with resume=auto, "
                  "or pass overwrite=true to start afresh, or choose another output_dir",
    "finished": "output_dir={path} already holds a finished run; choose another output_dir or pass overwrite=true",
    "unresumable": "output_dir={path} holds an unfinished run with no complete checkpoint to resume from (killed? a "
                   "full disk?); start it afresh with overwrite=true, or choose another output_dir",
}
# The folders this process holds a lock on, by (device, inode): a second RunFolder on one of them is refused
# without opening its lock file (on NFS, closing any descriptor of a file drops the process's locks on it).
_HOLDERS: weakref.WeakValueDictionary[tuple[int, int], RunFolder] = weakref.WeakValueDictionary()


class RunFolder:
    """A run's output folder: its state, its lock, and atomic writers for the files a run leaves."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._held: IO[bytes] | None = None  # the lock file, open and flocked while this object holds the lock
        self._owner_pid: int | None = None
        self._key: tuple[int, int] | None = None
        self._record: dict = {}
        self.created = False  # whether this run's open() found the folder missing or empty (discard() may empty it)
        self._made = False  # whether it found it missing (discard() may remove the folder itself)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def holds_lock(self) -> bool:
        """Whether this object, in this process, holds the folder's lock."""
        return self._held is not None and self._owner_pid == os.getpid()

    @property
    def finished(self) -> bool:
        """Whether the folder holds a finished run (its metrics.json is written last)."""
        return (self.path / FINISHED_MARKER).is_file()

    def state(self) -> str:
        """`missing`, `empty`, `foreign` (it holds files no run wrote, and is not marked as a run folder), `started`
        (only STARTED_ONLY files), `unfinished` (no metrics.json) or `finished`.

        The lock, its temporary files and the folder's marker do not count; in a folder marked as a run's, neither
        do files a run does not write (the user's own, which overwrite leaves alone).
        """
        self._refuse_file()
        if not self.path.exists():
            return "missing"
        if not self._run_entries():
            return "empty"
        if not folders.is_of_kind(self.path, RUN):
            return "foreign"
        names = {entry.name for entry in self._run_entries() if RUN.wrote(entry.name)}
        if not names:
            return "empty"
        if FINISHED_MARKER in names:
            return "finished"
        return "started" if names <= STARTED_ONLY else "unfinished"

    def open(self, *, overwrite: bool, resume: bool, inputs: list[tuple[str, str]] = ()) -> RunFolder:
        """Take the folder for a new run (`resume`: for the run it holds); checks first, writes nothing until they pass.

        Refuses a file, overwrite with resume, a folder in use by another run, a folder of files no run wrote, a run
        that neither overwrite nor resume allows, a resume with no run to resume, and with `overwrite` a folder
        holding one of `inputs` ((option, path): the run's data files, model, ...). Then creates the folder, marks it
        as a run's, takes the lock and, with `overwrite`, removes what a previous run wrote (only that). Returns
        self, to use in a `with` block.
        """
        if self.holds_lock:
            raise RuntimeError(f"{self!r}.open() was called twice")
        self.check(overwrite=overwrite, resume=resume, inputs=inputs)
        state = self.state()
        self.created, self._made = state in ("missing", "empty"), state == "missing"
        try:
            files.make_dir(self.path)
        except OSError as error:
            raise ConfigError(f"cannot create output_dir={self.path} ({error.strerror}); choose a folder you can "
                              "write to") from None
        self.lock()
        try:
            self._check_state(overwrite=overwrite, resume=resume)  # again under the lock: a run may have ended
            folders.claim(self.path, RUN)
            removed = self.clear() if overwrite else []
        except BaseException:
            self.release()
            raise
        if removed:
            logger.info("overwrite=true: removed the previous run's files: %s", ", ".join(removed))
        return self

    def check(self, *, overwrite: bool, resume: bool, inputs: list[tuple[str, str]] = ()) -> None:
        """The checks `open` makes before it writes anything (a command may make them before its own work first):
        a file, overwrite with resume, a folder in use, a run neither allows, `inputs` inside a folder to replace."""
        self._refuse_file()
        if overwrite and resume:
            raise ConfigError(f"overwrite=true would delete the run in {self.path} that resume= continues; "
                              "pass overwrite=true or resume=, not both")
        self._refuse_if_in_use()
        self._check_state(overwrite=overwrite, resume=resume)
        if overwrite:
            folders.check_writable(self.path, RUN, "output_dir", replacing=True, inputs=inputs)

    def lock(self) -> None:
        """Take the folder's lock: refuse while another run holds it, take over one whose run is gone.

        Raises ConfigError naming the run that holds it. Idempotent; `release` (or the `with` block) gives it back.
        """
        if self.holds_lock:
            return
        files.make_dir(self.path)
        self._refuse_if_held_here()
        self._record = {"pid": os.getpid(), "host": socket.gethostname(),
                        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                        "token": os.urandom(8).hex()}  # no two locks have the same content
        staged, temporary = self._stage_lock()
        try:
            self._publish_lock(temporary)
        except BaseException:
            staged.close()
            raise
        finally:
            temporary.unlink(missing_ok=True)
        self._held, self._owner_pid, self._key = staged, os.getpid(), _file_key(self.path)
        _HOLDERS[self._key] = self

    def release(self) -> None:
        """Remove the lock if this object took it in this process; otherwise do nothing. Safe to call twice."""
        held = self._held
        if held is None or self._owner_pid != os.getpid():
            return  # not ours, or a forked child's copy of the parent's lock
        self._held = None
        try:
            if _same_file(held, self.lock_path):  # unlink before close: a waiter then sees the file is gone
                self.lock_path.unlink(missing_ok=True)
        finally:
            held.close()
            if _HOLDERS.get(self._key) is self:
                del _HOLDERS[self._key]

    def clear(self) -> list[str]:
        """Remove what a run wrote in the folder (RUN.writes), never other files, the marker or the lock; return the
        names removed, sorted. Needs the lock.

        metrics.json goes first, so a clear killed halfway never leaves a folder that looks finished.
        """
        if not self.holds_lock:
            raise RuntimeError(f"{self!r}.clear() needs the lock: call open() or lock() first")
        finished = (self.path / FINISHED_MARKER).is_file()
        (self.path / FINISHED_MARKER).unlink(missing_ok=True)
        removed = folders.clear(self.path, RUN) + ([FINISHED_MARKER] if finished else [])
        kept = folders.foreign(self.path, RUN)
        if kept:
            logger.info("overwrite=true: kept the files no run writes: %s", ", ".join(kept))
        return sorted(removed)

    def discard(self) -> None:
        """After a failed run that saved nothing trained (only UNTRAINED entries): remove what it wrote, and the
        folder if its open() created it, so that a refused run leaves nothing behind (a folder it did not create
        keeps its other files; a checkpoint, a model or an adapted encoder is kept)."""
        if not self.holds_lock or not self.created:
            return
        if not {entry.name for entry in self._run_entries() if RUN.wrote(entry.name)} <= UNTRAINED:
            return
        with contextlib.suppress(OSError, ConfigError):
            folders.clear(self.path, RUN)
            (self.path / folders.MARKER).unlink(missing_ok=True)
        self.release()
        if self._made:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty: never another's files

    def write_config(self, text: str) -> None:
        """Write config.yaml atomically; call it once the run's checks have passed, so a refusal replaces nothing."""
        files.write_text(self.path / "config.yaml", text)

    def write_text(self, name: str, text: str) -> None:
        """Write `name` (relative to the folder) atomically."""
        files.write_text(self.path / name, text)

    def write_json(self, name: str, data: dict) -> None:
        """Write `name` (relative to the folder) as JSON, atomically."""
        files.write_json(self.path / name, data)

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        """Write `name` (relative to the folder) as JSON lines, atomically."""
        files.write_jsonl(self.path / name, rows)

    def finish(self, metrics: dict) -> None:
        """Write metrics.json: the last file of a run, whose presence marks it finished."""
        files.write_json(self.path / FINISHED_MARKER, metrics)

    @contextlib.contextmanager
    def writing_outputs(self, needed_bytes: Callable[[], int]) -> Iterator[None]:
        """Around the run's final writes (model/, adapter/, figures, metrics.json): a failure or an interrupt
        removes what is half-written (hidden temporary files and staging folders such as .model.tmp); a full
        disk becomes one line with the space needed (`needed_bytes()`, about the model's weights) and how to
        finish the run: resume=auto from its last checkpoint, which holds the trained weights."""
        try:
            yield
        except BaseException as error:
            self.remove_partial_writes()
            if files.is_disk_full(error):
                raise CheckpointError(files.no_space_message(self.path, "the trained model and the run's files",
                                                             needed_bytes(), self._how_to_finish())) from None
            raise

    def remove_partial_writes(self) -> None:
        """Remove the hidden temporary files and folders of writes into the run folder that did not complete."""
        for entry in self._run_entries():
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _last_checkpoint(self) -> str | None:
        """The name of the folder's last complete checkpoint (step-...), None without one."""
        from ..engine.checkpoint import MARKER, NAME  # the layout of checkpoints/ belongs to checkpoint.py

        folder = self.path / "checkpoints"
        steps = sorted(p.name for p in folder.iterdir() if NAME.match(p.name) and (p / MARKER).is_file()) \
            if folder.is_dir() else []
        return steps[-1] if steps else None

    def _how_to_finish(self) -> str:
        last = self._last_checkpoint()
        if last is not None:
            return (f"finish the run with resume=auto: it goes on from the last checkpoint ({last}), nothing "
                    "trained before it is redone")
        return ("run it again with overwrite=true: checkpoints were off (checkpoint.every_epoch=false), so the "
                "trained weights are lost")

    def _refuse_file(self) -> None:
        if self.path.is_file():
            raise ConfigError(f"output_dir={self.path} is a file; choose a folder for output_dir or delete the file")
        blocking = next((parent for parent in self.path.absolute().parents if parent.is_file()), None)
        if blocking is not None:
            raise ConfigError(f"output_dir={self.path}: {blocking} is a file, not a folder; choose another output_dir")

    def _run_entries(self) -> list[Path]:
        return folders.entries(self.path)

    def _check_state(self, *, overwrite: bool, resume: bool) -> None:
        state = self.state()
        if state == "foreign":
            folders.check_writable(self.path, RUN, "output_dir")  # raises: names the files no run wrote
        holds_run = state in ("unfinished", "finished")
        if resume and not holds_run:
            raise CheckpointError(f"resume=auto: {self.path} holds no run to resume; drop resume= to start a new run")
        if holds_run and not (overwrite or resume):
            if state == "unfinished" and self._last_checkpoint() is None:
                state = "unresumable"
            raise ConfigError(_REFUSALS[state].format(path=self.path))

    def _refuse_if_in_use(self) -> None:
        """Raise if a live run holds the lock; reads only, so a refused run changes nothing."""
        if not self.path.is_dir():
            return
        self._refuse_if_held_here()
        try:
            held = _open_lock(self.lock_path)
        except FileNotFoundError:
            return
        with held:
            self._judge(held)

    def _refuse_if_held_here(self) -> None:
        holder = _HOLDERS.get(_file_key(self.path))
        if holder is not None and holder is not self:
            raise self._in_use(holder._record, verified=True)

    def _stage_lock(self) -> tuple[IO[bytes], Path]:
        """Our lock, complete and flocked, under a temporary name: published, it is whole and held from the start."""
        temporary = self.path / f"{LOCK_FILE}.{os.getpid()}.{os.urandom(8).hex()}.tmp"
        staged = os.fdopen(os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), "r+b")
        try:
            staged.write(json.dumps(self._record).encode("utf-8"))
            staged.flush()
            os.fsync(staged.fileno())
            _flock(staged.fileno(), wait_s=0)
        except BaseException:
            staged.close()
            temporary.unlink(missing_ok=True)
            raise
        return staged, temporary

    def _publish_lock(self, temporary: Path) -> None:
        for _ in range(_LOCK_ATTEMPTS):
            try:
                os.link(temporary, self.lock_path)  # fails if a lock exists: no run replaces another's
                return
            except FileExistsError:
                pass
            if self._take_over(temporary):
                return
        raise ConfigError(f"could not take the lock {self.lock_path}: it keeps changing; retry, or if no run is "
                          f"using {self.path}, delete {self.lock_path} and any {LOCK_FILE}.*.claim beside it")

    def _take_over(self, temporary: Path) -> bool:
        """Replace a lock whose run is gone by ours; raise if its run is alive. False: it changed meanwhile, retry."""
        try:
            held = _open_lock(self.lock_path)
        except FileNotFoundError:
            return False
        with held:  # closing it after the rename hands the stale file's flock to the next racer, who then sees ours
            flocked, record, content = self._judge(held)
            if flocked:  # no other racer can be here for this file
                if not _same_file(held, self.lock_path):
                    return False
                self._warn_takeover(record)
                os.replace(temporary, self.lock_path)
                return True
        return self._claim_and_take_over(temporary, content, record)

    def _claim_and_take_over(self, temporary: Path, content: bytes, record: dict | None) -> bool:
        """Without flock: the racer that creates this stale lock's claim file alone may replace it."""
        claim = self.path / f"{LOCK_FILE}.{hashlib.sha256(content).hexdigest()[:16]}.claim"
        try:
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            time.sleep(0.01)  # another racer is replacing it: its lock is there in a moment
            return False
        try:
            if self.lock_path.read_bytes() != content:  # replaced meanwhile, by a racer that held the claim
                return False
            self._warn_takeover(record)
            os.replace(temporary, self.lock_path)
            return True
        except FileNotFoundError:
            return False
        finally:
            claim.unlink(missing_ok=True)

    def _judge(self, held: IO[bytes]) -> tuple[bool | None, dict | None, bytes]:
        """Raise if the run of lock file `held` is alive; else return whether we flocked it (None: unsupported here),
        its record (None: unreadable) and its content."""
        flocked = _flock(held.fileno(), wait_s=_BUSY_WAIT_S)
        content = held.read()
        record = _parse(content)
        if flocked is False:
            raise self._in_use(record, verified=True)
        if record is None:
            return flocked, None, content  # unreadable: flocked, its run is gone; without flock nothing better to go on
        if record["host"] != socket.gethostname():
            raise self._in_use(record, verified=False)
        # A free flock with a live pid: a reused pid, or a holder that lost its flock; refuse, to be safe.
        if record["pid"] != os.getpid() and pid_alive(record["pid"]):
            raise self._in_use(record, verified=False)
        return flocked, record, content

    def _in_use(self, record: dict | None, verified: bool) -> ConfigError:
        who = (f"pid {record['pid']} on {record['host']}, started {record.get('started', '?')}" if record
               else f"its lock {self.lock_path} is unreadable")
        fix = "wait for it to finish or choose another output_dir"
        if not verified:
            fix += f"; if that run is no longer running, delete {self.lock_path}"
        return ConfigError(f"{self.path} is in use by another run ({who}); {fix}")

    def _warn_takeover(self, record: dict | None) -> None:
        if record is None:
            logger.warning("taking over the unreadable lock %s of a run that is no longer running", self.lock_path)
        else:
            logger.warning("taking over the lock of a run that is no longer running (pid %s on %s, started %s): %s",
                           record["pid"], record["host"], record.get("started", "?"), self.lock_path)


def _drop_locks_in_child() -> None:
    """In a forked child (a tokenizing worker, a data loader's worker): close its copies of the held lock files. A
    copy of the descriptor keeps the flock held, so a child that outlived a killed run would hold its folder."""
    for holder in list(_HOLDERS.values()):
        if holder._held is not None:
            with contextlib.suppress(OSError):
                holder._held.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)


def _open_lock(path: Path) -> IO[bytes]:
    """Open an existing lock file to flock and read it (read-write where allowed: NFS flocks need it)."""
    try:
        return os.fdopen(os.open(path, os.O_RDWR), "rb")
    except PermissionError:
        pass
    try:
        return os.fdopen(os.open(path, os.O_RDONLY), "rb")
    except PermissionError as error:
        raise ConfigError(f"cannot read the lock {path} ({error.strerror}); ask its owner, or delete it if its run "
                          "is no longer running") from error


def _flock(fd: int, wait_s: float) -> bool | None:
    """Take an exclusive flock on `fd`, trying for up to `wait_s`: True taken, False busy, None unsupported here."""
    if fcntl is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        except OSError as error:
            if error.errno in _NO_FLOCK:
                return None
            raise


def _parse(data: bytes) -> dict | None:
    """The lock's record, or None if it is not one (empty, truncated, edited)."""
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one too
        return None
    if not isinstance(record, dict) or type(record.get("pid")) is not int or record["pid"] <= 0:
        return None
    return record if isinstance(record.get("host"), str) else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host; one we may not signal runs too."""
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate it on Windows: count it alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. a pid beyond the system's range
        return False
    return True


def _file_key(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _same_file(held: IO[bytes], path: Path) -> bool:
    """Whether `path` still names the file open as `held` (it is not replaced or removed)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(held.fileno())
    return (status.st_dev, status.st_ino) == (opened.st_dev, opened.st_ino)
