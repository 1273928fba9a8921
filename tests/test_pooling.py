"""head.pooling: a head on the pooled sentence embedding for any strategy, how the checkpoint's own pooling is
read, and how such a model is saved and loaded (nlptransfer, transformers with its code)."""

from __future__ import annotations

import json

import pytest
import torch

from nlptransfer import pooling
from nlptransfer.config import RunConfig
from nlptransfer.errors import ConfigError
from nlptransfer.modeling_nlptransfer import PooledForSequenceClassification, pool
from nlptransfer.pipeline import run


def sentence_transformers_folder(folder, mode_flag: str, normalize: bool):
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, mode_flag: True}))
    return str(folder)


def test_the_checkpoints_own_pooling_is_read(tmp_path):
    mean = sentence_transformers_folder(tmp_path / "mean", "pooling_mode_mean_tokens", normalize=True)
    cls = sentence_transformers_folder(tmp_path / "cls", "pooling_mode_cls_token", normalize=False)
    assert pooling.checkpoint_pooling(mean) == {"mode": "mean", "normalize": True}
    assert pooling.resolve("auto", None, cls) == {"mode": "cls", "normalize": False}
    assert pooling.resolve("auto", None, str(tmp_path)) == {"mode": "mean", "normalize": False}  # declares none
    assert pooling.resolve("max", None, mean) == {"mode": "max", "normalize": True}
    assert pooling.resolve("auto", False, mean) == {"mode": "mean", "normalize": False}
    assert pooling.resolve("model", None, mean) is None
    with pytest.raises(ConfigError, match="head.normalize=true normalizes a pooled embedding"):
        pooling.resolve("model", True, mean)


def test_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize("strategy", ["frozen", "full", "lora"])
def test_every_strategy_trains_a_pooled_head_that_loads_back(strategy, tiny_model_dir, reviews_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from nlptransfer import load_model

    results = run(RunConfig(model=tiny_model_dir, strategy=strategy, output_dir=str(tmp_path / "run"),
                            head={"pooling": "mean"}, data={"train_file": str(reviews_csv), "max_length": 32},
                            train={"epochs": 1, "batch_size": 8, "max_steps": 3}))
    assert isinstance(results.model, PooledForSequenceClassification) or strategy == "lora"
    texts = [row["text"] for row in results.predictions[:6]]
    ours = [row["label"] for row in load_model(results.output_dir).predict(texts)]
    assert ours == [row["predicted"] for row in results.predictions[:6]]
    reloaded = AutoModelForSequenceClassification.from_pretrained(results.model_dir, trust_remote_code=True)
    assert type(reloaded).__name__ == "PooledForSequenceClassification"
    assert reloaded.pooling_mode == "mean"


def test_a_pooled_head_refuses_token_classification(tiny_model_dir):
    from nlptransfer.config import validate

    with pytest.raises(ConfigError, match="head.pooling=mean pools a text into one embedding"):
        validate(RunConfig(model=tiny_model_dir, task="token-classification", head={"pooling": "mean"}))
    with pytest.raises(ConfigError, match="strategy=contrastive works on sentence embeddings"):
        validate(RunConfig(model=tiny_model_dir, task="token-classification", strategy="contrastive"))
    with pytest.raises(ConfigError, match="head.pooling must be one of"):
        validate(RunConfig(model=tiny_model_dir, head={"pooling": "avg"}))
    with pytest.raises(ConfigError, match="strategy=zeroshot needs a pooled sentence embedding"):
        validate(RunConfig(model=tiny_model_dir, strategy="zeroshot", head={"pooling": "model"}))
