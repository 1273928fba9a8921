"""nlptransfer/checkpoint.py and resuming: killed runs resume to identical results, damaged checkpoints
are never trusted, rotation keeps the right folders, NaN steps are skipped."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from forkserver import ForkServer
from safetensors.torch import load_file

from nlptransfer.cli.run import main
from nlptransfer.config import CheckpointConfig, TrainConfig
from nlptransfer.engine import checkpoint as checkpoint_module
from nlptransfer.engine.checkpoint import MARKER, Checkpoints, LoopState, verify
from nlptransfer.engine.loop import OptimizerSettings, TrainData, fit
from nlptransfer.errors import CheckpointError, TrainingError

# A driver process: runs the CLI; optionally kills itself with SIGKILL at a chosen point, and
# logs the example ids of every training batch (model_inputs is called once per batch).
DRIVER = textwrap.dedent('''
    import errno, os, signal, sys
    from pathlib import Path
    import torch
    import nlptransfer.engine.checkpoint as checkpoint
    import nlptransfer.engine.loop as train
    from nlptransfer.cli.run import main

    kill_mode, kill_at, ids_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    calls = {"step": 0, "save": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    original_inputs = train.model_inputs
    def logged_inputs(batch):
        if torch.is_grad_enabled():  # training, not evaluation
            with open(ids_file, "a") as file:
                file.write(" ".join(map(str, batch["example_index"].tolist())) + "\\n")
        return original_inputs(batch)
    train.model_inputs = logged_inputs

    original_step = torch.optim.AdamW.step
    def step(self, *args, **kwargs):
        calls["step"] += 1
        if kill_mode == "step" and calls["step"] == kill_at:
            die()
        return original_step(self, *args, **kwargs)
    torch.optim.AdamW.step = step

    original_save = checkpoint.save_file
    def save_file(*args, **kwargs):  # the weights file, inside the temporary folder
        calls["save"] += 1
        if kill_mode == "full_disk_save" and calls["save"] == kill_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        original_save(*args, **kwargs)
        if kill_mode == "during_save" and calls["save"] == kill_at:
            die()
    checkpoint.save_file = save_file

    original_rotate = checkpoint.Checkpoints.rotate
    def rotate(self, best_step):  # called right after the new checkpoint is renamed into place
        if kill_mode == "after_save" and calls["save"] == kill_at:
            die()
        return original_rotate(self, best_step)
    checkpoint.Checkpoints.rotate = rotate

    if kill_mode == "full_disk_final":  # the final model/ save: half written, then the disk is full
        from transformers import PreTrainedModel
        def save_pretrained(self, folder, *args, **kwargs):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        PreTrainedModel.save_pretrained = save_pretrained

    sys.exit(main(sys.argv[4:]))
''')


def drive(server: ForkServer, tmp_path: Path, argv: list[str], kill_mode: str = "none", kill_at: int = 0,
          name: str = "ids", threads: int | None = None) -> tuple:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    ids_file = tmp_path / f"{name}.txt"
    done = server.run(driver, [kill_mode, str(kill_at), str(ids_file), *argv], tmp_path, name, threads=threads)
    ids = ids_file.read_text().splitlines() if ids_file.exists() else []
    return done, ids


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, reviews_csv, server):
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    argv = run_args(tiny_model_dir, reviews_csv, tmp_path / "run")
    done, ids = drive(server, tmp_path, argv)
    assert done.returncode == 0, done.stderr
    return tmp_path / "run", ids


def run_args(model: str, csv: Path, output_dir: Path) -> list[str]:
    return ["recipe=sentiment", f"model={model}", f"data.train_file={csv}", "data.name=null", "data.max_length=32",
            "train.epochs=3", "train.batch_size=8", "train.patience=null", "train.lr=1e-3",
            "checkpoint.every_steps=2", "checkpoint.keep=2", f"output_dir={output_dir}", "--quiet"]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.parametrize("kill_mode, kill_at, backend", [
    ("step", 4, "memory"),          # mid-epoch, between checkpoints (steps 1-5 are epoch 1)
    ("during_save", 3, "memory"),   # the weights of the 3rd checkpoint are written, its manifest is not
    ("after_save", 4, "memory"),    # just after the 4th checkpoint is renamed into place, before rotation
    ("step", 7, "arrow"),           # in epoch 2, after an epoch-end checkpoint; the data as Arrow tables and cached
                                    # tokens: the same batches, resumed alike
])
def test_killed_run_resumes_to_identical_results(server, tmp_path, tiny_model_dir, reviews_csv, uninterrupted,
                                                  kill_mode, kill_at, backend):
    reference_dir, reference_ids = uninterrupted
    run_dir = tmp_path / "run"
    argv = run_args(tiny_model_dir, reviews_csv, run_dir) + [f"data.backend={backend}"]
    killed, killed_ids = drive(server, tmp_path, argv, kill_mode, kill_at, name="killed")
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()

    resumed, resumed_ids = drive(server, tmp_path, argv + ["resume=auto"], name="resumed")
    assert resumed.returncode == 0, resumed.stderr

    expected = json.loads((reference_dir / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert got["test"] == expected["test"]
    assert [e["train_loss"] for e in got["epochs"]] == [e["train_loss"] for e in expected["epochs"]]
    assert [e["validation"] for e in got["epochs"]] == [e["validation"] for e in expected["epochs"]]
    reference, weights = final_weights(reference_dir), final_weights(run_dir)
    assert reference.keys() == weights.keys()
    assert all(torch.equal(reference[k], weights[k]) for k in reference)
    # the resumed run trained on exactly the batches the checkpoint had not seen, in the same order
    assert 0 < len(resumed_ids) < len(reference_ids)
    assert resumed_ids == reference_ids[len(reference_ids) - len(resumed_ids):]
    assert killed_ids[:len(reference_ids) - len(resumed_ids)] == reference_ids[:len(reference_ids) - len(resumed_ids)]


def test_a_killed_bf16_run_resumes_to_the_same_bf16_run_uninterrupted(server, tmp_path, tiny_model_dir, reviews_csv,
                                                                     uninterrupted, capsys):
    """bf16 autocast (emulated on a CPU without it): resuming must not change what the bf16 run computes."""
    def argv(run_dir: Path) -> list[str]:
        return run_args(tiny_model_dir, reviews_csv, run_dir) + ["train.mixed_precision=bf16", "train.epochs=1"]
    reference, _ = drive(server, tmp_path, argv(tmp_path / "reference"), name="reference")
    assert reference.returncode == 0, reference.stderr
    killed, _ = drive(server, tmp_path, argv(tmp_path / "run"), "step", 4, name="killed")
    assert killed.returncode == -signal.SIGKILL
    # resuming in another precision is refused as other trajectory options are (in this fp32 process)
    assert main(argv(tmp_path / "run") + ["resume=auto", "train.mixed_precision=no"]) == 2
    assert "mixed_precision (checkpoint: bf16, now: no)" in capsys.readouterr().err
    resumed, _ = drive(server, tmp_path, argv(tmp_path / "run") + ["resume=auto"], name="resumed")
    assert resumed.returncode == 0, resumed.stderr
    expected, got = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("reference", "run"))
    assert got["timing"]["mixed_precision"] == "bf16" and got["test"] == expected["test"]
    assert [e["train_loss"] for e in got["epochs"]] == [e["train_loss"] for e in expected["epochs"]]
    reference_weights, weights = final_weights(tmp_path / "reference"), final_weights(tmp_path / "run")
    assert all(torch.equal(reference_weights[k], weights[k]) for k in reference_weights)
    fp32 = json.loads((uninterrupted[0] / "metrics.json").read_text())  # bf16 did compute otherwise
    assert got["epochs"][0]["train_loss"] != fp32["epochs"][0]["train_loss"]


@pytest.mark.parametrize("kill_mode, kill_at", [
    ("full_disk_save", 3),  # the 3rd checkpoint's weights cannot be written
    ("full_disk_final", 0),  # training is done; the final model/ cannot be written
])
def test_a_run_stopped_by_a_full_disk_says_so_in_one_line_and_resume_finishes_it(server, 
        tmp_path, tiny_model_dir, reviews_csv, uninterrupted, kill_mode, kill_at):
    reference_dir, _ = uninterrupted
    run_dir = tmp_path / "run"
    argv = run_args(tiny_model_dir, reviews_csv, run_dir)
    failed, _ = drive(server, tmp_path, argv, kill_mode, kill_at, name="failed")
    assert failed.returncode == 2
    error = failed.stderr.strip()
    assert error.count("\n") == 0 and error.startswith("error: no space left on the disk to write in "), error
    assert "resume=auto" in error and "Traceback" not in failed.stderr
    assert [p.name for p in run_dir.rglob(".*")] == [".nlptransfer.json"]  # the marker; no .tmp-step-*, no
    # .model.tmp, no temporary file, no lock
    assert not (run_dir / "metrics.json").exists()

    resumed, _ = drive(server, tmp_path, argv + ["resume=auto"], name="resumed")  # the space is free again
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((reference_dir / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert got["test"] == expected["test"]
    assert [e["validation"] for e in got["epochs"]] == [e["validation"] for e in expected["epochs"]]
    reference, weights = final_weights(reference_dir), final_weights(run_dir)
    assert all(torch.equal(reference[k], weights[k]) for k in reference)


def small_training(tmp_path: Path, keep: int = 2):
    """A small model, its optimizer and scheduler, and the checkpoints of a run folder."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoints = Checkpoints(tmp_path, CheckpointConfig(every_steps=1, keep=keep), {"model": "x"}, Accelerator())
    return model, optimizer, scheduler, checkpoints


def save_some(tmp_path: Path, steps: list[int], keep: int = 2, best: int | None = None) -> Checkpoints:
    """Real checkpoints of a small model at the given steps."""
    model, optimizer, scheduler, checkpoints = small_training(tmp_path, keep)
    for step in steps:
        with torch.no_grad():
            model.weight.fill_(step)
        checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=step, best_step=best))
    return checkpoints


def raises(error: BaseException):
    def replacement(*args, **kwargs):
        raise error
    return replacement


@pytest.mark.parametrize("target, error", [
    ("torch.save", OSError(errno.ENOSPC, "No space left on device")),
    ("torch.save", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1472 vs 1360")),
    ("save_file", OSError(errno.EDQUOT, "Disk quota exceeded")),
], ids=["ENOSPC", "torch's write failure", "quota"])
def test_a_full_disk_removes_the_partial_checkpoint_and_keeps_the_last_complete_one(tmp_path, monkeypatch,
                                                                                    target, error):
    model, optimizer, scheduler, checkpoints = small_training(tmp_path)
    checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=1))
    size = sum(p.stat().st_size for p in (checkpoints.folder / "step-0000001").iterdir())
    if target == "torch.save":
        monkeypatch.setattr(torch, "save", raises(error))
    else:
        monkeypatch.setattr(checkpoint_module, "save_file", raises(error))
    with pytest.raises(CheckpointError) as raised:
        checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=2))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"no space left on the disk to write in {checkpoints.folder} (a checkpoint): it needs "
                              f"about {size / 1e6:.2g} MB")  # the size of the previous checkpoint
    assert message.endswith("free some space, then continue the run with resume=auto (from step-0000001, the last "
                            "complete checkpoint)")
    assert [p.name for p in checkpoints.folder.iterdir()] == ["step-0000001"]
    verify(checkpoints.folder / "step-0000001")
    assert checkpoints.latest_valid().name == "step-0000001"


def test_the_first_checkpoint_on_a_full_disk_names_what_it_needs(tmp_path, monkeypatch):
    model, optimizer, scheduler, checkpoints = small_training(tmp_path)
    monkeypatch.setattr(checkpoint_module, "save_file", raises(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(CheckpointError, match=r"it needs about [0-9.e-]+ MB, .* MB are free; free some space, "
                                              r"then run the same command again"):
        checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=1))
    assert not checkpoints.folder.exists()  # an empty checkpoints/ would make the folder look like a killed run


def test_an_interrupt_during_a_checkpoint_write_leaves_no_staging_folder(tmp_path, monkeypatch):
    model, optimizer, scheduler, checkpoints = small_training(tmp_path)
    checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=1))
    monkeypatch.setattr(checkpoint_module, "save_file", raises(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=2))
    assert [p.name for p in checkpoints.folder.iterdir()] == ["step-0000001"]


def test_a_staging_folder_left_by_a_killed_save_is_removed_before_the_next_write(tmp_path, monkeypatch):
    model, optimizer, scheduler, checkpoints = small_training(tmp_path)
    stale = checkpoints.folder / ".tmp-step-0000005"
    stale.mkdir(parents=True)
    (stale / "weights.safetensors").write_bytes(b"x" * 1000)
    written = []
    original = checkpoint_module.save_file

    def save_file(*args, **kwargs):
        written.append(stale.exists())
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)
    checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=1))
    assert written == [False]  # the space of the killed save was freed first
    assert [p.name for p in checkpoints.folder.iterdir()] == ["step-0000001"]


def test_rotation_keeps_the_newest_and_the_best(tmp_path):
    checkpoints = save_some(tmp_path, list(range(1, 11)), keep=2, best=3)
    assert [p.name for p in checkpoints.complete()] == ["step-0000003", "step-0000009", "step-0000010"]
    assert sorted(p.name for p in checkpoints.folder.iterdir()) == ["step-0000003", "step-0000009", "step-0000010"]


def test_folder_without_marker_is_never_loaded(tmp_path):
    checkpoints = save_some(tmp_path, [1, 2])
    (checkpoints.folder / "step-0000002" / MARKER).unlink()
    assert checkpoints.latest_valid().name == "step-0000001"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        verify(checkpoints.folder / "step-0000002")


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_damaged_newest_checkpoint_falls_back_or_names_the_file(tmp_path, damage):
    checkpoints = save_some(tmp_path, [1, 2])
    optimizer_file = checkpoints.folder / "step-0000002" / "optimizer.pt"
    data = optimizer_file.read_bytes()
    optimizer_file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    assert checkpoints.latest_valid().name == "step-0000001"  # resume=auto: the previous complete one
    with pytest.raises(CheckpointError, match="optimizer.pt"):  # resume=PATH: names the damaged file
        verify(checkpoints.folder / "step-0000002")


def test_no_complete_checkpoint_is_a_clear_error(tmp_path, tiny_model_dir, reviews_csv, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    argv = run_args(tiny_model_dir, reviews_csv, run_dir)
    assert main(argv + ["resume=auto"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert main(argv + [f"resume={tmp_path / 'nowhere'}"]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err
    assert not (run_dir / "metrics.json").exists()


def test_killed_run_is_not_overwritten_and_resumes_only_with_its_settings(server, tmp_path, tiny_model_dir, reviews_csv,
                                                                          capsys):
    run_dir = tmp_path / "run"
    argv = run_args(tiny_model_dir, reviews_csv, run_dir)
    killed, _ = drive(server, tmp_path, argv, "step", 7)
    assert killed.returncode == -signal.SIGKILL
    assert main(argv) == 2  # the folder holds checkpoints: a new run must not overwrite them
    assert "overwrite=true" in capsys.readouterr().err
    assert (run_dir / "checkpoints").is_dir()
    assert main(argv + ["resume=auto", "train.batch_size=4"]) == 2
    error = capsys.readouterr().err
    assert "cannot resume" in error and "batch_size (checkpoint: 8, now: 4)" in error and "resume_force" in error
    assert main(argv + ["resume=auto", "strategy=lora"]) == 2
    assert "strategy (checkpoint: full, now: lora)" in capsys.readouterr().err
    assert main(argv + ["resume=auto", "train.mixed_precision=bf16"]) == 2  # this process computes in fp32
    assert "this process already computes in no" in capsys.readouterr().err


class NaNAfter(torch.nn.Module):
    """A model whose loss turns NaN for the batches listed."""

    def __init__(self, nan_batches: set[int]):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.nan_batches, self.calls = nan_batches, 0

    def forward(self, x, labels=None):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(self.linear(x), labels)
        return type("Out", (), {"loss": loss * math.nan if self.calls in self.nan_batches else loss})()


def nan_fit(nan_batches: set[int], limit: int):
    generator = torch.Generator().manual_seed(0)
    rows = [{"x": torch.randn(2, generator=generator), "labels": i % 2, "example_index": i} for i in range(40)]
    loader = torch.utils.data.DataLoader(rows, batch_size=4)
    loader.batch_sampler.set_epoch = lambda epoch: None
    model = NaNAfter(nan_batches)
    cfg = TrainConfig(epochs=1, max_nonfinite_steps=limit)
    return model, fit(model, TrainData(loader, lambda m: {"accuracy": 0.5}), cfg, OptimizerSettings(0.1), Accelerator())


def test_nonfinite_steps_are_skipped_and_counted():
    model, result = nan_fit({2, 5, 6}, limit=3)
    assert result.nonfinite_steps == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(result.history[0]["train_loss"])


def test_too_many_nonfinite_steps_in_a_row_stop_the_run():
    with pytest.raises(TrainingError, match="NaN/inf for 3 steps in a row"):
        nan_fit({2, 3, 4}, limit=3)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", ["malicious pickle", "not torch's", "other keys"])
def test_a_checkpoint_file_nlptransfer_did_not_write_is_one_line_and_runs_nothing(tmp_path, monkeypatch, content):
    """rng-0.pt (with the manifest rewritten to match) replaced: refused as not ours, no traceback, no code run."""
    import pickle

    monkeypatch.chdir(tmp_path)
    model, optimizer, scheduler, checkpoints = small_training(tmp_path)
    path = checkpoints.save(model, optimizer, scheduler, LoopState(optimizer_steps=1))
    rng_file = path / "rng-0.pt"
    if content == "malicious pickle":
        rng_file.write_bytes(pickle.dumps(Boom()))
    elif content == "not torch's":
        rng_file.write_bytes(b"PK\x03\x04 a zip of something else")
    else:
        torch.save({"numpy": torch.zeros(1)}, rng_file)
    manifest = json.loads((path / MARKER).read_text())
    manifest["rng-0.pt"] = {"size": rng_file.stat().st_size, "sha256": checkpoint_module._sha256(rng_file)}
    (path / MARKER).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="rng-0.pt is not a checkpoint file nlptransfer wrote.*nothing in it ran"):
        checkpoints.load(path, model, optimizer, scheduler, force=False)
    assert not (tmp_path / "pwned").exists()
