"""Several processes (nlptransfer/distributed.py): a 2-process CPU run launched with torchrun (gloo) gives the
results of a 1-process run with the same global batch, writes only from the main process, and gathers
every evaluation example exactly once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard

from nlptransfer.cli.run import main
from nlptransfer.config import TrainConfig
from nlptransfer.engine import distributed
from nlptransfer.engine.batches import LengthGroupedBatches, sorted_batches
from nlptransfer.engine.loop import each_example_once
from nlptransfer.errors import ConfigError, TrainingError

ASSETS = Path(__file__).parent / "assets"
REPO = Path(__file__).parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

DRIVER = '''\
"""Runs several nlptransfer.run command lines in one launch (one start-up for all of them)."""
import json
import sys

from nlptransfer.cli.run import main

for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
'''


@pytest.fixture(scope="module")
def no_dropout_model(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny checkpoint without dropout: processes draw other dropout masks than a single process would."""
    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def reviews_args(model: str, output_dir: Path, *changes: str) -> list[str]:
    """42 train / 9 validation / 9 test reviews: 7 full training batches of 6, evaluation batches of 4, 4 and 1."""
    return ["recipe=sentiment", f"model={model}", "data.name=null", f"data.train_file={ASSETS / 'reviews.csv'}",
            "data.max_length=32", "data.validation_fraction=0.15", "data.test_fraction=0.15", "train.batch_size=6",
            "train.eval_batch_size=4", "train.patience=null", "train.warmup_ratio=0", f"output_dir={output_dir}",
            "--quiet", *changes]


def full_args(model: str, output_dir: Path) -> list[str]:
    return reviews_args(model, output_dir, "train.epochs=6", "train.lr=5e-3")  # it learns: loss 1.1 -> 0.8


def frozen_args(model: str, output_dir: Path) -> list[str]:
    return reviews_args(model, output_dir, "strategy=frozen", "train.epochs=2")


def ner_args(model: str, output_dir: Path) -> list[str]:
    return ["recipe=ner", f"model={model}", "data.name=null", f"data.train_file={ASSETS / 'ner_tiny.conll'}",
            "data.max_length=32", "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=4",
            f"output_dir={output_dir}", "--quiet"]


@pytest.fixture(scope="module")
def two_processes(no_dropout_model, tmp_path_factory) -> Path:
    """Run folders of `torchrun --nproc_per_node=2` on CPU: full, frozen (twice: features cached, then read), NER."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    root = tmp_path_factory.mktemp("two-processes")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    runs = [full_args(no_dropout_model, root / "full"), frozen_args(no_dropout_model, root / "frozen"),
            frozen_args(no_dropout_model, root / "frozen-again"), ner_args(no_dropout_model, root / "ner")]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "TOKENIZERS_PARALLELISM": "false", "NLPTRANSFER_CACHE": str(root / "cache"),
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(driver), json.dumps(runs)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def one_process(no_dropout_model, tmp_path_factory) -> Path:
    """The same full run as `two_processes`' on one process."""
    folder = tmp_path_factory.mktemp("one-process") / "full"
    assert main(full_args(no_dropout_model, folder)) == 0
    return folder


def test_two_processes_train_and_evaluate_like_one(two_processes, one_process):
    one, two = one_process, two_processes / "full"
    m1, m2 = (json.loads((folder / "metrics.json").read_text()) for folder in (one, two))
    losses1, losses2 = ([epoch["train_loss"] for epoch in m["epochs"]] for m in (m1, m2))
    assert losses1[-1] < losses1[0] - 0.2  # it learns, so a wrong batch or a skipped step would show
    np.testing.assert_allclose(losses2, losses1, atol=1e-4)
    assert [e["validation"]["accuracy"] for e in m2["epochs"]] == [e["validation"]["accuracy"] for e in m1["epochs"]]
    assert m2["timing"]["optimizer_steps"] == m1["timing"]["optimizer_steps"] == 42
    assert m2["test"]["accuracy"] == m1["test"]["accuracy"] and m2["test"]["macro_f1"] == m1["test"]["macro_f1"]

    rows1, rows2 = read_jsonl(one / "predictions.jsonl"), read_jsonl(two / "predictions.jsonl")
    assert len(rows2) == m2["data"]["examples"]["test"] == 9  # the last batch (1 example) padded, repeats dropped
    assert [(r["text"], r["label"], r["predicted"]) for r in rows2] == [
        (r["text"], r["label"], r["predicted"]) for r in rows1]
    np.testing.assert_allclose([r["score"] for r in rows2], [r["score"] for r in rows1], atol=1e-4)


def test_only_the_main_process_writes(two_processes, one_process):
    one, two = one_process, two_processes / "full"
    # the same files, but each checkpoint holds every process's RNG state (gathered, written by the main process)
    checkpoints = sorted((two / "checkpoints").iterdir())
    assert checkpoints and all((folder / "rng-1.pt").is_file() for folder in checkpoints)
    assert {f for f in run_files(two) if not f.endswith("rng-1.pt")} == run_files(one)
    log1, log2 = ((folder / "train.log").read_text().splitlines() for folder in (one, two))
    assert "2 processes (gloo): each takes 3 of every 6 training examples" in "\n".join(log2)
    assert len(log2) == len(log1) + 1  # that line, and no line twice
    for line in ("epoch 1: train loss", "test (best epoch", "done in"):
        assert sum(line in row for row in log2) == 1, line


def test_frozen_features_are_computed_once_and_read_back_on_every_process(two_processes):
    frozen, again = (json.loads((two_processes / name / "metrics.json").read_text())
                     for name in ("frozen", "frozen-again"))
    assert len(list((two_processes / "cache").glob("*.pt"))) == 2  # train and validation features
    assert (two_processes / "frozen-again" / "train.log").read_text().count("encoder features from the cache") == 2
    assert again["test"] == frozen["test"]
    assert [e["train_loss"] for e in again["epochs"]] == pytest.approx([e["train_loss"] for e in frozen["epochs"]])
    assert len(read_jsonl(two_processes / "frozen" / "predictions.jsonl")) == frozen["data"]["examples"]["test"]


def test_token_classification_on_two_processes(two_processes):
    ner = two_processes / "ner"
    written = json.loads((ner / "metrics.json").read_text())
    rows = read_jsonl(ner / "predictions.jsonl")
    assert len(rows) == written["data"]["sentences"]["test"]
    assert all(len(r["predicted"]) == len(r["words"]) for r in rows)
    assert (ner / "train.log").read_text().count("done in") == 1


def test_each_example_once_drops_repeats_and_refuses_gaps():
    rows = np.arange(10.0).reshape(5, 2)
    # gathered from 2 processes: example 2 twice (the padded last batch), out of order
    np.testing.assert_array_equal(each_example_once(rows, np.array([3, 0, 2, 1, 2]), 4), rows[[1, 3, 2, 0]])
    with pytest.raises(TrainingError, match="3 distinct examples of 4"):
        each_example_once(rows[:4], np.array([0, 1, 2, 2]), 4)
    with pytest.raises(TrainingError, match="4 distinct examples of 4"):  # an index out of range
        each_example_once(rows[:4], np.array([0, 1, 2, 4]), 4)


def lengths(n: int) -> list[int]:
    return [(i * 7) % 13 + 1 for i in range(n)]


@pytest.mark.parametrize(("batches", "examples"), [
    (LengthGroupedBatches(lengths(47), batch_size=6, seed=1), 47),  # 7 full batches and one of 5
    (sorted_batches(lengths(9), batch_size=4), 9),  # 4, 4 and 1
])
def test_split_batches_hand_every_example_to_a_process(batches, examples):
    """Accelerate's split_batches sharding over our samplers: each global batch split in equal halves, in order."""
    shards = [list(BatchSamplerShard(batches, num_processes=2, process_index=p, split_batches=True))
              for p in (0, 1)]
    expected = list(batches)
    assert len(expected[-1]) < batches.batch_size and all(len(b) == batches.batch_size for b in expected[:-1])
    assert len(shards[0]) == len(shards[1]) == len(expected)
    for half0, half1, batch in zip(*shards, expected):
        assert len(half0) == len(half1) == batches.batch_size // 2
        assert (half0 + half1)[:len(batch)] == batch  # a short last batch is filled up with repeats
    assert {i for half in shards[0] + shards[1] for i in half} == set(range(examples))


def test_batch_sizes_must_divide_among_processes():
    distributed.check_batch_sizes(TrainConfig(batch_size=32, eval_batch_size=64), 4)
    with pytest.raises(ConfigError, match=r"train.batch_size=30 is split across 4 processes.*train.batch_size=32"):
        distributed.check_batch_sizes(TrainConfig(batch_size=30), 4)
    with pytest.raises(ConfigError, match="train.eval_batch_size=33"):
        distributed.check_batch_sizes(TrainConfig(eval_batch_size=33), 2)


def test_processes_without_a_gpu_join_a_cpu_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched_without_accelerator()
    monkeypatch.setenv("WORLD_SIZE", "2")
    gpu = torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())
    assert distributed.launched_without_accelerator() is not gpu


CONFIGS = REPO / "configs" / "accelerate"


@pytest.mark.parametrize(("name", "kind", "machines"), [
    ("multi_gpu", "MULTI_GPU", 1), ("multi_node", "MULTI_GPU", 2), ("fsdp", "FSDP", 1),
    ("deepspeed_zero2", "DEEPSPEED", 1), ("deepspeed_zero3", "DEEPSPEED", 1),
])
def test_shipped_accelerate_configs_parse(name, kind, machines):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # what `accelerate launch --config_file` reads
    assert config.distributed_type.value == kind
    assert config.num_machines == machines and config.num_processes >= 2 * machines
    assert config.mixed_precision == "no" and not config.use_cpu  # precision comes from train.mixed_precision
    # `accelerate launch` copies these sections onto its options by name: an unknown key would be ignored
    options = {action.dest for action in launch_command_parser()._actions}
    assert set(config.fsdp_config) | set(config.deepspeed_config) <= options
    if machines > 1:
        assert config.main_process_ip and config.main_process_port
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
        assert config.deepspeed_config["gradient_clipping"] == TrainConfig().max_grad_norm


def test_fsdp_config_wraps_each_bert_layer(tiny_model_dir):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.constants import FSDP2_STATE_DICT_TYPE, FSDP_AUTO_WRAP_POLICY

    from nlptransfer import tasks
    from nlptransfer.models import load_model

    fsdp = load_config_from_file(str(CONFIGS / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] in FSDP2_STATE_DICT_TYPE
    assert fsdp["fsdp_auto_wrap_policy"] == FSDP_AUTO_WRAP_POLICY[0] == "TRANSFORMER_BASED_WRAP"
    model = load_model(tiny_model_dir, tasks.get("classification"), ["neg", "pos"])
    layers = [m for m in model.modules() if type(m).__name__ == fsdp["fsdp_transformer_layer_cls_to_wrap"]]
    assert len(layers) == model.config.num_hidden_layers
