"""Checkpoints a killed run can resume from, bit for bit.

A checkpoint is a folder `checkpoints/step-0000123/` in the run folder holding the trainable
weights (safetensors), the optimizer, scheduler and grad-scaler states, every process's RNG
states and the loop state (epoch, batches done in the epoch, counters, history, best metric).
It is written to a hidden temporary folder, every file is fsynced, a manifest `COMPLETE.json`
with each file's size and SHA-256 is written last, and only then is the folder renamed into
place. A folder without a valid manifest, or whose files no longer match it, is never loaded.
Old checkpoints are deleted only after a newer one is complete. A write that fails (a full disk) or is
interrupted (Ctrl-C) removes its temporary folder; a full disk is a one-line `CheckpointError` with the
space needed, and the last complete checkpoint stays for `resume=auto`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..options import CheckpointConfig
from ..outputs.files import folder_bytes, is_disk_full, no_space_message, readable_as_umask_says
from .state import LoopState

logger = logging.getLogger("nlptransfer")

MARKER = "COMPLETE.json"
NAME = re.compile(r"^step-(\d+)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on some platforms
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights training changes; the frozen rest is rebuilt from the checkpoint the run starts from."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def check_finite(weights: dict[str, torch.Tensor]) -> None:
    bad = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"refusing to save non-finite weights ({bad[0]} and {len(bad) - 1} more); "
                              "lower train.lr or set train.max_grad_norm")


def rng_states() -> dict[str, torch.Tensor]:
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(python_state[1], dtype=torch.int64),
        "python_extra": torch.tensor([python_state[0], python_state[2] is not None], dtype=torch.int64),
        "numpy": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_extra": torch.tensor([numpy_state[2], numpy_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([numpy_state[4]], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        states |= {f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return states


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    version, has_gauss = states["python_extra"].tolist()
    if has_gauss:  # random.gauss' cached value is not saved; it is None after seeding anyway
        logger.debug("python random had a cached gaussian; it is not restored")
    random.setstate((version, tuple(states["python"].tolist()), None))
    position, numpy_has_gauss = states["numpy_extra"].tolist()
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), position, numpy_has_gauss,
                         float(states["numpy_gauss"][0])))
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


class Checkpoints:
    """Saves, finds, verifies, loads and rotates the checkpoints of one run folder."""

    def __init__(self, run_dir: Path, cfg: CheckpointConfig, fingerprint: dict, accelerator: Accelerator):
        self.folder = Path(run_dir) / "checkpoints"
        self.cfg = cfg
        self.fingerprint = fingerprint
        self.accelerator = accelerator

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.every_steps or self.cfg.every_epoch)

    # -- saving -------------------------------------------------------------------------------

    def save(self, model, optimizer, scheduler, state: LoopState) -> Path:
        """Write a complete checkpoint of the current step; rotate old ones afterwards.

        A failed or interrupted write leaves nothing behind but the checkpoints that were complete before.
        """
        accelerator = self.accelerator
        final = self.folder / f"step-{state.optimizer_steps:07d}"
        staging = self.folder / f".tmp-step-{state.optimizer_steps:07d}"
        weights = trainable_weights(accelerator.unwrap_model(model))
        check_finite(weights)
        every_rng = gather_object([rng_states()])  # the main process writes all (no shared disk needed)
        if accelerator.is_main_process:
            self.remove_staging()  # a killed save's leftovers: their space first
            try:
                self.write(staging, final, weights, every_rng, optimizer, scheduler, state)
            except BaseException as error:
                shutil.rmtree(staging, ignore_errors=True)
                if self.folder.is_dir() and not any(self.folder.iterdir()):
                    self.folder.rmdir()  # an empty checkpoints/ would make the run folder look like a killed run
                if is_disk_full(error):
                    raise CheckpointError(self.no_space(weights, optimizer)) from None
                raise
            self.rotate(state.best_step)
        accelerator.wait_for_everyone()
        return final

    def write(self, staging: Path, final: Path, weights: dict[str, torch.Tensor], every_rng: list, optimizer,
              scheduler, state: LoopState) -> None:
        """Every file into `staging`, fsynced, the manifest last; then renamed to `final`."""
        staging.mkdir(parents=True)
        for index, states in enumerate(every_rng):
            torch.save(states, staging / f"rng-{index}.pt")
        save_file(weights, str(staging / "weights.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        if self.accelerator.scaler is not None:
            torch.save(self.accelerator.scaler.state_dict(), staging / "scaler.pt")
        (staging / "state.json").write_text(json.dumps(
            {"loop": asdict(state), "fingerprint": self.fingerprint}, indent=1), encoding="utf-8")
        readable_as_umask_says(staging)
        manifest = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            manifest[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        (staging / MARKER).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync_file(staging / MARKER)
        _fsync_dir(staging)
        if final.exists():  # a step saved twice (epoch end right after a step checkpoint)
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(self.folder)

    def no_space(self, weights: dict[str, torch.Tensor], optimizer) -> str:
        """The full-disk message: the size of the previous checkpoint (else of the tensors being written) and
        what to do once there is room."""
        complete = self.complete()
        if complete:
            needed = folder_bytes(complete[-1])
            then = f"continue the run with resume=auto (from {complete[-1].name}, the last complete checkpoint)"
        else:
            tensors = list(weights.values()) + [value for group in optimizer.state_dict()["state"].values()
                                                for value in group.values() if isinstance(value, torch.Tensor)]
            needed = sum(t.numel() * t.element_size() for t in tensors)
            then = "run the same command again (no checkpoint was complete yet)"
        return no_space_message(self.folder, "a checkpoint", needed, then)

    def remove_staging(self) -> None:
        """Remove temporary folders of checkpoint writes that never completed (killed, interrupted, disk full)."""
        if self.folder.is_dir():
            for path in self.folder.glob(".tmp-step-*"):
                shutil.rmtree(path, ignore_errors=True)

    def rotate(self, best_step: int | None) -> None:
        """Keep the newest `keep` complete checkpoints and the best one; drop stale temporary folders."""
        complete = self.complete()
        keep = set(complete[-self.cfg.keep:]) if self.cfg.keep > 0 else set()
        keep |= {p for p in complete if best_step is not None and step_of(p) == best_step}
        for path in complete:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        self.remove_staging()

    # -- finding and loading -------------------------------------------------------------------

    def complete(self) -> list[Path]:
        """Folders with a manifest, oldest step first (not verified: see `verify`)."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if NAME.match(p.name) and (p / MARKER).is_file()]
        return sorted(found, key=step_of)

    def latest_valid(self) -> Path:
        """The newest checkpoint whose files all match their manifest (resume=auto)."""
        candidates = self.complete()
        for path in reversed(candidates):
            try:
                verify(path)
                return path
            except CheckpointError as e:
                logger.warning("skipping %s: %s", path.name, e)
        raise CheckpointError(
            f"no complete checkpoint in {self.folder}"
            + (f" ({len(candidates)} damaged)" if candidates else "")
            + "; start a new run (drop resume=) or set checkpoint.every_epoch=true so runs can resume"
        )

    def check(self, path: Path, force: bool) -> None:
        """Refuse `path` unless it is complete and was saved by a run with this run's fingerprint."""
        verify(path)
        saved = json.loads((path / "state.json").read_text(encoding="utf-8"))
        check_compatible(saved["fingerprint"], self.fingerprint, path, force)

    def load(self, path: Path, model, optimizer, scheduler, force: bool) -> LoopState:
        """Restore weights, optimizer, scheduler, scaler, RNG states; return the loop state."""
        verify(path)
        saved = json.loads((path / "state.json").read_text(encoding="utf-8"))
        check_compatible(saved["fingerprint"], self.fingerprint, path, force)
        unwrapped = self.accelerator.unwrap_model(model)
        load_weights(unwrapped, load_file(str(path / "weights.safetensors")))
        restore(optimizer.load_state_dict, path / "optimizer.pt")
        restore(scheduler.load_state_dict, path / "scheduler.pt")
        if self.accelerator.scaler is not None and (path / "scaler.pt").is_file():
            restore(self.accelerator.scaler.load_state_dict, path / "scaler.pt")
        rng_file = path / f"rng-{self.accelerator.process_index}.pt"
        if rng_file.is_file():
            restore(set_rng_states, rng_file)
        logger.info("resumed from %s (epoch %d, step %d)", path, saved["loop"]["epoch"],
                    saved["loop"]["optimizer_steps"])
        return LoopState(**saved["loop"])

    def best_weights(self, state: LoopState) -> dict[str, torch.Tensor] | None:
        """The trainable weights of the best epoch, from its checkpoint."""
        if state.best_step is None:
            return None
        path = self.folder / f"step-{state.best_step:07d}"
        verify(path)
        return load_file(str(path / "weights.safetensors"))


def restore(apply, file: Path) -> None:
    """`apply` the state saved in `file` (torch.save), loaded weights-only: a file holding anything but tensors and
    plain values (a pickle that would run code, another program's file) is refused in one line, and nothing in it
    runs."""
    import pickle

    try:
        apply(torch.load(file, weights_only=True))
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, TypeError, ValueError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{file} is not a checkpoint file nlptransfer wrote ({reason}); it was refused and "
                              "nothing in it ran: resume from another checkpoint, or start afresh with "
                              "overwrite=true") from None


def step_of(path: Path) -> int:
    return int(NAME.match(path.name).group(1))


def verify(path: Path) -> None:
    """Raise a `CheckpointError` naming the file unless every file matches the manifest."""
    marker = path / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {MARKER}); pick another or resume=auto")
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{marker} is damaged; pick another checkpoint or resume=auto") from None
    for name, expected in manifest.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; the checkpoint is damaged")
        if file.stat().st_size != expected["size"] or _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"{file} is truncated or changed since it was saved; the checkpoint is damaged")


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    missing = [name for name in weights if name not in parameters]
    if missing:
        raise CheckpointError(f"the checkpoint has weights this model lacks ({missing[0]}); "
                              "it was saved for another model or strategy")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)


def check_compatible(saved: dict, current: dict, path: Path, force: bool) -> None:
    """Refuse a checkpoint saved with other options (the differing ones named), labels or data size."""
    keys = list(current) + [key for key in saved if key not in current]
    differences = [f"{key} (checkpoint: {saved.get(key)}, now: {current.get(key)})"
                   for key in keys if saved.get(key) != current.get(key)]
    if differences and not force:
        raise CheckpointError(f"cannot resume from {path}: {'; '.join(differences)}; "
                              "run with the checkpoint's settings, or pass resume_force=true")
    if differences:
        logger.warning("resuming despite differences: %s", "; ".join(differences))
