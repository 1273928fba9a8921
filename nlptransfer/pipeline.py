"""One run, end to end, for any task with any strategy:
setup -> data -> model + strategy -> fit -> test -> outputs.

Recipes and the Python API call `run(cfg)`; the task object (`tasks/`) says how to read, encode
and score the data, the strategy object (`strategies/`) what trains and how. Nothing here asks
which task or strategy it is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, set_seed
from torch import nn

from . import adapt, catalog, models, pooling, strategies, tasks
from .config import RunConfig, to_yaml, validate
from .engine import distributed, precision
from .engine.callbacks import Checkpointing, EarlyStopping, Tracking
from .engine.checkpoint import Checkpoints
from .engine.loop import Callback, FitResult
from .engine.speed import speed_up
from .errors import CheckpointError, ConfigError, DataError
from .hub import lineage
from .hub.push import check_push, publish
from .outputs import console, plots, tracking
from .outputs.folders import config_inputs
from .outputs.run_folder import RunFolder

logger = logging.getLogger("nlptransfer")

NOT_TRAJECTORY = ("recipe", "output_dir", "overwrite", "resume", "resume_force", "log_with", "push", "checkpoint",
                  "trust_remote_code")
"""Options that do not change what training computes; every other option is part of the checkpoint fingerprint."""


@dataclass
class Results:
    output_dir: Path
    test_metrics: dict
    """Held-out test metrics of the best validation epoch."""
    history: list[dict]
    """Per epoch: train loss and validation metrics."""
    baselines: dict = field(default_factory=dict)
    """Simple baselines' test scores on the same data (majority class, TF-IDF + logistic regression, ...)."""
    parameters: dict = field(default_factory=dict)
    """Trainable and total parameter counts."""
    timing: dict = field(default_factory=dict)
    """Wall time, training time and throughput."""
    model_dir: Path | None = None
    adapter_dir: Path | None = None
    model: Any = None
    """The trained model (a plain transformers model; the peft model for adapter strategies)."""
    tokenizer: Any = None
    predictions: list[dict] = field(default_factory=list)
    """The test split's prediction rows, as in predictions.jsonl."""
    config: Any = None
    """The run's resolved `RunConfig`."""
    encoder_from: dict | None = None
    """The earlier run whose encoder this run fine-tuned (`model=runs/A`: sequential transfer), as metrics.json
    records it; None for a checkpoint."""
    extra: dict = field(default_factory=dict)
    """What the run's objective adds to metrics.json (distillation: `distilled_from`)."""

    @property
    def accuracy(self) -> float:
        return self.test_metrics["accuracy"]

    @property
    def predictions_frame(self):
        """The test predictions as a pandas DataFrame (one row per test example)."""
        import pandas as pd

        return pd.DataFrame(self.predictions)

    def predict(self, texts: str | Sequence[str], **options) -> list[dict]:
        """What `nlptransfer.predict` answers for `texts`: the saved `model_dir`, loaded once, serves them (the
        `model` object stays as trained); `options` as `Predictor.predict`'s (`all_scores`, `batch_size`, ...)."""
        from .predictor import load_model

        if not hasattr(self, "_predictor"):
            self._predictor = load_model(self.model_dir)
        return self._predictor.predict(texts, **options)


@dataclass
class Inputs:
    """What the Python API hands a run besides its config: in-memory data, a model saved for it, callbacks."""

    source: tuple | None = None
    """(frames by split, ClassLabel names, description) instead of reading `cfg.data`."""
    model_path: str | None = None
    """Load the model and tokenizer from here instead of resolving `cfg.model` (a model object saved for the run)."""
    callbacks: Sequence[Callback] = ()
    """The user's own loop callbacks."""
    objective: Any = None
    """What the model learns from instead of its labels alone (`distillation.Objective`: a teacher's soft targets):
    `prepare(folder, task, data, encoded, tokenizer, cfg)` returns the encoded splits it trains on, `wrap(model,
    loss_fn)` the module whose `forward(**batch).loss` the loop minimizes, `unwrap(module)` the model again,
    `fingerprint()` its part of the checkpoint fingerprint, `summary()` its part of metrics.json."""


def default_output_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.recipe}-{cfg.strategy}-{datetime.now():%Y%m%d-%H%M%S}"


def setup(cfg: RunConfig) -> tuple[Accelerator, RunFolder]:
    """Create the accelerator, take the run folder (lock, overwrite, resume checks), start logging, seed."""
    if cfg.resume and not cfg.output_dir:
        raise ConfigError("resume= needs the run folder: pass output_dir=runs/<the run> too")
    if cfg.resume not in (None, "auto") and not Path(cfg.resume).is_dir():
        raise CheckpointError(f"resume={cfg.resume}: no such checkpoint folder; use resume=auto or a "
                              f"folder under {Path(cfg.output_dir) / 'checkpoints'}")
    output_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    precision.check_process(cfg.train.mixed_precision)
    # split_batches: train.batch_size is the global batch, shared by the processes (distributed.py)
    accelerator = Accelerator(cpu=distributed.launched_without_accelerator(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              mixed_precision=cfg.train.mixed_precision,
                              gradient_accumulation_steps=cfg.train.grad_accum_steps,
                              log_with=tracking.trackers(cfg.log_with, output_dir), project_dir=output_dir)
    distributed.check_batch_sizes(cfg.train, accelerator.num_processes)
    if not cfg.output_dir:  # named by the clock: every process takes the main process's name
        output_dir = Path(broadcast_object_list([str(output_dir)])[0])
    folder = RunFolder(output_dir)
    if accelerator.is_main_process:
        folder.open(overwrite=cfg.overwrite, resume=bool(cfg.resume), inputs=config_inputs(cfg))
    accelerator.wait_for_everyone()
    console.start_run_logging(output_dir, accelerator.is_main_process)
    logger.info("config: %s (all options in %s)", console.config_summary(cfg), output_dir / "config.yaml")
    logger.debug("resolved config:\n%s", to_yaml(cfg))
    distributed.log_processes(accelerator.num_processes, accelerator.state.backend, cfg.train)
    return accelerator, folder


def trajectory_fingerprint(cfg: RunConfig, strategy: strategies.Strategy, label_names: list[str],
                           train_size: int) -> dict:
    """Every option that changes what training computes, by dotted key, with the data's labels and size.

    The number of processes is not part of it: batches are global (split_batches), so a run may
    resume on another number of processes (same batches; other dropout streams).
    """
    options = {name: value for name, value in dataclasses.asdict(cfg).items()
               if name not in NOT_TRAJECTORY and name not in strategies.sections()}
    return flat(options | strategy.fingerprint(cfg)) | {"label_names": label_names, "train_examples": train_size}


def flat(tree: dict, prefix: str = "") -> dict:
    items = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            items |= flat(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = value
    return items


def checkpointing(cfg: RunConfig, fingerprint: dict, folder: RunFolder, accelerator: Accelerator
                  ) -> tuple[Checkpoints, Path | None]:
    """The run's checkpoints, and the one to resume from (resume=auto|PATH), checked against this run."""
    checkpoints = Checkpoints(folder.path, cfg.checkpoint, fingerprint, accelerator)
    if not cfg.resume:
        return checkpoints, None
    if cfg.resume == "auto":
        resume_from = checkpoints.latest_valid()
    else:
        resume_from = Path(cfg.resume)
    checkpoints.check(resume_from, cfg.resume_force)  # refused before anything of the run is replaced
    return checkpoints, resume_from


def build_model(cfg: RunConfig, task: tasks.Task, strategy: strategies.Strategy, tokenizer, data,
                model_path: str | None = None) -> tuple[nn.Module, tuple[int, int]]:
    """The checkpoint with a new head for the data's labels (its own kind, or on a pooled embedding:
    `head.pooling`; the task may hold several: multitask), adapted by the strategy; logs what trains."""
    pooled = head_pooling(cfg, strategy, model_path)

    def load(head_task: tasks.Task, label_names: list[str]) -> nn.Module:
        loaded = models.load_model(cfg.model, head_task, label_names, cfg.trust_remote_code, path=model_path,
                                   keep_head=cfg.keep_head, pooling=pooled)
        models.check_vocabulary(tokenizer, loaded, cfg.model)
        return loaded

    model = task.build_model(cfg, data, load)
    model = strategy.prepare(model, cfg, task)
    if cfg.train.speedups:
        speed_up(model)
    return model, strategy.parameter_counts(model, cfg)


def head_pooling(cfg: RunConfig, strategy: strategies.Strategy, model_path: str | None = None) -> dict | None:
    """The head's pooling ({"mode", "normalize"}), or None for the architecture's own head."""
    normalize = cfg.head.normalize if cfg.head.normalize is not None else strategy.default_normalize
    return pooling.resolve(cfg.head.pooling or strategy.default_pooling, normalize,
                           model_path or catalog.resolve_model(cfg.model))


def loop_callbacks(cfg: RunConfig, checkpoints: Checkpoints, resume_from: Path | None,
                   user_callbacks: Sequence[Callback], validation: bool = True) -> list[Callback]:
    """The loop's standard callbacks (checkpoints and resume, early stopping, tracking), then the user's.

    Without a `validation` split there is nothing to stop early on: the run trains for its fixed budget.
    """
    standard = [Checkpointing(checkpoints, resume_from, cfg.resume_force), Tracking()]
    if cfg.train.patience is not None and validation:
        standard.append(EarlyStopping(cfg.train.patience))
    return standard + list(user_callbacks)


def fixed_budget_note(cfg: RunConfig, train_size: int, strategy: strategies.Strategy) -> str | None:
    """The log line of a run without a validation split: why, what it trains for, how to get one."""
    why = (f"few-shot: {train_size} training examples" if cfg.data.examples_per_class is not None
           else "data.validation_fraction=0")
    budget = strategy.fixed_budget(cfg)
    if budget is None:
        return None
    return (f"no validation split ({why}): training for a fixed {budget} and keeping the last; "
            "give data.validation_file to pick the best epoch")


def run(cfg: RunConfig, inputs: Inputs | None = None) -> Results:
    """Fine-tune, evaluate on the held-out test split and save; returns the `Results`."""
    started = time.perf_counter()
    inputs = inputs or Inputs()
    cfg, precision_choice = precision.resolved(validate(cfg))  # auto: the device's fast precision
    task, strategy = tasks.get(cfg.task), strategies.get(cfg.strategy)
    check_push(cfg.push)  # a bad repo id or a missing token fails now, not after training
    if inputs.source is None:
        check_input_files(cfg)  # before the run folder is created: a missing data file writes nothing
    if inputs.model_path is None and isinstance(cfg.model, str):
        catalog.resolve_model(cfg.model)  # an unfinished run or an ensemble as model= is refused before too
    accelerator, folder = setup(cfg)
    logger.info("mixed precision: %s (%s)", cfg.train.mixed_precision, precision_choice.reason)
    try:
        results = run_in_folder(cfg, task, strategy, inputs, accelerator, folder, started, precision_choice)
    except BaseException:
        console.stop_run_logging()
        if accelerator.is_main_process:
            folder.discard()  # failed before saving anything trained, in a folder it created: it goes again
        raise
    finally:
        if accelerator.is_main_process:
            folder.release()
        console.stop_run_logging()
    return results


def check_input_files(cfg: RunConfig) -> None:
    """Refuse a data file (and pretrain.text_file) that is missing or unreadable before anything is written; the
    readers check columns and contents as they read."""
    from .data.readers import check_file, unreadable

    for option, value in (("data.train_file", cfg.data.train_file), ("data.validation_file", cfg.data.validation_file),
                          ("data.test_file", cfg.data.test_file), ("pretrain.text_file", cfg.pretrain.text_file)):
        if not value:
            continue
        path = Path(value).expanduser()
        check_file(path)
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as error:
            raise DataError(f"{option}: {unreadable(path, error)}") from None


def run_in_folder(cfg: RunConfig, task: tasks.Task, strategy: strategies.Strategy, inputs: Inputs,
                  accelerator: Accelerator, folder: RunFolder, started: float,
                  precision_choice: precision.Choice | None = None) -> Results:
    """The run's steps once its folder is taken."""
    cfg = within_model_length(cfg, models.load_tokenizer(cfg.model, cfg.trust_remote_code, path=inputs.model_path))
    if not cfg.resume and accelerator.is_main_process:
        folder.write_config(to_yaml(cfg))
    encoder_from = None if inputs.model_path else lineage.encoder_source(cfg.model)  # model=runs/A
    if encoder_from:
        logger.info(lineage.log_line(cfg.model, encoder_from))
    tracking.start(accelerator, cfg, folder.path)
    set_seed(cfg.seed)
    if cfg.pretrain.mlm:  # domain-adaptive pretraining: fine-tune from the adapted encoder
        cfg = adapt.adapted_config(cfg, adapt.default_folder(cfg, folder.path), accelerator)
    data = strategy.training_data(task.load_data(cfg, inputs.source), cfg)
    if strategy.needs_examples and not len(data.train):
        raise DataError(f"no labeled training example (data.examples_per_class=0): strategy={strategy.name} trains "
                        "on some; use strategy=zeroshot, or strategy=contrastive contrastive.synthetic_per_class=8")
    logger.info(task.describe_data(data))
    tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code, path=inputs.model_path)
    encoded = task.encode(data, tokenizer, cfg)
    model, (trainable, total) = build_model(cfg, task, strategy, tokenizer, data, inputs.model_path)
    loss_fn, objective = task.loss_fn(data, cfg), inputs.objective
    if objective is not None:  # e.g. distillation: more training rows, soft targets, a module returning the loss
        encoded = objective.prepare(folder.path, task, data, encoded, tokenizer, cfg)
        model, loss_fn = objective.wrap(model, loss_fn), None

    fingerprint = trajectory_fingerprint(cfg, strategy, data.label_names, len(data.train)) | (
        objective.fingerprint() if objective is not None else {})
    checkpoints, resume_from = checkpointing(cfg, fingerprint, folder, accelerator)
    if cfg.resume and accelerator.is_main_process:  # the resume is compatible: now the config may be replaced
        folder.write_config(to_yaml(cfg))
    validation = len(data.validation) > 0
    if not validation and (note := fixed_budget_note(cfg, len(data.train), strategy)):
        logger.info(note)
    fitting = strategies.Fitting(
        model=model, cfg=cfg, task=task, encoded=encoded, tokenizer=tokenizer, accelerator=accelerator,
        lr=cfg.train.lr or strategy.default_lr, validate_on=task.validator(data, encoded, cfg, accelerator),
        loss_fn=loss_fn, callbacks=loop_callbacks(cfg, checkpoints, resume_from, inputs.callbacks,
                                                                  validation),
        model_source=inputs.model_path, data=data)
    model, fitted = strategy.train(fitting)
    if objective is not None:
        model = objective.unwrap(model)

    outcome = task.test(model, data, encoded, tokenizer, cfg, accelerator)
    logger.info("test (best epoch %d):\n%s", fitted.best_epoch, task.report(outcome.metrics, data))
    baselines, baseline_line = task.baselines(data)
    logger.info(baseline_line)
    if warning := task.below_baseline(outcome.metrics, baselines):
        logger.warning(warning)
    task.run_companions(cfg, data, outcome.metrics, folder.path, run, fitting.lr)  # e.g. each task of several alone
    results = Results(output_dir=folder.path, test_metrics=outcome.metrics, history=fitted.history,
                      baselines=baselines, parameters={"trainable": trainable, "total": total},
                      timing=timing(fitted, started) | precision_record(cfg, precision_choice), model=model,
                      tokenizer=tokenizer, predictions=task.prediction_rows(data, outcome), config=cfg,
                      encoder_from=encoder_from, extra=objective.summary() if objective is not None else {})
    if accelerator.is_main_process:  # a full disk here: one line, nothing half-written, resume=auto finishes
        with folder.writing_outputs(lambda: sum(t.numel() * t.element_size() for t in model.state_dict().values())):
            save_run(results, folder, task, strategy, data, encoded, cfg)
            if task.model_card:
                publish(results, cfg)  # the model card; pushed when push.repo_id is set
    tracking.finish(accelerator, outcome.metrics, fitted.optimizer_steps)
    accelerator.wait_for_everyone()
    results.timing["wall_seconds"] = time.perf_counter() - started
    logger.info("done in %.0fs: %.1f training %s/s, test %s %.4f; outputs in %s", results.timing["wall_seconds"],
                results.timing["train_samples_per_second"], task.unit, task.headline,
                outcome.metrics[task.headline], folder.path)
    return results


def within_model_length(cfg: RunConfig, tokenizer) -> RunConfig:
    """`cfg` with `data.max_length` capped (and logged) at what the checkpoint reads, so that every step
    after it (encoding, config.yaml, metrics.json, the card, predict's settings) says the length it used."""
    length = models.max_length(tokenizer, cfg.data.max_length)
    if length == cfg.data.max_length:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_length=length))


def precision_record(cfg: RunConfig, choice: precision.Choice | None) -> dict:
    """metrics.json's record of the precision the run computed in, and why (`auto`'s reason)."""
    return {"mixed_precision": cfg.train.mixed_precision} | ({"precision_reason": choice.reason} if choice else {})


def timing(fitted: FitResult, started: float) -> dict:
    seconds = max(fitted.train_seconds, 1e-9)
    return {
        "train_seconds": fitted.train_seconds,
        "train_samples_per_second": fitted.train_examples / seconds,
        "train_tokens_per_second": fitted.train_tokens / seconds,
        "optimizer_steps": fitted.optimizer_steps,
        "best_epoch": fitted.best_epoch,
        "nonfinite_steps": fitted.nonfinite_steps,
        "wall_seconds": time.perf_counter() - started,
    }


def save_run(results: Results, folder: RunFolder, task: tasks.Task, strategy: strategies.Strategy, data,
             encoded: dict, cfg: RunConfig) -> None:
    """predictions.jsonl, model/ (plus adapter/ for adapter strategies), the plots, then metrics.json."""
    out = folder.path
    folder.write_jsonl("predictions.jsonl", results.predictions)
    settings = task.inference_settings(cfg, results.test_metrics, data)
    if settings is not None:
        results.model.config.nlptransfer = settings
    # the length it was trained with (data.max_length, capped as encode capped it): pipeline(..., truncation=True)
    # then reads a text as the run did
    results.tokenizer.model_max_length = models.max_length(results.tokenizer, cfg.data.max_length)
    model_dir = task.save_model(results.model, results.tokenizer, out, cfg, data)
    results.model_dir, results.adapter_dir = ((model_dir, None) if model_dir is not None
                                              else strategy.save(results.model, results.tokenizer, out, cfg))
    plots.write_run_plots(out, results.history, results.test_metrics, data.label_names, cfg.train.metric_for_best)
    # Last: a run folder with metrics.json is a finished run.
    folder.finish({"test": results.test_metrics, "epochs": results.history, "baselines": results.baselines,
                   "parameters": results.parameters, "timing": results.timing}
                  | task.data_summary(data, encoded, cfg)
                  | ({lineage.ENCODER_FROM: results.encoder_from} if results.encoder_from else {}) | results.extra)
