"""The pool's encoder outputs cached for a frozen encoder (`active/pool_cache.py`): a later round runs only its head
over the cached features, with the scores a full pass gives; another pool, encoder or strategy never reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlptransfer.active import pool_cache
from nlptransfer.active.loop import ActiveLoop
from nlptransfer.active.options import ActiveOptions
from nlptransfer.active.scoring import Scorer
from nlptransfer.active.state import ActiveFolder

TEXTS = [f"a text about thing {i}" + " and more" * (9 - i) if i % 2 else f"another one {i} here" for i in range(10)]
"""Of several lengths: the pool is scored in length order, the cache kept in the pool's."""
LABELS = ["neg", "neu", "pos"]


def classifier(model_dir: str, seed: int, pooled: bool = False) -> tuple[Scorer, list]:
    """A tiny BERT classifier (its own head, or nlptransfer's mean-pooled one) over the same encoder, its head drawn
    with `seed` (a round's retrained head), and the list its encoder's forward calls are counted in."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from nlptransfer.modeling_nlptransfer import PooledForSequenceClassification

    if pooled:
        config = AutoConfig.from_pretrained(model_dir, num_labels=3)
        config.pooling = {"mode": "mean"}
        model = PooledForSequenceClassification(config)
        model.base_model.load_state_dict(AutoModel.from_pretrained(model_dir).state_dict())
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    torch.manual_seed(seed)
    (model.score if pooled else model.classifier).reset_parameters()
    calls: list = []
    model.base_model.register_forward_hook(lambda *args: calls.append(1))
    return Scorer(model, AutoTokenizer.from_pretrained(model_dir), LABELS), calls


@pytest.fixture
def loop(tmp_path):
    folder = ActiveFolder(tmp_path / "al").open()
    yield ActiveLoop(folder, TEXTS, LABELS, ActiveOptions(strategy="frozen", score_batch_size=4))
    folder.close()


@pytest.mark.parametrize("pooled", [False, True], ids=["own-head", "pooled-head"])
def test_a_later_round_runs_only_the_head_with_the_full_pass_scores(loop, tiny_model_dir, pooled):
    first, first_calls = classifier(tiny_model_dir, 1, pooled)
    probabilities, embeddings, _ = loop.score_pool(first, TEXTS, 1)
    assert len(first_calls) == 3 and (loop.folder.path / pool_cache.CACHE).is_file()  # 10 texts, 4 a batch
    second, calls = classifier(tiny_model_dir, 2, pooled)
    cached, cached_embeddings, _ = loop.score_pool(second, TEXTS, 2)
    assert calls == []  # the encoder did not run over the pool again
    full, full_embeddings = second.score(TEXTS, 4, 128)
    assert np.allclose(cached, full, atol=1e-6) and not np.allclose(cached, probabilities, atol=1e-3)
    assert np.array_equal(cached_embeddings, embeddings) and np.allclose(cached_embeddings, full_embeddings)


def test_another_pool_or_encoder_never_reads_the_cache(loop, tiny_model_dir):
    first, _ = classifier(tiny_model_dir, 1)
    loop.score_pool(first, TEXTS, 1)
    second, calls = classifier(tiny_model_dir, 2)
    loop.score_pool(second, TEXTS[:-1] + ["a new text"], 2)  # the pool changed: a full pass (and a new cache)
    loop.score_pool(second, TEXTS, 3)
    assert len(calls) == 6
    loop.score_pool(second, TEXTS, 4)  # the same pool and encoder again: the cache
    assert len(calls) == 6
    with torch.no_grad():
        second.model.base_model.embeddings.word_embeddings.weight[5] += 0.5  # the encoder changed
    changed, _, _ = loop.score_pool(second, TEXTS, 5)
    assert len(calls) == 9 and np.allclose(changed, second.score(TEXTS, 4, 128)[0], atol=1e-6)
    full = ActiveLoop(loop.folder, TEXTS, LABELS, ActiveOptions(strategy="full", score_batch_size=4))
    calls.clear()
    full.score_pool(second, TEXTS, 6)  # an encoder that trains: scored in full every round
    assert len(calls) == 3
