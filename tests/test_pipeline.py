"""nlptransfer/pipeline.py: the run skeleton with its run folder, end to end on the tiny checkpoint.

The four run-folder defects of the old code each have a test here: an overwrite that kept the old
run's files (and a later resume that picked up the old checkpoint), two runs in one folder, a refused
resume that had already replaced config.yaml, and files unreadable under the user's umask. Also: the
checkpoint fingerprint covers every option that changes training, not a hand-picked list.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nlptransfer.cli.run import main
from nlptransfer.config import RunConfig
from nlptransfer.engine.loop import Callback
from nlptransfer.pipeline import NOT_TRAJECTORY, Inputs, run, trajectory_fingerprint
from nlptransfer.strategies import get as strategy_named

pytestmark = pytest.mark.usefixtures("one_thread")


def run_args(model: str, csv: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["recipe=sentiment", f"model={model}", f"data.train_file={csv}", "data.name=null", "data.max_length=32",
            "train.epochs=2", "train.batch_size=16", "train.patience=null", "train.lr=1e-3",
            f"output_dir={output_dir}", "--quiet", *extra]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


class StopAfterFirstEpoch(Callback):
    """As if the run were killed right after its first epoch's checkpoint."""

    def on_epoch_end(self, loop, metrics, train_loss, improved):
        raise KeyboardInterrupt


def test_overwrite_leaves_nothing_of_the_old_run_and_resume_continues_the_new_one(tiny_model_dir, reviews_csv,
                                                                                  tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, reviews_csv, out)) == 0  # the old run: lr 1e-3, 2 epochs
    assert (out / "metrics.json").is_file() and (out / "model").is_dir() and list(out.glob("*.png"))
    old_steps = {p.name for p in (out / "checkpoints").iterdir()}

    from nlptransfer.api import load_recipe
    from nlptransfer.config import apply_overrides

    new = run_args(tiny_model_dir, reviews_csv, out, "overwrite=true", "train.lr=5e-4", "train.epochs=3")
    cfg = apply_overrides(load_recipe("sentiment").Config(), [a for a in new[1:] if a != "--quiet"])
    with pytest.raises(KeyboardInterrupt):
        run(cfg, Inputs(callbacks=[StopAfterFirstEpoch()]))
    # killed mid-run: nothing of the old run is left to make the folder look finished or to resume from
    assert not (out / "metrics.json").exists() and not (out / "model").exists() and not list(out.glob("*.png"))
    assert {p.name for p in (out / "checkpoints").iterdir()} != old_steps
    state = json.loads(next((out / "checkpoints").glob("step-*/state.json")).read_text())
    assert state["fingerprint"]["train.lr"] == 5e-4 and state["loop"]["epoch"] == 2

    assert main(run_args(tiny_model_dir, reviews_csv, out, "resume=auto")) == 2  # the old run's lr and epochs
    error = capsys.readouterr().err
    assert "train.lr (checkpoint: 0.0005, now: 0.001)" in error and "train.epochs" in error

    resumed = run_args(tiny_model_dir, reviews_csv, out, "train.lr=5e-4", "train.epochs=3", "resume=auto")
    assert main(resumed) == 0  # the new run, resumed: 2 more epochs
    finished = json.loads((out / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in finished["epochs"]] == [1, 2, 3]


def test_a_second_run_into_a_folder_in_use_is_refused(tiny_model_dir, reviews_csv, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from nlptransfer.outputs.run_folder import RunFolder
        RunFolder({str(out)!r}).open(overwrite=False, resume=False)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(run_args(tiny_model_dir, reviews_csv, out)) == 2
        assert "in use by another run" in capsys.readouterr().err
        assert not (out / "config.yaml").exists()  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    assert main(run_args(tiny_model_dir, reviews_csv, out)) == 0  # the holder died: its lock is taken over
    assert (out / "metrics.json").is_file() and not (out / ".nlptransfer.lock").exists()


def test_a_refused_resume_changes_nothing(tiny_model_dir, reviews_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, reviews_csv, out)) == 0
    config, before = (out / "config.yaml").read_text(), listing(out)
    assert main(run_args(tiny_model_dir, reviews_csv, out, "resume=auto", "train.batch_size=8")) == 2
    assert "train.batch_size (checkpoint: 16, now: 8)" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == config
    after = listing(out)
    assert {k: v for k, v in after.items() if k != "train.log"} == {k: v for k, v in before.items()
                                                                        if k != "train.log"}


def test_run_files_are_readable_under_the_umask(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        assert main(run_args(tiny_model_dir, reviews_csv, out, "strategy=lora", "checkpoint.every_steps=2")) == 0
    finally:
        os.umask(previous)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.yaml", "metrics.json", "predictions.jsonl", "train.log", "model.safetensors",
            "adapter_model.safetensors", "weights.safetensors"} <= {p.name for p in files}
    wrong = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o644}
    assert not wrong
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in out.rglob("*") if p.is_dir())


@pytest.mark.parametrize("changes", [
    {"train": {"lr": 2e-4}}, {"train": {"warmup_ratio": 0.2}}, {"train": {"epochs": 5}},
    {"loss": {"focal_gamma": 2.0}}, {"data": {"max_length": 48}}, {"data": {"max_train_samples": 30}},
    {"seed": 7}, {"model": "other"}, {"strategy": "lora"}, {"freeze": {"layers": 1}},
])
def test_every_option_that_changes_training_is_in_the_fingerprint(changes):
    base = RunConfig(model="m")
    changed = RunConfig(**({"model": "m"} | changes))

    def fingerprint(cfg):
        return trajectory_fingerprint(cfg, strategy_named(cfg.strategy), ["a", "b"], 10)

    assert fingerprint(changed) != fingerprint(base)


@pytest.mark.parametrize("changes", [
    {"output_dir": "elsewhere"}, {"log_with": "tensorboard"}, {"checkpoint": {"keep": 3}}, {"recipe": "mine"},
    {"lora": {"r": 4}},  # another strategy's options do not matter to strategy=full
])
def test_options_that_do_not_change_training_are_not_in_the_fingerprint(changes):
    def fingerprint(cfg):
        return trajectory_fingerprint(cfg, strategy_named(cfg.strategy), ["a", "b"], 10)

    assert fingerprint(RunConfig(**changes)) == fingerprint(RunConfig())
    assert {"output_dir", "overwrite", "resume", "push", "checkpoint"} <= set(NOT_TRAJECTORY)


def test_a_nan_loss_on_one_batch_is_skipped_and_counted_in_metrics_json(tiny_model_dir, reviews_csv, tmp_path,
                                                                        monkeypatch):
    import math

    from nlptransfer.engine import loop

    original, calls = loop.batch_loss, {"n": 0}

    def nan_on_second_batch(model, batch, loss_fn):
        calls["n"] += 1
        loss = original(model, batch, loss_fn)
        return loss * math.nan if calls["n"] == 2 else loss

    monkeypatch.setattr(loop, "batch_loss", nan_on_second_batch)
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, reviews_csv, out)) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert written["timing"]["nonfinite_steps"] == 1
    assert written["timing"]["optimizer_steps"] == 6  # the skipped batch still counts as a step of the schedule
    assert all(math.isfinite(epoch["train_loss"]) for epoch in written["epochs"])
    assert "step skipped: non-finite loss or gradient (1 in a row)" in (out / "train.log").read_text()


def test_the_saved_tokenizer_reads_long_texts_as_the_run_trained(full_run):
    from transformers import pipeline

    from nlptransfer.predictor import load_model

    saved = json.loads((full_run / "model" / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 32  # data.max_length of the run, not the checkpoint's 512 or more
    text = " ".join(["a great movie but the food was terrible and boring"] * 100)  # 1000 words
    classifier = pipeline("text-classification", model=str(full_run / "model"), truncation=True)  # as the card says
    got = classifier(text)[0]
    expected = load_model(full_run).predict([text])[0]
    assert got["label"] == expected["label"]
    assert got["score"] == pytest.approx(expected["score"], abs=1e-5)


def test_an_interrupt_during_the_final_save_leaves_no_half_written_model(tiny_model_dir, reviews_csv, tmp_path,
                                                                         monkeypatch, capsys):
    from transformers import PreTrainedModel

    def interrupted_save(self, folder, *args, **kwargs):  # Ctrl-C halfway through model.safetensors
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", interrupted_save)
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, reviews_csv, out)) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert not [p for p in out.rglob(".*") if p.name != ".nlptransfer.json"]  # the marker stays
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    monkeypatch.undo()
    assert main(run_args(tiny_model_dir, reviews_csv, out, "resume=auto")) == 0  # the checkpoints finish it
    assert (out / "metrics.json").is_file() and (out / "model" / "model.safetensors").is_file()


def test_a_length_over_the_models_positions_is_capped_and_reported_as_used(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, reviews_csv, out, "data.max_length=100000", "train.epochs=1")) == 0
    used = 128  # the tiny checkpoint's position embeddings
    assert json.loads((out / "metrics.json").read_text())["data"]["max_length"] == used
    assert "max_length: 128" in (out / "config.yaml").read_text()
    assert json.loads((out / "model" / "config.json").read_text())["nlptransfer"]["max_length"] == used
    assert json.loads((out / "model" / "tokenizer_config.json").read_text())["model_max_length"] == used
    assert "data.max_length=100000 is more than the model reads" in (out / "train.log").read_text()
