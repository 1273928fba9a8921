"""One run, end to end: config -> data -> model + strategy -> train -> evaluate -> export.

Recipes call `run(cfg)`; each step is a function of its own module, so a notebook can call
them one by one too.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from . import batches, cache, export, features, metrics, models
from .checkpoint import Checkpoints
from .config import RunConfig, to_yaml, validate
from .data import ClassificationData, load_classification
from .errors import CheckpointError, ConfigError
from .push import check_push, publish
from .train import FitResult, fit, predict

logger = logging.getLogger("nlptransfer")


@dataclass
class Results:
    output_dir: Path
    test_metrics: dict
    """Held-out test metrics of the best validation epoch."""
    history: list[dict]
    """Per epoch: train loss and validation metrics."""
    baselines: dict = field(default_factory=dict)
    """Majority-class and TF-IDF + logistic regression test accuracy on the same data."""
    parameters: dict = field(default_factory=dict)
    """Trainable and total parameter counts."""
    timing: dict = field(default_factory=dict)
    """Wall time, training time and throughput."""
    model_dir: Path | None = None
    adapter_dir: Path | None = None

    @property
    def accuracy(self) -> float:
        return self.test_metrics["accuracy"]


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (notebooks and pytest swap it), not the one at creation."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(output_dir: Path, is_main: bool) -> None:
    """Log to the console and to `output_dir/train.log`, main process only.

    The level set on the `nlptransfer` logger beforehand (the CLI's --quiet) is the console's;
    train.log always gets the INFO lines.
    """
    console_level = logger.level or logging.INFO
    logger.setLevel(logging.ERROR if not is_main else min(console_level, logging.INFO))
    logger.propagate = False
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    console = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    if console is None:
        console = ConsoleHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    console.setLevel(console_level)
    if is_main:
        file_handler = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.INFO)
        logger.addHandler(file_handler)


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.recipe}-{cfg.strategy}-{datetime.now():%Y%m%d-%H%M%S}"


def setup(cfg: RunConfig) -> tuple[Accelerator, Path]:
    """Check the config, create the run folder, start logging, save the config, seed everything."""
    cfg = validate(cfg)
    check_push(cfg.push)  # a bad repo id or a missing token fails now, not after training
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision,
                              gradient_accumulation_steps=cfg.train.grad_accum_steps)
    if cfg.resume and not cfg.output_dir:
        raise ConfigError("resume= needs the run folder: pass output_dir=runs/<the run> too")
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    if accelerator.is_main_process:
        export.prepare_output_dir(output_dir, cfg.overwrite or bool(cfg.resume))
    accelerator.wait_for_everyone()
    setup_logging(output_dir, accelerator.is_main_process)
    logger.info("resolved config:\n%s", to_yaml(cfg))
    if accelerator.is_main_process:
        export.write_text(output_dir / "config.yaml", to_yaml(cfg))
    set_seed(cfg.seed)
    return accelerator, output_dir


def encode(data: ClassificationData, tokenizer, max_length: int) -> dict[str, batches.EncodedSplit]:
    """Tokenize every split once; report how many training texts lose tokens to truncation."""
    encoded = {split: batches.encode_split(getattr(data, split), tokenizer, max_length)
               for split in ("train", "validation", "test")}
    truncated = sum(length >= max_length for length in encoded["train"].lengths)
    if truncated:
        logger.info("%d of %d training texts were truncated to data.max_length=%d tokens",
                    truncated, len(data.train), max_length)
    return encoded


def checkpointing(cfg: RunConfig, output_dir: Path, label_names: list[str], train_size: int,
                  accelerator: Accelerator) -> tuple[Checkpoints, Path | None]:
    """The run's checkpoints, and the one to resume from (resume=auto|PATH) if any."""
    fingerprint = {
        "model": cfg.model, "task": cfg.task, "strategy": cfg.strategy, "label_names": label_names,
        "batch_size": cfg.train.batch_size, "grad_accum_steps": cfg.train.grad_accum_steps,
        "processes": accelerator.num_processes, "train_examples": train_size, "max_length": cfg.data.max_length,
        "seed": cfg.seed, "lora": dataclasses.asdict(cfg.lora) if cfg.strategy == "lora" else None,
        "freeze": dataclasses.asdict(cfg.freeze),
    }
    checkpoints = Checkpoints(output_dir, cfg.checkpoint, fingerprint, accelerator)
    if not cfg.resume:
        return checkpoints, None
    if cfg.resume == "auto":
        return checkpoints, checkpoints.latest_valid()
    path = Path(cfg.resume)
    if not path.is_dir():
        raise CheckpointError(f"resume={cfg.resume}: no such checkpoint folder; use resume=auto or a "
                              f"folder under {checkpoints.folder}")
    return checkpoints, path


def train(model, encoded, tokenizer, data: ClassificationData, cfg: RunConfig, accelerator,
          checkpoints: Checkpoints | None = None, resume_from: Path | None = None) -> tuple:
    """Fit with the strategy's loop; frozen trains the head on encoder features computed once."""
    lr = cfg.train.lr or models.default_lr(cfg.strategy)
    resume = {"checkpoints": checkpoints, "resume_from": resume_from, "resume_force": cfg.resume_force}
    validation = accelerator.prepare(batches.eval_loader(encoded["validation"], tokenizer, cfg.train.eval_batch_size))
    def validate_on(loader):
        return lambda m: score(m, loader, data.validation.labels, data.label_names, accelerator)

    if cfg.strategy == "frozen":
        train_texts = accelerator.prepare(batches.eval_loader(encoded["train"], tokenizer, cfg.train.eval_batch_size))

        def cached_extract(encoder, loader, accelerator) -> batches.EncodedSplit:
            """Encoder features from the disk cache when this model, data and length were seen before."""
            key = cache.feature_key(cfg.model, loader.dataset, cfg.data.max_length, "first_token", tokenizer,
                                    precision=cfg.train.mixed_precision)
            return cache.cached(key, lambda: features.extract(encoder, loader, accelerator))

        model, fitted = features.fit_head_on_features(model, train_texts, validation, cached_extract,
                                                      features.feature_loaders, validate_on, cfg, lr, accelerator,
                                                      **resume)
        fitted.train_tokens = sum(encoded["train"].lengths) * len(fitted.history)  # what the features stand for
        return model, fitted
    train_batches = batches.train_loader(encoded["train"], tokenizer, cfg.train.batch_size, cfg.seed,
                                         cfg.train.group_by_length)
    fitted = fit(model, train_batches, validate_on(validation), cfg.train, lr, accelerator, **resume)
    return accelerator.unwrap_model(model), fitted


def run(cfg: RunConfig) -> Results:
    """Fine-tune, evaluate on the held-out test split and save; returns the `Results`."""
    if cfg.task == "token-classification":
        from .tokens_pipeline import run_token_classification

        return run_token_classification(cfg)
    started = time.perf_counter()
    accelerator, output_dir = setup(cfg)
    data = load_classification(cfg.data, cfg.seed)
    logger.info("data: %s; %d train / %d validation / %d test; labels: %s", data.source, len(data.train),
                len(data.validation), len(data.test), ", ".join(data.label_names))
    tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code)
    encoded = encode(data, tokenizer, cfg.data.max_length)
    model, (trainable, total) = build_model(cfg, tokenizer, data.label_names)

    checkpoints, resume_from = checkpointing(cfg, output_dir, data.label_names, len(data.train), accelerator)
    model, fitted = train(model, encoded, tokenizer, data, cfg, accelerator, checkpoints, resume_from)

    test_batches = accelerator.prepare(batches.eval_loader(encoded["test"], tokenizer, cfg.train.eval_batch_size))
    test_logits = predict(model, test_batches, accelerator, desc="testing")
    test_metrics = metrics.classification_metrics(test_logits.argmax(-1).tolist(), data.test.labels,
                                                  data.label_names)
    logger.info("test (best epoch %d):\n%s", fitted.best_epoch, metrics.format_report(test_metrics, data.label_names))
    results = Results(
        output_dir=output_dir,
        test_metrics=test_metrics,
        history=fitted.history,
        baselines=metrics.baselines(data.train.texts, data.train.labels, data.test.texts, data.test.labels),
        parameters={"trainable": trainable, "total": total},
        timing=timing(fitted, started),
    )
    logger.info("baselines on the same data: majority class %.4f, TF-IDF + logistic regression %.4f",
                results.baselines["majority_accuracy"], results.baselines["tfidf_logreg_accuracy"])
    if accelerator.is_main_process:
        save_run(results, model, tokenizer, data, test_logits, cfg)
        publish(results, cfg)  # the model card; pushed when push.repo_id is set
    accelerator.wait_for_everyone()
    results.timing["wall_seconds"] = time.perf_counter() - started
    logger.info("done in %.0fs: %.1f training samples/s, test accuracy %.4f; outputs in %s",
                results.timing["wall_seconds"], results.timing["train_samples_per_second"],
                results.accuracy, output_dir)
    return results


def build_model(cfg: RunConfig, tokenizer, label_names: list[str]) -> tuple[nn.Module, tuple[int, int]]:
    """The checkpoint with a new head for `label_names`, adapted by the strategy; logs what trains."""
    model = models.load_model(cfg.model, cfg.task, label_names, cfg.trust_remote_code)
    models.check_vocabulary(tokenizer, model, cfg.model)
    model = models.apply_strategy(model, cfg)
    trainable, total = models.count_parameters(model)
    logger.info("strategy %s: %s trainable of %s parameters (%.2f%%)", cfg.strategy, f"{trainable:,}",
                f"{total:,}", 100 * trainable / total)
    return model, (trainable, total)


def score(model, loader, labels: list[int], label_names: list[str], accelerator: Accelerator) -> dict:
    """Metrics of a model on one split."""
    logits = predict(model, loader, accelerator)
    return metrics.classification_metrics(logits.argmax(-1).tolist(), labels, label_names)


def timing(fitted: FitResult, started: float) -> dict:
    seconds = max(fitted.train_seconds, 1e-9)
    return {
        "train_seconds": fitted.train_seconds,
        "train_samples_per_second": fitted.train_examples / seconds,
        "train_tokens_per_second": fitted.train_tokens / seconds,
        "optimizer_steps": fitted.optimizer_steps,
        "best_epoch": fitted.best_epoch,
        "wall_seconds": time.perf_counter() - started,
    }


def save_run(results: Results, model, tokenizer, data: ClassificationData, test_logits: np.ndarray,
             cfg: RunConfig) -> None:
    """metrics.json, predictions.jsonl and model/ (plus adapter/ for LoRA) in the run folder."""
    out = results.output_dir
    probabilities = torch.softmax(torch.from_numpy(test_logits), dim=-1).numpy()
    export.write_jsonl(out / "predictions.jsonl", [
        {"text": text, "label": data.label_names[gold], "predicted": data.label_names[int(p.argmax())],
         "score": round(float(p.max()), 6)}
        for text, gold, p in zip(data.test.texts, data.test.labels, probabilities)
    ])
    results.model_dir, results.adapter_dir = export.save_model(model, tokenizer, out, lora=cfg.strategy == "lora")
    # Last: a run folder with metrics.json is a finished run.
    export.write_json(out / "metrics.json", {
        "test": results.test_metrics, "epochs": results.history, "baselines": results.baselines,
        "parameters": results.parameters, "timing": results.timing,
        "data": {"source": data.source, "label_names": data.label_names,
                 "examples": {split: len(getattr(data, split)) for split in ("train", "validation", "test")}},
    })
