"""One token-classification (NER) run, end to end: tagged data -> windows -> model + strategy -> train ->
entity-level evaluation -> export.

The same steps, run folder and `Results` as `pipeline.run` for text classification; what differs
is the data (`conll`), the sub-token alignment (`tokens`) and the metrics (seqeval, per entity type).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from accelerate import Accelerator

from . import adapt, export, features, metrics, models, plots, tokens, tracking
from .config import RunConfig
from .conll import TokenData, load_token_classification
from .errors import ConfigError
from .pipeline import Results, build_model, checkpointing, layerwise_options, setup, timing
from .push import publish
from .train import fit

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
METRICS = ("f1", "precision", "recall", "accuracy")


def check_config(cfg: RunConfig) -> None:
    """What `config.validate` cannot know about token classification."""
    if cfg.task != "token-classification":
        raise ConfigError(f"run_token_classification needs task=token-classification, got task={cfg.task}")
    if cfg.train.metric_for_best not in METRICS:
        raise ConfigError(f"train.metric_for_best must be one of {', '.join(METRICS)} for token classification")
    if not 0 <= cfg.data.stride <= cfg.data.max_length // 2:
        raise ConfigError(f"data.stride must be from 0 to half of data.max_length ({cfg.data.max_length // 2})")


def model_max_length(tokenizer, configured: int) -> int:
    """`data.max_length`, capped at the tokenizer's own limit (its position embeddings)."""
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else configured
    if configured > limit:
        logger.info("data.max_length=%d exceeds the model's limit; windows hold %d tokens", configured, limit)
    return min(configured, limit)


def encode(data: TokenData, tokenizer, cfg: RunConfig, max_length: int) -> dict[str, tokens.EncodedWords]:
    """Tokenize every split into windows once; report how many sentences needed more than one window."""
    encoded = {
        split: tokens.encode_words(getattr(data, split).words, getattr(data, split).tags, tokenizer, data.label_names,
                                   max_length, cfg.data.stride, cfg.data.label_all_subtokens)
        for split in SPLITS
    }
    for split, windows in encoded.items():
        split_sentences = Counter(window.sentence for window in windows.windows)
        long = sum(count > 1 for count in split_sentences.values())
        if long:
            logger.info("%s: %d sentences longer than %d tokens were split into overlapping windows (stride %d)",
                        split, long, max_length, cfg.data.stride)
    return encoded


def score(model, loader, encoded: tokens.EncodedWords, gold: list[list[str]], data: TokenData, max_length: int,
          accelerator: Accelerator) -> dict:
    """Entity-level metrics of a model on one split, scored on the original words and tags."""
    predicted = tokens.predict_words(model, loader, encoded, max_length, accelerator)
    tags = [[data.label_names[i] for i in sentence] for sentence in predicted]
    return metrics.entity_metrics(tags, gold, data.entity_types)


def train(model, encoded, tokenizer, data: TokenData, cfg: RunConfig, max_length: int, accelerator,
          checkpoints=None, resume_from=None) -> tuple:
    """Fit with the strategy's loop; frozen trains the head on per-token encoder features computed once."""
    lr = cfg.train.lr or models.default_lr(cfg.strategy)
    resume = {"checkpoints": checkpoints, "resume_from": resume_from, "resume_force": cfg.resume_force}
    validation = accelerator.prepare(tokens.eval_loader(encoded["validation"], tokenizer, cfg.train.eval_batch_size))

    def validate_on(loader):
        return lambda m: score(m, loader, encoded["validation"], data.validation.tags, data, max_length, accelerator)

    if cfg.strategy == "frozen":
        train_windows = accelerator.prepare(tokens.eval_loader(encoded["train"], tokenizer, cfg.train.eval_batch_size))
        cached_extract = features.cached_extraction(features.extract_tokens, "tokens", cfg, tokenizer)
        return features.fit_head_on_features(model, train_windows, validation, cached_extract,
                                             features.token_feature_loaders, validate_on, cfg, lr, accelerator,
                                             **resume)
    train_batches = tokens.train_loader(encoded["train"], tokenizer, cfg.train.batch_size, cfg.seed,
                                        cfg.train.group_by_length)
    fitted = fit(model, train_batches, validate_on(validation), cfg.train, lr, accelerator, **resume,
                 **layerwise_options(model, cfg, lr, accelerator))
    return accelerator.unwrap_model(model), fitted


def run_token_classification(cfg: RunConfig) -> Results:
    """Fine-tune a token classifier, evaluate it on the held-out test split and save; returns the `Results`."""
    started = time.perf_counter()
    check_config(cfg)
    accelerator, output_dir = setup(cfg)
    if cfg.pretrain.mlm:  # domain-adaptive pretraining: fine-tune from the adapted encoder
        cfg = adapt.adapted_config(cfg, adapt.default_folder(cfg, output_dir), accelerator)
    data = load_token_classification(cfg.data, cfg.seed)
    logger.info("data: %s; %d train / %d validation / %d test sentences; tag scheme %s%s; entity types: %s",
                data.source, len(data.train), len(data.validation), len(data.test), data.scheme,
                "" if data.scheme == "IOB2" else " (converted to IOB2)", ", ".join(data.entity_types))
    tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code)
    max_length = model_max_length(tokenizer, cfg.data.max_length)
    encoded = encode(data, tokenizer, cfg, max_length)
    model, (trainable, total) = build_model(cfg, tokenizer, data.label_names)

    checkpoints, resume_from = checkpointing(cfg, output_dir, data.label_names, len(data.train), accelerator)
    model, fitted = train(model, encoded, tokenizer, data, cfg, max_length, accelerator, checkpoints, resume_from)

    test_batches = accelerator.prepare(tokens.eval_loader(encoded["test"], tokenizer, cfg.train.eval_batch_size))
    predicted = tokens.predict_words(model, test_batches, encoded["test"], max_length, accelerator, desc="testing")
    predicted_tags = [[data.label_names[i] for i in sentence] for sentence in predicted]
    test_metrics = metrics.entity_metrics(predicted_tags, data.test.tags, data.entity_types)
    logger.info("test (best epoch %d):\n%s", fitted.best_epoch, metrics.format_entity_report(test_metrics))
    results = Results(
        output_dir=output_dir,
        test_metrics=test_metrics,
        history=fitted.history,
        baselines=metrics.tagger_baselines(data.train.words, data.train.tags, data.test.words, data.test.tags),
        parameters={"trainable": trainable, "total": total},
        timing=timing(fitted, started),
    )
    logger.info("baselines on the same data: all-O token accuracy %.4f; most frequent tag per word: entity F1 "
                "%.4f, token accuracy %.4f", results.baselines["all_o_accuracy"],
                results.baselines["word_lookup_f1"], results.baselines["word_lookup_accuracy"])
    if accelerator.is_main_process:
        save_run(results, model, tokenizer, data, predicted_tags, cfg)
        publish(results, cfg)  # the model card; pushed when push.repo_id is set
    tracking.finish(accelerator, test_metrics, fitted.optimizer_steps)
    accelerator.wait_for_everyone()
    results.timing["wall_seconds"] = time.perf_counter() - started
    logger.info("done in %.0fs: %.1f training windows/s, test entity F1 %.4f; outputs in %s",
                results.timing["wall_seconds"], results.timing["train_samples_per_second"],
                test_metrics["f1"], output_dir)
    return results


def save_run(results: Results, model, tokenizer, data: TokenData, predicted_tags: list[list[str]],
             cfg: RunConfig) -> None:
    """metrics.json, predictions.jsonl (words, gold and predicted tags), model/ (plus adapter/ for LoRA), plots."""
    out = results.output_dir
    export.write_jsonl(out / "predictions.jsonl", [
        {"words": sentence.words, "tags": sentence.tags, "predicted": predicted}
        for sentence, predicted in zip(data.test.sentences, predicted_tags)
    ])
    results.model_dir, results.adapter_dir = export.save_model(model, tokenizer, out, lora=cfg.strategy == "lora")
    plots.write_run_plots(out, results.history, results.test_metrics, data.label_names, cfg.train.metric_for_best)
    # Last: a run folder with metrics.json is a finished run.
    export.write_json(out / "metrics.json", {
        "test": results.test_metrics, "epochs": results.history, "baselines": results.baselines,
        "parameters": results.parameters, "timing": results.timing,
        "data": {"source": data.source, "scheme": data.scheme, "label_names": data.label_names,
                 "sentences": {split: len(getattr(data, split)) for split in SPLITS}},
    })
