"""The exact speed-ups of nlptransfer/engine/speed.py: same outputs and gradients, honest dropout, undone on request."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from nlptransfer.engine import speed

SIZES = {"vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "num_labels": 3}


def tiny(model_class, config_class, **extra) -> nn.Module:
    torch.manual_seed(0)
    return model_class(config_class(**SIZES, **extra)).eval()


FIRST_TOKEN_MODELS = {
    "bert": lambda: tiny(BertForSequenceClassification, BertConfig),
    "roberta": lambda: tiny(RobertaForSequenceClassification, RobertaConfig, pad_token_id=1,
                            max_position_embeddings=40),
    "electra": lambda: tiny(ElectraForSequenceClassification, ElectraConfig, embedding_size=16),
}


def batch(rows: int = 4, length: int = 11) -> dict[str, torch.Tensor]:
    """Token ids with right padding of different lengths (row 0 unpadded)."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, SIZES["vocab_size"], (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, rows):
        attention_mask[row, length - 2 * row:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.arange(rows) % SIZES["num_labels"]}


def without_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize("name", sorted(FIRST_TOKEN_MODELS))
def test_first_token_top_layer_gives_the_same_logits_and_gradients(name):
    reference = FIRST_TOKEN_MODELS[name]()
    fast = copy.deepcopy(reference)
    assert "top layer for the first token only" in speed.speed_up(fast)
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(fast(**inputs).logits, reference(**inputs).logits, atol=1e-6, rtol=1e-5)
    for model in (reference, fast):
        without_dropout(model).train()
        model(**inputs).loss.backward()
    for (parameter_name, expected), actual in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(actual.grad, expected.grad, atol=1e-6, rtol=1e-4, msg=parameter_name)


def test_the_top_layer_runs_on_one_token_per_row():
    model = FIRST_TOKEN_MODELS["bert"]()
    speed.speed_up(model)
    seen = []
    model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    model.bert.encoder.layer[0].intermediate.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    model(**batch(rows=4, length=11))
    assert seen == [torch.Size([4, 11, 64]), torch.Size([4, 1, 64])]


def test_first_token_is_not_applied_where_the_head_reads_every_token_or_the_layer_differs():
    ner = tiny(BertForTokenClassification, BertConfig)
    torch.manual_seed(0)
    distilbert = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4,
                                                                      hidden_dim=64, num_labels=3))
    for model in (ner, distilbert):
        applied = speed.speed_up(model)
        assert not any("first token" in item for item in applied)
        assert any("fast CPU dropout" in item for item in applied)  # still exact in distribution


OTHER_FAMILIES = {
    "albert": lambda: tiny(AlbertForSequenceClassification, AlbertConfig, embedding_size=16),
    "distilbert": lambda: DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=3)).eval(),
    "deberta-v2": lambda: tiny(DebertaV2ForSequenceClassification, DebertaV2Config),
}


@pytest.mark.parametrize("name", sorted(OTHER_FAMILIES))
def test_other_families_keep_their_outputs_and_train(name):
    torch.manual_seed(0)
    reference = OTHER_FAMILIES[name]()
    fast = copy.deepcopy(reference)
    applied = speed.speed_up(fast)
    assert any("fast CPU dropout" in item for item in applied)
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(fast(**inputs).logits, reference(**inputs).logits)
    fast.train()
    fast(**inputs).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fast.parameters() if p.requires_grad)


def test_lora_models_get_the_speed_ups(tiny_model_dir):
    from nlptransfer import models, tasks
    from nlptransfer.strategies.lora import LoraSettings, add_lora

    model = add_lora(models.load_model(tiny_model_dir, tasks.get("classification"), ["a", "b"]), LoraSettings(),
                     "SEQ_CLS")
    applied = speed.speed_up(model)
    assert "top layer for the first token only" in applied
    lora_dropouts = [m for name, m in model.named_modules() if "lora_dropout" in name and isinstance(m, nn.Dropout)]
    assert lora_dropouts and all(isinstance(m, speed.FastDropout) for m in lora_dropouts)


def test_keep_mask_keeps_each_element_with_probability_one_minus_p():
    torch.manual_seed(0)
    for p in (0.1, 0.5):
        mask = speed.keep_mask(torch.Size([1000, 1000]), p)
        assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
        assert abs(mask.float().mean().item() - (1 - p)) < 0.002  # 6 standard deviations at 1e6 draws
        neighbours = torch.corrcoef(torch.stack([mask.flatten()[:-1].float(), mask.flatten()[1:].float()]))[0, 1]
        assert abs(neighbours.item()) < 0.005


def test_fast_dropout_is_seeded_scaled_and_off_in_evaluation():
    dropout = speed.FastDropout(0.25)
    x = torch.ones(64, 100)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    torch.testing.assert_close(first.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert abs(first.mean().item() - 1.0) < 0.05  # inverted dropout keeps the expectation
    assert torch.equal(dropout.eval()(x), x)


def test_dropout_attention_is_softmax_attention_with_the_dropout_mask(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 4, 5, 8, generator=generator) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False
    module = nn.Module()
    module.is_causal = False
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=0.3)
    evaluation, _ = speed.dropout_attention(module, query, key, value, mask, dropout=0.0, scaling=0.3)
    torch.testing.assert_close(evaluation, expected)
    monkeypatch.setattr(speed, "keep_mask", lambda shape, p: torch.ones(shape, dtype=torch.bool))
    kept_all, _ = speed.dropout_attention(module, query, key, value, mask, dropout=0.2, scaling=0.3)
    torch.testing.assert_close(kept_all, expected / 0.8)


def test_restore_and_saving_leave_a_plain_transformers_model(tmp_path):
    model = FIRST_TOKEN_MODELS["bert"]()
    reference = copy.deepcopy(model)
    speed.speed_up(model)
    model.save_pretrained(tmp_path / "saved")
    assert "nlptransfer" not in (tmp_path / "saved" / "config.json").read_text()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded.bert.encoder.layer[-1]).__name__ == "BertLayer"
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, reference(**inputs).logits)
    speed.restore(model)
    assert type(model.bert.encoder.layer[-1]) is type(reference.bert.encoder.layer[-1])
    assert all(type(m) is not speed.FastDropout for m in model.modules())
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():  # every token's final state exists again
        assert model.bert(input_ids=inputs["input_ids"]).last_hidden_state.shape[1] == 11
