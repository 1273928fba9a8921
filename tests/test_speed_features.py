"""The speed features of a run are actually used (not timed): each is observed from outside.

A global forward hook records every call of the encoder (the model's `base_model`) during a
real `pipeline.run` of the tiny checkpoint: whether it trained, whether autograd was on, and
the real length of every row of the batch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.nn.modules.module import register_module_forward_hook
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nlptransfer import models, tasks
from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.data.classification import load_classification
from nlptransfer.pipeline import run

EVAL_BATCH = 4


@dataclass
class EncoderCall:
    training: bool
    grad_enabled: bool
    lengths: list[int]
    """Real (unpadded) length of each row."""
    padded_length: int


@contextmanager
def recorded_encoder_calls() -> Iterator[list[EncoderCall]]:
    """Every forward call of an encoder (a model that is its own `base_model`) while the block runs."""
    calls: list[EncoderCall] = []

    def hook(module, args, kwargs, output) -> None:
        if isinstance(module, PreTrainedModel) and module.base_model is module:
            mask = kwargs["attention_mask"]
            calls.append(EncoderCall(module.training, torch.is_grad_enabled(), mask.sum(-1).tolist(), mask.shape[1]))

    handle = register_module_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a shared machine busy threads stall each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def varied_csv(tmp_path_factory) -> Path:
    """120 texts of 1 to 40 words, 3 labels: batching order shows in the padding."""
    from conftest import WORDS

    rng = random.Random(0)
    rows = [{"text": " ".join(rng.choices(WORDS, k=rng.randint(1, 40))), "label": ("neg", "neu", "pos")[i % 3]}
            for i in range(120)]
    path = tmp_path_factory.mktemp("varied") / "varied.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(model_dir: str, train_file: Path, output_dir: Path, strategy: str, epochs: int) -> RunConfig:
    return RunConfig(model=model_dir, strategy=strategy, output_dir=str(output_dir), overwrite=True,
                     data=DataConfig(train_file=str(train_file), max_length=48),
                     train=TrainConfig(epochs=epochs, batch_size=8, eval_batch_size=EVAL_BATCH, patience=None))


def eval_batches(cfg: RunConfig, *splits: str) -> int:
    data = load_classification(cfg.data, cfg.seed)
    return sum(math.ceil(len(getattr(data, split)) / EVAL_BATCH) for split in splits)


@pytest.fixture(scope="module")
def frozen_runs(tiny_model_dir, varied_csv, tmp_path_factory) -> tuple[RunConfig, list[list[EncoderCall]], list]:
    """Two frozen runs of 3 epochs on the same data, sharing a fresh feature cache folder."""
    root = tmp_path_factory.mktemp("frozen")
    cfg = config(tiny_model_dir, varied_csv, root / "run", "frozen", epochs=3)
    runs, results = [], []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLPTRANSFER_CACHE", str(root / "cache"))
        for _ in range(2):
            with recorded_encoder_calls() as calls:
                results.append(run(cfg))
            runs.append(calls)
    return cfg, runs, results


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, varied_csv, tmp_path_factory) -> tuple[list[EncoderCall], int, list[tuple]]:
    """A full run of 2 epochs: its encoder calls, how often the tokenizer was called, and the calls
    of dropout and top-layer modules as (class name, training, output shape)."""
    cfg = config(tiny_model_dir, varied_csv, tmp_path_factory.mktemp("full") / "run", "full", epochs=2)
    tokenizer_calls = 0
    tokenize = PreTrainedTokenizerBase.__call__

    def counting(self, *args, **kwargs):
        nonlocal tokenizer_calls
        tokenizer_calls += 1
        return tokenize(self, *args, **kwargs)

    module_calls = []

    def record(module, args, output) -> None:
        name = type(module).__name__
        if "Dropout" in name or name.endswith("Layer"):
            module_calls.append((name, module.training, tuple(output.shape)))

    handle = register_module_forward_hook(record)
    with pytest.MonkeyPatch.context() as patch, recorded_encoder_calls() as calls:
        patch.setattr(PreTrainedTokenizerBase, "__call__", counting)
        run(cfg)
    handle.remove()
    return calls, tokenizer_calls, module_calls


def test_frozen_runs_the_encoder_once_per_example_not_once_per_epoch(frozen_runs):
    cfg, (first, _), _ = frozen_runs
    assert not any(call.training for call in first)
    # features of train and validation once, then the test split through the restored model
    assert len(first) == eval_batches(cfg, "train", "validation", "test")


def test_a_second_frozen_run_reads_the_features_from_the_disk_cache(frozen_runs):
    cfg, (_, second), results = frozen_runs
    assert len(second) == eval_batches(cfg, "test")
    # reading the cache instead of extracting changes nothing downstream (same dropout, same batches)
    assert [e["train_loss"] for e in results[0].history] == [e["train_loss"] for e in results[1].history]
    assert results[0].test_metrics == results[1].test_metrics


def padding_share(batches: list[list[int]]) -> float:
    padded = sum(max(batch) * len(batch) for batch in batches)
    return 1 - sum(map(sum, batches)) / padded


def test_training_batches_are_grouped_by_length(full_run):
    calls, _, _ = full_run
    training = [call.lengths for call in calls if call.training]
    assert all(call.padded_length == max(call.lengths) for call in calls)  # dynamic padding
    lengths = [n for batch in training for n in batch]
    rng = random.Random(0)
    shuffled = [padding_share([rng.sample(lengths, len(lengths))[i:i + 8] for i in range(0, len(lengths), 8)])
                for _ in range(20)]
    assert padding_share(training) < 0.25 * (sum(shuffled) / len(shuffled))


def test_autograd_is_off_in_evaluation_and_on_in_training(full_run, frozen_runs):
    calls = full_run[0] + frozen_runs[1][0]
    assert any(call.training for call in calls) and any(not call.training for call in calls)
    assert all(call.grad_enabled == call.training for call in calls)


def test_texts_are_tokenized_once_per_split_not_per_epoch(full_run):
    _, tokenizer_calls, _ = full_run
    assert tokenizer_calls == 3  # train, validation, test


def test_models_load_with_sdpa_attention(tiny_model_dir):
    model = models.load_model(tiny_model_dir, tasks.get("classification"), ["neg", "pos"])
    assert model.config._attn_implementation == "sdpa"


def test_the_top_layer_runs_for_the_first_token_and_dropout_is_the_fast_one(full_run):
    *_, module_calls = full_run
    top = [shape for name, _, shape in module_calls if name == "FirstTokenBertLayer"]
    lower = [shape for name, _, shape in module_calls if name == "BertLayer"]
    assert top and len(top) == len(lower)  # one of the tiny model's two layers
    assert all(shape[1] == 1 for shape in top) and any(shape[1] > 1 for shape in lower)
    dropouts = [name for name, training, _ in module_calls if "Dropout" in name and training]
    assert dropouts and set(dropouts) == {"FastDropout"}
