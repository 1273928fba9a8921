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
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, set_seed
from torch import nn
from tqdm.auto import tqdm

from . import adapt, batches, console, distributed, export, features, losses, metrics, models, plots, tracking
from .checkpoint import Checkpoints
from .config import RunConfig, fixed_threshold, to_yaml, validate
from .data import ClassificationData, TextSplit, load_classification
from .errors import CheckpointError, ConfigError
from .push import check_push, publish
from .speed import speed_up
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

    def emit(self, record: logging.LogRecord) -> None:
        """Through tqdm, so that a log line does not break a progress bar that is being drawn."""
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(output_dir: Path, is_main: bool) -> None:
    """Log to the console and to `output_dir/train.log`, main process only.

    The level set on the `nlptransfer` logger beforehand (the CLI's --quiet or --verbose) is the
    console's; train.log always gets every line, DEBUG (e.g. the whole resolved config) included.
    """
    console_level = logger.level or logging.INFO
    logger.setLevel(logging.ERROR if not is_main else logging.DEBUG)
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
        file_handler.setLevel(logging.DEBUG)
        logger.addHandler(file_handler)


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.recipe}-{cfg.strategy}-{datetime.now():%Y%m%d-%H%M%S}"


def setup(cfg: RunConfig) -> tuple[Accelerator, Path]:
    """Check the config, create the run folder, start logging, save the config, seed everything."""
    cfg = validate(cfg)
    check_push(cfg.push)  # a bad repo id or a missing token fails now, not after training
    if cfg.resume and not cfg.output_dir:
        raise ConfigError("resume= needs the run folder: pass output_dir=runs/<the run> too")
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    # split_batches: train.batch_size is the global batch, shared by the processes (distributed.py)
    accelerator = Accelerator(cpu=distributed.launched_without_accelerator(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              mixed_precision=cfg.train.mixed_precision,
                              gradient_accumulation_steps=cfg.train.grad_accum_steps,
                              log_with=tracking.trackers(cfg.log_with, output_dir), project_dir=output_dir)
    distributed.check_batch_sizes(cfg.train, accelerator.num_processes)
    if not cfg.output_dir:  # named by the clock: every process takes the main process's name
        output_dir = Path(broadcast_object_list([str(output_dir)])[0])
    if accelerator.is_main_process:
        export.prepare_output_dir(output_dir, cfg.overwrite or bool(cfg.resume))
    accelerator.wait_for_everyone()
    setup_logging(output_dir, accelerator.is_main_process)
    logger.info("config: %s (all options in %s)", console.config_summary(cfg), output_dir / "config.yaml")
    logger.debug("resolved config:\n%s", to_yaml(cfg))
    distributed.log_processes(accelerator.num_processes, accelerator.state.backend, cfg.train)
    if accelerator.is_main_process:
        export.write_text(output_dir / "config.yaml", to_yaml(cfg))
    tracking.start(accelerator, cfg, output_dir)
    set_seed(cfg.seed)
    return accelerator, output_dir


def encode(data: ClassificationData, tokenizer, cfg: RunConfig) -> dict[str, batches.EncodedSplit]:
    """Tokenize every split once, reading long texts as `cfg.long_text` says; report how many exceed the limit."""
    num_labels = len(data.label_names) if data.multilabel else None
    encoded = {split: batches.encode_split(getattr(data, split), tokenizer, cfg.data.max_length, cfg.long_text,
                                           cfg.data.stride, num_labels)
               for split in ("train", "validation", "test")}
    over = {split: split_encoded.over_limit for split, split_encoded in encoded.items()}
    if any(over.values()):
        how = {"truncate": "only their first tokens are read (long_text=truncate)",
               "head_tail": "their start and end are read (long_text=head_tail)",
               "sliding": f"they are read in windows sharing {cfg.data.stride} tokens, pooled by "
                          f"{cfg.data.pooling} (long_text=sliding; {len(encoded['train'])} training windows)"}
        logger.info("texts over data.max_length=%d tokens: %s; %s", cfg.data.max_length,
                    ", ".join(f"{n} of {len(getattr(data, split))} {split}" for split, n in over.items()),
                    how[cfg.long_text])
    return encoded


def checkpointing(cfg: RunConfig, output_dir: Path, label_names: list[str], train_size: int,
                  accelerator: Accelerator) -> tuple[Checkpoints, Path | None]:
    """The run's checkpoints, and the one to resume from (resume=auto|PATH) if any.

    The number of processes is not part of the fingerprint: batches are global (split_batches), so
    a run may resume on another number of processes (same batches; other dropout streams).
    """
    fingerprint = {
        "model": cfg.model, "task": cfg.task, "strategy": cfg.strategy, "label_names": label_names,
        "batch_size": cfg.train.batch_size, "grad_accum_steps": cfg.train.grad_accum_steps,
        "train_examples": train_size, "max_length": cfg.data.max_length,
        "seed": cfg.seed, "lora": dataclasses.asdict(cfg.lora) if cfg.strategy == "lora" else None,
        "freeze": dataclasses.asdict(cfg.freeze),
        "gradual": dataclasses.asdict(cfg.gradual) if cfg.strategy == "gradual" else None,
        "layer_lr_decay": cfg.train.layer_lr_decay, "head_lr": cfg.train.head_lr,
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
    resume = {"checkpoints": checkpoints, "resume_from": resume_from, "resume_force": cfg.resume_force,
              "loss_fn": losses.build_loss(cfg.loss, targets(data.train, data).tolist(), data.label_names,
                                           data.multilabel)}
    validation = accelerator.prepare(batches.eval_loader(encoded["validation"], tokenizer, cfg.train.eval_batch_size))
    gold = targets(data.validation, data)

    def validate_on(loader):
        return lambda m: score(m, loader, encoded["validation"].documents, gold, data, cfg, accelerator)

    if cfg.strategy == "frozen":
        train_texts = accelerator.prepare(batches.eval_loader(encoded["train"], tokenizer, cfg.train.eval_batch_size))
        cached_extract = features.cached_extraction(features.extract, "first_token", cfg, tokenizer)
        model, fitted = features.fit_head_on_features(model, train_texts, validation, cached_extract,
                                                      features.feature_loaders, validate_on, cfg, lr, accelerator,
                                                      **resume)
        fitted.train_tokens = sum(encoded["train"].lengths) * len(fitted.history)  # what the features stand for
        return model, fitted
    train_batches = batches.train_loader(encoded["train"], tokenizer, cfg.train.batch_size, cfg.seed,
                                         cfg.train.group_by_length)
    fitted = fit(model, train_batches, validate_on(validation), cfg.train, lr, accelerator, **resume,
                 **layerwise_options(model, cfg, lr, accelerator))
    return accelerator.unwrap_model(model), fitted


def run(cfg: RunConfig) -> Results:
    """Fine-tune, evaluate on the held-out test split and save; returns the `Results`."""
    if cfg.task == "token-classification":
        from .tokens_pipeline import run_token_classification

        return run_token_classification(cfg)
    started = time.perf_counter()
    accelerator, output_dir = setup(cfg)
    if cfg.pretrain.mlm:  # domain-adaptive pretraining: fine-tune from the adapted encoder
        cfg = adapt.adapted_config(cfg, adapt.default_folder(cfg, output_dir), accelerator)
    data = load_classification(cfg.data, cfg.seed, multilabel=cfg.task == "multilabel")
    logger.info("data: %s; %d train / %d validation / %d test; labels: %s", data.source, len(data.train),
                len(data.validation), len(data.test), ", ".join(data.label_names))
    tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code)
    encoded = encode(data, tokenizer, cfg)
    model, (trainable, total) = build_model(cfg, tokenizer, data.label_names)

    checkpoints, resume_from = checkpointing(cfg, output_dir, data.label_names, len(data.train), accelerator)
    model, fitted = train(model, encoded, tokenizer, data, cfg, accelerator, checkpoints, resume_from)

    test_logits, test_metrics = test_scores(model, encoded, tokenizer, data, cfg, accelerator)
    logger.info("test (best epoch %d):\n%s", fitted.best_epoch, metrics.format_report(test_metrics, data.label_names))
    results = Results(
        output_dir=output_dir,
        test_metrics=test_metrics,
        history=fitted.history,
        baselines=metrics.baselines(joined_texts(data.train), targets(data.train, data), joined_texts(data.test),
                                    targets(data.test, data)),
        parameters={"trainable": trainable, "total": total},
        timing=timing(fitted, started),
    )
    logger.info("baselines on the same data: majority class %.4f, TF-IDF + logistic regression %.4f",
                results.baselines["majority_accuracy"], results.baselines["tfidf_logreg_accuracy"])
    if accelerator.is_main_process:
        save_run(results, model, tokenizer, data, test_logits, cfg, inputs=long_text_report(encoded, cfg))
        publish(results, cfg)  # the model card; pushed when push.repo_id is set
    tracking.finish(accelerator, test_metrics, fitted.optimizer_steps)
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
    if cfg.train.speedups:
        speed_up(model)
    trainable, total = models.count_parameters(model)
    if cfg.strategy == "gradual":  # the head alone at first; every weight once the encoder is unfrozen
        logger.info("strategy gradual: %s trainable parameters at first, all %s from epoch %d on", f"{trainable:,}",
                    f"{total:,}", models.fully_unfrozen_epoch(model, cfg.gradual, cfg.train.epochs))
        trainable = total
    logger.info("strategy %s: %s trainable of %s parameters (%.2f%%)", cfg.strategy, f"{trainable:,}",
                f"{total:,}", 100 * trainable / total)
    return model, (trainable, total)


def layerwise_options(model: nn.Module, cfg: RunConfig, lr: float, accelerator: Accelerator) -> dict:
    """`fit`'s options for discriminative learning rates and gradual unfreezing; none for a plain run."""
    gradual = cfg.strategy == "gradual"
    if not gradual and cfg.train.layer_lr_decay is None and cfg.train.head_lr is None:
        return {}
    if gradual and accelerator.num_processes > 1:
        raise ConfigError("strategy=gradual runs on one process (DDP cannot add weights to training mid-run); "
                          "use strategy=full with train.layer_lr_decay on several")
    trained = {name for name, p in model.named_parameters() if gradual or p.requires_grad}
    layers = {name: layer for name, layer in models.parameter_layers(model).items() if name in trained}
    encoder_scale = cfg.gradual.encoder_lr_factor if gradual else 1.0
    options = {"lr_scales": models.layer_lr_scales(layers, cfg.train.layer_lr_decay, (cfg.train.head_lr or lr) / lr,
                                                   encoder_scale)}
    if gradual:
        options["epoch_start"] = lambda epoch: models.unfreeze_stage(model, epoch, cfg.gradual, cfg.train.epochs)
    return options


def targets(split: TextSplit, data: ClassificationData) -> np.ndarray:
    """A split's labels as an array: label ids, or multi-hot rows for multi-label data."""
    if not data.multilabel:
        return np.asarray(split.labels)
    return np.asarray([batches.multi_hot(row, len(data.label_names)) for row in split.labels])


def joined_texts(split: TextSplit) -> list[str]:
    """The texts, each followed by its pair text if any (for the bag-of-words baseline)."""
    return split.texts if split.text_pairs is None else [f"{a} {b}" for a, b in zip(split.texts, split.text_pairs)]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def split_metrics(logits: np.ndarray, gold: np.ndarray, data: ClassificationData, thresholds=0.5) -> dict:
    """Scores of one split's (pooled) logits: single-label by argmax, multi-label at the thresholds."""
    if data.multilabel:
        return metrics.multilabel_metrics(sigmoid(logits), gold, data.label_names, thresholds)
    return metrics.classification_metrics(logits.argmax(-1).tolist(), gold.tolist(), data.label_names)


def score(model, loader, documents: list[int], gold: np.ndarray, data: ClassificationData, cfg: RunConfig,
          accelerator: Accelerator) -> dict:
    """Validation metrics of a model: one prediction per text (window logits pooled)."""
    logits = batches.pool_windows(predict(model, loader, accelerator), documents, cfg.data.pooling)
    fixed = fixed_threshold(cfg)
    return split_metrics(logits, gold, data, 0.5 if fixed is None else fixed)


def test_scores(model, encoded: dict, tokenizer, data: ClassificationData, cfg: RunConfig,
                accelerator: Accelerator) -> tuple[np.ndarray, dict]:
    """The test split's pooled logits and metrics; multi-label thresholds fixed, or tuned on validation first."""
    def logits_of(split: str, desc: str) -> np.ndarray:
        loader = accelerator.prepare(batches.eval_loader(encoded[split], tokenizer, cfg.train.eval_batch_size))
        return batches.pool_windows(predict(model, loader, accelerator, desc=desc), encoded[split].documents,
                                    cfg.data.pooling)

    test_logits = logits_of("test", "testing")
    thresholds = fixed_threshold(cfg)
    if data.multilabel and thresholds is None:
        validation_probabilities = sigmoid(logits_of("validation", "tuning thresholds"))
        thresholds = metrics.tune_thresholds(validation_probabilities, targets(data.validation, data))
        logger.info("thresholds tuned on the validation split: %s",
                    ", ".join(f"{n} {t:.2f}" for n, t in zip(data.label_names, thresholds)))
    return test_logits, split_metrics(test_logits, targets(data.test, data), data,
                                      0.5 if thresholds is None else thresholds)


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


def long_text_report(encoded: dict[str, batches.EncodedSplit], cfg: RunConfig) -> dict:
    """For metrics.json: the long-text policy, texts over the limit and inputs (windows) per split."""
    return {"long_text": cfg.long_text, "max_length": cfg.data.max_length,
            "over_max_length": {split: e.over_limit for split, e in encoded.items()},
            "inputs": {split: len(e) for split, e in encoded.items()}}


def prediction_rows(data: ClassificationData, test_logits: np.ndarray, test_metrics: dict) -> list[dict]:
    """predictions.jsonl: each test text (and pair) with its gold and predicted label(s) and scores."""
    names = data.label_names
    if data.multilabel:
        thresholds = np.asarray([test_metrics["per_class"][name]["threshold"] for name in names])
        probabilities = sigmoid(test_logits)
        rows = [{"labels": [names[i] for i in gold],
                 "predicted": [name for name, p, t in zip(names, row, thresholds) if p >= t],
                 "scores": {name: round(float(p), 6) for name, p in zip(names, row)}}
                for gold, row in zip(data.test.labels, probabilities)]
    else:
        probabilities = torch.softmax(torch.from_numpy(test_logits), dim=-1).numpy()
        rows = [{"label": names[gold], "predicted": names[int(p.argmax())], "score": round(float(p.max()), 6)}
                for gold, p in zip(data.test.labels, probabilities)]
    pairs = data.test.text_pairs or [None] * len(rows)
    return [{"text": text} | ({"text_pair": pair} if pair is not None else {}) | row
            for text, pair, row in zip(data.test.texts, pairs, rows)]


def inference_settings(cfg: RunConfig, test_metrics: dict, label_names: list[str]) -> dict:
    """Saved in the model's config.json (`nlptransfer`): how `nlptransfer.predict` reads long texts and
    which multi-label thresholds it applies, so a model folder predicts like its run."""
    settings = {"long_text": cfg.long_text, "max_length": cfg.data.max_length, "stride": cfg.data.stride,
                "pooling": cfg.data.pooling}
    if cfg.task == "multilabel":
        settings["thresholds"] = [test_metrics["per_class"][name]["threshold"] for name in label_names]
    return settings


def save_run(results: Results, model, tokenizer, data: ClassificationData, test_logits: np.ndarray,
             cfg: RunConfig, inputs: dict | None = None) -> None:
    """metrics.json, predictions.jsonl, model/ (plus adapter/ for LoRA) and the plots in the run folder."""
    out = results.output_dir
    export.write_jsonl(out / "predictions.jsonl", prediction_rows(data, test_logits, results.test_metrics))
    model.config.nlptransfer = inference_settings(cfg, results.test_metrics, data.label_names)
    results.model_dir, results.adapter_dir = export.save_model(model, tokenizer, out, lora=cfg.strategy == "lora")
    plots.write_run_plots(out, results.history, results.test_metrics, data.label_names, cfg.train.metric_for_best)
    # Last: a run folder with metrics.json is a finished run.
    export.write_json(out / "metrics.json", {
        "test": results.test_metrics, "epochs": results.history, "baselines": results.baselines,
        "parameters": results.parameters, "timing": results.timing,
        "data": {"source": data.source, "label_names": data.label_names,
                 "examples": {split: len(getattr(data, split)) for split in ("train", "validation", "test")}}
        | (inputs or {}),
    })
