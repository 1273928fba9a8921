"""Domain-adaptive pretraining: more masked-language-model training of the encoder on in-domain text.

A checkpoint pretrained on books and Wikipedia has seen little text like tweets. Before fine-tuning,
`adapt_encoder` continues its masked-language-model (MLM) training on unlabeled text of the task's
domain (a file, or the training split's own texts without their labels), then saves the adapted
encoder with its tokenizer in a folder that becomes `cfg.model`: fine-tuning starts from it.
The MLM step runs through the same `fit` loop as fine-tuning; its validation metric is the accuracy
of predicting the masked tokens of a held-out slice of the texts, masked once with a fixed seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from transformers import AutoModel, AutoModelForMaskedLM, DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput

from . import catalog, models, tasks
from .config import RunConfig, TrainConfig
from .data.readers import read_table
from .data.splits import dedup_key
from .engine import batches, precision
from .engine.loop import OptimizerSettings, TrainData, fit
from .errors import DataError, ModelError
from .outputs import export, folders

logger = logging.getLogger("nlptransfer")

SETTINGS_FILE = "adaptation.json"
"""Written last into the adapted folder: the settings it was made with, and the MLM metrics."""
ADAPTED = folders.Kind("adapted encoder", ("*.json", "*.safetensors", "*.txt", "*.model", "*.py"), (SETTINGS_FILE,))
"""The folder of an adapted encoder: a new adaptation replaces one, never another folder."""
HELD_OUT = 500
"""At most this many texts (and at most 1 in 20) are held out to measure masked-token accuracy."""


def unlabeled_texts(cfg: RunConfig) -> list[str]:
    """The texts to adapt on: `pretrain.text_file`, else every text of the training split.

    The training split is read before `data.max_train_samples` applies, so a run that labels 4000
    tweets adapts on all the others of its training split too; validation and test texts never
    enter. A seeded sample of `pretrain.max_samples` is taken when set.
    """
    texts = read_text_file(cfg) if cfg.pretrain.text_file else training_texts(cfg)
    texts = [text for text in texts if text.strip()]
    if len(texts) < 2:
        raise DataError(f"domain-adaptive pretraining needs unlabeled texts; found {len(texts)}; "
                        "set pretrain.text_file to a file with one text per line")
    if cfg.pretrain.max_samples is not None and len(texts) > cfg.pretrain.max_samples:
        texts = random.Random(cfg.seed).sample(texts, cfg.pretrain.max_samples)
    return texts


def read_text_file(cfg: RunConfig) -> list[str]:
    """A .txt file's lines, or one column of a csv/tsv/json/jsonl/parquet file."""
    path = Path(cfg.pretrain.text_file)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"pretrain.text_file not found: {path}; give a .txt file with one text per line")
        return path.read_text(encoding=cfg.data.encoding).splitlines()
    column = cfg.pretrain.text_column or cfg.data.text_column
    frame = read_table(path, cfg.data.encoding)
    if column not in frame.columns:
        raise DataError(f"{path} has no column '{column}' (pretrain.text_column); "
                        f"columns found: {', '.join(map(str, frame.columns))}")
    return frame[column].dropna().astype(str).tolist()


def training_texts(cfg: RunConfig) -> list[str]:
    """Every text of the training split (labels unused) that is not also a validation or test text of the run.

    The run's held-out splits are deduplicated against its own (sampled) training texts only, so a
    training-split text outside the sample may repeat a test text (case and white space ignored, as the
    splits' own dedup does): it is left out.
    """
    everything = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_train_samples=None))
    task = tasks.get(cfg.task)
    full, run = task.load_data(everything), task.load_data(cfg)
    texts = task.split_texts
    held_out = {dedup_key(text) for text in texts(run.validation) + texts(run.test)}
    return [text for text in texts(full.train) if dedup_key(text) not in held_out]


def settings_of(cfg: RunConfig, texts: list[str]) -> dict:
    """What the adapted encoder depends on; a folder made with the same settings is reused."""
    pretrain = dataclasses.asdict(cfg.pretrain)
    for key in ("mlm", "output_dir"):
        pretrain.pop(key)
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    return {"model": cfg.model, "max_length": cfg.data.max_length, "seed": cfg.seed, "pretrain": pretrain,
            "texts": len(texts), "texts_sha256": digest}


def adapt_encoder(cfg: RunConfig, folder: Path, accelerator: Accelerator | None = None) -> dict:
    """MLM-train `cfg.model`'s encoder on `unlabeled_texts(cfg)` and save it with its tokenizer in `folder`.

    Returns the adaptation record (settings, masked-token accuracy and loss before and after, time),
    also written to `folder/adaptation.json`. A folder already adapted with the same settings is reused.
    """
    folder = Path(folder)
    texts = unlabeled_texts(cfg)
    settings = settings_of(cfg, texts)
    record_file = folder / SETTINGS_FILE
    if record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        if record.get("settings") == settings:
            logger.info("domain-adaptive pretraining: reusing %s (same model, texts and settings)", folder)
            return record
    folders.check_writable(folder, ADAPTED, "pretrain.output_dir", replacing=True, whole=True,
                           inputs=folders.config_inputs(cfg))  # before training: it replaces the folder
    cfg, _ = precision.resolved(cfg)  # auto when called alone (a run passes its resolved config)
    accelerator = accelerator or Accelerator(mixed_precision=cfg.train.mixed_precision)
    started = time.perf_counter()
    tokenizer = models.load_tokenizer(cfg.model, cfg.trust_remote_code)
    held_out = min(HELD_OUT, len(texts) // 20) or 1
    train_split, held_out_split = (encode_texts(part, tokenizer, cfg.data.max_length)
                                   for part in (texts[held_out:], texts[:held_out]))
    logger.info("domain-adaptive pretraining: masked-language-model training of %s on %d texts (%d held out)",
                cfg.model, len(train_split), len(held_out_split))
    mlm_model = MaskedPositionsOnly(load_mlm_model(cfg))
    validate = masked_accuracy(held_out_split, tokenizer, cfg)
    before = validate(mlm_model)
    p = cfg.pretrain
    train_cfg = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, patience=None,
                            grad_accum_steps=accelerator.gradient_accumulation_steps,
                            mixed_precision=cfg.train.mixed_precision)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=p.mlm_probability, seed=cfg.seed)
    loader = batches.train_loader(train_split, tokenizer, p.batch_size, cfg.seed, True, collate_fn=collator)
    fitted = fit(mlm_model, TrainData(loader, validate), train_cfg, OptimizerSettings(p.lr), accelerator)
    mlm_model = accelerator.unwrap_model(mlm_model).model
    after = fitted.history[fitted.best_epoch - 1]["validation"]
    accelerator.free_memory()
    save_encoder(mlm_model, tokenizer, cfg, folder)
    record = {"settings": settings, "before": before, "after": after, "train_seconds": fitted.train_seconds,
              "seconds": time.perf_counter() - started, "optimizer_steps": fitted.optimizer_steps}
    export.write_json(record_file, record)  # last: a folder with it is complete
    logger.info("domain-adaptive pretraining: held-out masked-token accuracy %.4f -> %.4f (loss %.3f -> %.3f) "
                "in %.0fs; adapted encoder in %s", before["accuracy"], after["accuracy"], before["loss"],
                after["loss"], record["seconds"], folder)
    return record


class MaskedPositionsOnly(nn.Module):
    """The MLM model scoring the vocabulary at the masked positions only.

    Scoring all ~30k vocabulary entries at every position costs more than the encoder itself, and
    only `mlm_probability` of the positions have a label. Heads that score each position on its own
    (BERT's `cls`, RoBERTa's `lm_head`) run on the masked positions alone; others score all of them.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = getattr(model, "cls", None) or getattr(model, "lm_head", None)

    def forward(self, labels: torch.Tensor, **inputs) -> MaskedLMOutput:
        masked = labels != -100
        if self.head is None:
            logits = self.model(**inputs).logits[masked]
        else:
            logits = self.head(self.model.base_model(**inputs).last_hidden_state[masked])
        return MaskedLMOutput(loss=nn.functional.cross_entropy(logits.float(), labels[masked]), logits=logits)


def encode_texts(texts: list[str], tokenizer, max_length: int) -> batches.EncodedSplit:
    """Tokenize once; the special-token mask tells the MLM collator which tokens never to mask."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    return batches.EncodedSplit([{key: encoded[key][i] for key in encoded} for i in range(len(texts))])


def load_mlm_model(cfg: RunConfig) -> nn.Module:
    """The checkpoint with a masked-language-model head (new if the checkpoint has none, e.g. sentence encoders)."""
    path = catalog.resolve_model(cfg.model)
    try:
        model, loading = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, output_loading_info=True,
                                                              trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        raise models._hub_error(cfg.model, path, e) from None
    if loading["missing_keys"]:
        logger.warning("%s has no masked-language-model head (%d new weights, e.g. %s): it is learned from scratch "
                       "along with the encoder; checkpoints that keep their MLM head (bert, roberta, ...) adapt "
                       "better", cfg.model, len(loading["missing_keys"]), sorted(loading["missing_keys"])[0])
    return model


def masked_accuracy(split: batches.EncodedSplit, tokenizer, cfg: RunConfig):
    """A validation function: loss and accuracy of predicting the masked tokens of `split`.

    The split is masked once, with its own seed, so every evaluation scores the same positions.
    """
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.pretrain.mlm_probability,
                                               seed=cfg.seed + 1)
    fixed = [collator([split[i] for i in rows])
             for rows in batches.sorted_batches(split.lengths, cfg.train.eval_batch_size)]

    @torch.no_grad()
    def validate(model: nn.Module) -> dict:
        model.eval()
        device = next(model.parameters()).device
        loss_sum = correct = masked = 0.0
        for batch in fixed:
            batch = {key: value.to(device) for key, value in batch.items()}
            outputs = model(**batch)  # scores of the masked positions
            targets = batch["labels"][batch["labels"] != -100]
            loss_sum += float(outputs.loss) * len(targets)
            correct += int((outputs.logits.argmax(-1) == targets).sum())
            masked += len(targets)
        return {"accuracy": correct / max(masked, 1), "loss": loss_sum / max(masked, 1), "masked_tokens": int(masked)}

    return validate


def save_encoder(mlm_model: nn.Module, tokenizer, cfg: RunConfig, folder: Path) -> None:
    """Save the adapted encoder as a plain checkpoint of the original architecture.

    The MLM model's encoder lacks the pooler some checkpoints carry (BERT's): the original encoder
    is loaded and the adapted weights are copied over it, so the pooler stays pretrained.
    """
    encoder = AutoModel.from_pretrained(catalog.resolve_model(cfg.model), use_safetensors=True,
                                        trust_remote_code=cfg.trust_remote_code)
    missing, unexpected = encoder.load_state_dict(mlm_model.base_model.state_dict(), strict=False)
    if unexpected:
        raise ModelError(f"cannot save the adapted encoder of {cfg.model}: its MLM model has weights the encoder "
                        f"lacks ({unexpected[0]}); use another checkpoint or pretrain.mlm=false")
    logger.debug("kept from the original checkpoint: %s", ", ".join(missing) or "nothing")
    export.save_pretrained(encoder, tokenizer, folder, lambda staging: folders.claim(staging, ADAPTED))


def adapted_config(cfg: RunConfig, folder: Path, accelerator: Accelerator | None = None) -> RunConfig:
    """Run `adapt_encoder` and return `cfg` fine-tuning from the adapted encoder (`model=folder`).

    Seeds again afterwards: the new head starts from the same weights as it would without adaptation.
    """
    adapt_encoder(cfg, folder, accelerator)
    set_seed(cfg.seed)
    return dataclasses.replace(cfg, model=str(folder), pretrain=dataclasses.replace(cfg.pretrain, mlm=False))


def default_folder(cfg: RunConfig, output_dir: Path) -> Path:
    """`pretrain.output_dir`, else `<output_dir>/adapted-encoder`."""
    return Path(cfg.pretrain.output_dir) if cfg.pretrain.output_dir else Path(output_dir) / "adapted-encoder"
