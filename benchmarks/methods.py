"""The benchmark's methods, each run in a process of its own by `bench.py --child METHOD`.

Every method trains the packaged MiniLM on the same seeded slice of the packaged tweets and
returns raw measurements (seconds, steps, accuracy); `bench.py` turns them into throughput,
FLOP/s and ratios. Nothing here is estimated: a figure that was not measured is absent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL = "minilm"
CORPUS = "tweets"


@dataclass
class Slice:
    """The data and hyperparameters every method shares."""

    train: int = 4000
    """Training examples (a seeded, stratified sample of the packaged tweets)."""
    test: int = 2000
    """Held-out test examples."""
    validation: int = 500
    """Validation examples (nlptransfer validates after each epoch; the Trainer does not by default)."""
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    seed: int = 42
    max_length: int = 128
    model: str = MODEL
    """The checkpoint every method fine-tunes (a short name or a folder; the tests pass a tiny random one)."""
    precision: str = "auto"
    """nlptransfer's train.mixed_precision (auto: bf16 on AMX/AVX-512 BF16 CPUs and GPUs); the Trainer gets bf16=True
    and the matmul peak is measured in bf16 when it resolves to bf16."""


def chosen_precision(spec: Slice) -> str:
    """What `spec.precision` resolves to on this machine: `no` (fp32), `fp16` or `bf16`."""
    from nlptransfer.engine import precision

    return precision.choose(spec.precision).value


def data_config(spec: Slice):
    from nlptransfer.config import DataConfig

    return DataConfig(name=CORPUS, max_train_samples=spec.train, max_test_samples=spec.test,
                      max_validation_samples=spec.validation, max_length=spec.max_length)


def load_data(spec: Slice):
    """The slice, split exactly as `nlptransfer.pipeline.run` splits it."""
    from nlptransfer.data.classification import load_classification

    return load_classification(data_config(spec), spec.seed)


def workload(spec: Slice) -> dict:
    """Real-token counts of the training split and the model shape the FLOP formula needs."""
    from nlptransfer import models, tasks

    data = load_data(spec)
    tokenizer = models.load_tokenizer(spec.model)
    lengths = np.array([len(ids) for ids in tokenizer(data.train.texts, truncation=True,
                                                       max_length=spec.max_length)["input_ids"]], dtype=np.int64)
    model = models.load_model(spec.model, tasks.get("classification"), data.label_names)
    return {
        "train_examples": len(data.train), "validation_examples": len(data.validation),
        "test_examples": len(data.test),
        "train_tokens": int(lengths.sum()), "train_token_squares": int((lengths ** 2).sum()),
        "layer_parameters": sum(p.numel() for p in models.encoder_layers(model).parameters()),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size,
    }


@contextmanager
def timed_calls(owner: object, name: str) -> Iterator[list[dict]]:
    """Time every call of `owner.name` while the block runs: seconds and rows of each result."""
    original: Callable = getattr(owner, name)
    calls: list[dict] = []

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        calls.append({"seconds": time.perf_counter() - started, "rows": len(result)})
        return result

    setattr(owner, name, timed)
    try:
        yield calls
    finally:
        setattr(owner, name, original)


def run_nlptransfer(strategy: str, spec: Slice, workdir: Path, lr: float | None = None) -> dict:
    """`nlptransfer.pipeline.run` with one strategy; the test prediction and feature extraction timed."""
    from nlptransfer import pipeline
    from nlptransfer.config import RunConfig, TrainConfig
    from nlptransfer.engine import loop
    from nlptransfer.tasks.classification import Classification

    logging.getLogger("nlptransfer").setLevel(logging.WARNING)
    cfg = RunConfig(recipe="bench", model=spec.model, strategy=strategy, seed=spec.seed, overwrite=True,
                    output_dir=str(workdir / f"run-{strategy}"), data=data_config(spec),
                    train=TrainConfig(epochs=spec.epochs, batch_size=spec.batch_size, lr=lr or spec.lr,
                                      patience=None, mixed_precision=spec.precision))
    with timed_calls(loop, "predict") as predictions, timed_features(Classification) as extractions:
        results = pipeline.run(cfg)
    epoch_seconds = [epoch["train_seconds"] for epoch in results.history]
    test = predictions[-1]  # validation after each epoch, then the test split
    timing = results.timing
    return {
        "lr": cfg.train.lr,
        "train_seconds": sum(epoch_seconds),
        "epoch_seconds": epoch_seconds,
        "fit_seconds": timing["train_seconds"],
        "extract_seconds": [call["seconds"] for call in extractions],
        "extract_rows": [call["rows"] for call in extractions],
        "optimizer_steps": timing["optimizer_steps"],
        "counted_tokens": round(timing["train_tokens_per_second"] * timing["train_seconds"]),
        "accuracy": results.accuracy,
        "eval_seconds": test["seconds"],
        "eval_examples": test["rows"],
        "run_seconds": timing["wall_seconds"],
        "mixed_precision": timing["mixed_precision"],
    }


@contextmanager
def timed_features(task_class: type) -> Iterator[list[dict]]:
    """Time every feature extraction of `strategy=frozen` for `task_class` while the block runs."""
    import dataclasses

    from nlptransfer.engine import features

    original = features.EXTRACTIONS[task_class.features]
    calls: list[dict] = []

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = original.extract(*args, **kwargs)
        calls.append({"seconds": time.perf_counter() - started, "rows": len(result)})
        return result

    features.EXTRACTIONS[task_class.features] = dataclasses.replace(original, extract=timed)
    try:
        yield calls
    finally:
        features.EXTRACTIONS[task_class.features] = original


def token_rows(texts: list[str], labels: list[int], tokenizer, max_length: int) -> list[dict]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [{key: encoded[key][i] for key in encoded} | {"labels": label} for i, label in enumerate(labels)]


def run_trainer(sampling: str, spec: Slice, workdir: Path) -> dict:
    """`transformers.Trainer`, full fine-tuning with its defaults; `sampling` is its train_sampling_strategy."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from nlptransfer.catalog import resolve_model

    data, path = load_data(spec), resolve_model(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    set_seed(spec.seed)  # the new head is initialized on loading
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(data.label_names), id2label=dict(enumerate(data.label_names)),
        label2id={name: i for i, name in enumerate(data.label_names)})
    args = TrainingArguments(output_dir=str(workdir / f"trainer-{sampling}"), seed=spec.seed,
                             per_device_train_batch_size=spec.batch_size, learning_rate=spec.lr,
                             num_train_epochs=spec.epochs, train_sampling_strategy=sampling,
                             bf16=chosen_precision(spec) == "bf16", report_to="none", disable_tqdm=True)
    trainer = Trainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=token_rows(data.train.texts, data.train.labels, tokenizer, spec.max_length),
        eval_dataset=token_rows(data.test.texts, data.test.labels, tokenizer, spec.max_length),
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    started = time.perf_counter()
    trained = trainer.train().metrics
    evaluated = trainer.evaluate()
    return {
        "lr": spec.lr,
        "train_seconds": trained["train_runtime"],
        "epoch_seconds": [trained["train_runtime"] / spec.epochs],
        "optimizer_steps": trainer.state.global_step,
        "accuracy": evaluated["eval_accuracy"],
        "eval_seconds": evaluated["eval_runtime"],
        "eval_examples": len(data.test),
        "run_seconds": time.perf_counter() - started,
        "mixed_precision": "bf16" if args.bf16 else "no",
    }


def measure_matmul(size: int = 2048, repeats: int = 7, dtype: str = "float32") -> dict:
    """The machine's matmul FLOP/s in `dtype`: the best of `repeats` timings of a `size`-square torch.mm."""
    import torch

    kind = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    out = torch.empty(size, size, dtype=kind)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best = min(_seconds(lambda: torch.mm(a, b, out=out)) for _ in range(repeats))
    return {"size": size, "threads": torch.get_num_threads(), "seconds": best, "flops": 2 * size ** 3 / best,
            "dtype": dtype}


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def methods(spec: Slice, workdir: Path, own_lr: bool) -> dict[str, Callable[[], dict]]:
    """Every method by name; `own_lr` gives frozen and lora nlptransfer's default learning rates."""
    from nlptransfer import strategies

    def lr(strategy: str) -> float | None:
        return strategies.get(strategy).default_lr if own_lr else None

    return {
        "trainer": lambda: run_trainer("random", spec, workdir),
        "trainer_grouped": lambda: run_trainer("group_by_length", spec, workdir),
        "full": lambda: run_nlptransfer("full", spec, workdir),
        "lora": lambda: run_nlptransfer("lora", spec, workdir, lr("lora")),
        "frozen": lambda: run_nlptransfer("frozen", spec, workdir, lr("frozen")),
        "frozen_rerun": lambda: run_nlptransfer("frozen", spec, workdir, lr("frozen")),
        "matmul": lambda: measure_matmul(dtype="bfloat16" if chosen_precision(spec) == "bf16" else "float32"),
        "workload": lambda: workload(spec),
    }
