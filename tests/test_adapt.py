"""nlptransfer/adapt.py: domain-adaptive pretraining (masked-language-model training before fine-tuning).

On the tiny BERT: the adaptation changes the encoder's weights, the fine-tune starts from them,
the texts never include validation or test texts, and a finished adaptation is reused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlptransfer import adapt, load_recipe
from nlptransfer.config import DataConfig, PretrainConfig, RunConfig, TrainConfig, validate
from nlptransfer.data.classification import load_classification
from nlptransfer.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def encoder_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Encoder weights under their plain names (a classifier saves them under `bert.`)."""
    return {name.removeprefix("bert."): tensor for name, tensor in state.items() if not name.startswith("classifier")}


def tiny_cfg(tiny_model_dir, reviews_csv, output_dir: Path, **changes) -> RunConfig:
    return RunConfig(model=tiny_model_dir, output_dir=str(output_dir), seed=3,
                     data=DataConfig(train_file=str(reviews_csv), max_length=32, max_train_samples=12),
                     train=TrainConfig(epochs=1, batch_size=8),
                     pretrain=PretrainConfig(mlm=True, lr=5e-3, batch_size=8, epochs=2), **changes)


def test_training_texts_leave_out_validation_and_test(tiny_model_dir, reviews_csv, tmp_path):
    cfg = tiny_cfg(tiny_model_dir, reviews_csv, tmp_path)
    texts = adapt.unlabeled_texts(cfg)
    full = load_classification(DataConfig(train_file=str(reviews_csv), max_length=32), cfg.seed)
    run = load_classification(cfg.data, cfg.seed)
    assert len(run.train) == 12
    assert sorted(texts) == sorted(full.train.texts)  # all training texts, not only the 12 labeled ones
    assert not set(texts) & (set(run.validation.texts) | set(run.test.texts))


def test_text_file_and_max_samples(tiny_model_dir, reviews_csv, tmp_path):
    lines = [f"the movie number {i} was good" for i in range(30)]
    (tmp_path / "unlabeled.txt").write_text("\n".join(lines) + "\n\n")
    cfg = tiny_cfg(tiny_model_dir, reviews_csv, tmp_path)
    cfg.pretrain.text_file, cfg.pretrain.max_samples = str(tmp_path / "unlabeled.txt"), 10
    sample = adapt.unlabeled_texts(cfg)
    assert len(sample) == 10 and set(sample) <= set(lines)
    assert adapt.unlabeled_texts(cfg) == sample  # seeded
    cfg.pretrain.text_file, cfg.pretrain.max_samples = str(reviews_csv), None
    assert len(adapt.unlabeled_texts(cfg)) == 60  # a table's text column
    cfg.pretrain.text_column = "review"
    with pytest.raises(DataError, match="no column 'review'"):
        adapt.unlabeled_texts(cfg)


def test_bad_pretrain_options_are_refused():
    with pytest.raises(ConfigError, match="pretrain.mlm_probability"):
        validate(RunConfig(pretrain=PretrainConfig(mlm_probability=1.0)))


def test_adaptation_changes_the_encoder_and_the_fine_tune_starts_from_it(tiny_model_dir, reviews_csv, tmp_path):
    # strategy=frozen never changes the encoder: the saved model's encoder is the one fine-tuning started from
    cfg = tiny_cfg(tiny_model_dir, reviews_csv, tmp_path / "run", strategy="frozen")
    results = load_recipe("sentiment").run(cfg)
    adapted = tmp_path / "run" / "adapted-encoder"
    record = json.loads((adapted / "adaptation.json").read_text())
    assert record["settings"]["model"] == tiny_model_dir and record["settings"]["texts"] == 48
    assert record["after"]["loss"] < record["before"]["loss"]  # it learned to fill in masked tokens
    assert record["after"]["masked_tokens"] == record["before"]["masked_tokens"] > 0  # the same masked positions

    original, adapted_weights = weights(Path(tiny_model_dir)), weights(adapted)
    assert set(adapted_weights) == set(original)  # a plain encoder checkpoint, pooler included
    changed = [name for name in original if not torch.equal(original[name], adapted_weights[name])]
    assert any(name.startswith("encoder.layer.") for name in changed)
    assert not any(name.startswith("pooler.") for name in changed)  # kept from the original (MLM has no pooler)

    fine_tuned = encoder_of(weights(results.model_dir))
    for name, tensor in adapted_weights.items():
        assert torch.equal(fine_tuned[name], tensor), name
    assert (tmp_path / "run" / "config.yaml").read_text().count("mlm: true") == 1  # reruns adapt again


def test_same_settings_reuse_the_adapted_encoder(tiny_model_dir, reviews_csv, tmp_path, caplog):
    cfg = tiny_cfg(tiny_model_dir, reviews_csv, tmp_path)
    cfg.pretrain.epochs = 1
    first = adapt.adapt_encoder(cfg, tmp_path / "adapted")
    stamp = (tmp_path / "adapted" / "model.safetensors").stat().st_mtime_ns
    again = adapt.adapt_encoder(cfg, tmp_path / "adapted")
    assert again == first and (tmp_path / "adapted" / "model.safetensors").stat().st_mtime_ns == stamp
    cfg.pretrain.mlm_probability = 0.3  # other settings: adapted anew
    third = adapt.adapt_encoder(cfg, tmp_path / "adapted")
    assert third["settings"]["pretrain"]["mlm_probability"] == 0.3 and third != first


def test_scoring_masked_positions_only_gives_the_model_s_own_loss(tiny_model_dir):
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    from nlptransfer.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
    split = adapt.encode_texts(["the movie was good", "i hate this phone today and the news"], tokenizer, 32)
    batch = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5, seed=0)([split[0], split[1]])
    with torch.no_grad():
        full = model(**batch)
        masked_only = adapt.MaskedPositionsOnly(model)(**batch)
    targets = batch["labels"] != -100
    assert masked_only.loss == pytest.approx(float(full.loss), rel=1e-5)
    assert torch.allclose(masked_only.logits, full.logits[targets], atol=1e-5)


def test_training_texts_leave_out_copies_of_test_texts_that_differ_in_case_or_spacing(tiny_model_dir, tmp_path):
    # held-out texts are matched as the splits' dedup matches them (case and white space ignored): with
    # dedup_across_splits=false the test split keeps "great movie", and its copy "  GREAT   movie " in
    # the training file must not reach masked-language-model pretraining either
    def table(name: str, texts: list[str]) -> str:
        rows = "".join(f"{text},{'pos' if i % 2 else 'neg'}\n" for i, text in enumerate(texts))
        (tmp_path / name).write_text("text,label\n" + rows)
        return str(tmp_path / name)

    data = DataConfig(train_file=table("train.csv", [f"train text {i}" for i in range(9)] + ["  GREAT   movie "]),
                      validation_file=table("validation.csv", ["a fine day", "a bad day"]),
                      test_file=table("test.csv", ["great movie", "awful film"]), dedup_across_splits=False,
                      max_length=32)
    cfg = dataclasses.replace(tiny_cfg(tiny_model_dir, tmp_path / "unused.csv", tmp_path / "run"), data=data)
    texts = adapt.unlabeled_texts(cfg)
    assert len(texts) == 9 and not any("GREAT" in text for text in texts)
