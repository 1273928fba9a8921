"""nlptransfer/engine/cache.py: keys, hits, corrupted entries and atomic writes of the feature cache."""

from __future__ import annotations

import pytest
import torch

from nlptransfer.engine import cache
from nlptransfer.engine.batches import EncodedSplit


def token_split(*texts_ids: list[int], labels: tuple[int, ...] | None = None) -> EncodedSplit:
    labels = labels or tuple(range(len(texts_ids)))
    return EncodedSplit([{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label, "example_index": i}
                         for i, (ids, label) in enumerate(zip(texts_ids, labels))])


def feature_split(rows: int = 3, width: int = 4) -> EncodedSplit:
    """Rows shaped like `features.extract` output (first-token hidden state, pooler, label, index)."""
    generator = torch.Generator().manual_seed(0)
    return EncodedSplit([
        {"encoder_hidden": torch.randn(1, width, generator=generator),
         "encoder_pooled": torch.randn(width, generator=generator),
         "labels": torch.tensor(i % 2), "example_index": torch.tensor(i)}
        for i in range(rows)
    ])


class Counter:
    """A `compute` callable that counts its calls."""

    def __init__(self, result: EncodedSplit) -> None:
        self.result, self.calls = result, 0

    def __call__(self) -> EncodedSplit:
        self.calls += 1
        return self.result


@pytest.fixture
def key(tiny_model_dir):
    return cache.feature_key(tiny_model_dir, token_split([2, 7, 3], [2, 9, 9, 3]), 32, "first_token")


def assert_same_rows(left: EncodedSplit, right: EncodedSplit) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(torch.as_tensor(a[name]), torch.as_tensor(b[name])), name


def test_a_hit_skips_compute_and_returns_the_same_features(key, tmp_path):
    compute = Counter(feature_split())
    first = cache.cached(key, compute, tmp_path)
    second = cache.cached(key, compute, tmp_path)
    assert compute.calls == 1
    assert_same_rows(second, first)
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_token_features_of_varying_length_round_trip(key, tmp_path):
    rows = EncodedSplit([{"encoder_hidden": torch.randn(n, 4), "labels": torch.arange(n), "example_index": i}
                         for i, n in enumerate((3, 1, 5))])
    cache.cached(key, Counter(rows), tmp_path)
    assert_same_rows(cache.cached(key, Counter(EncodedSplit([])), tmp_path), rows)


@pytest.mark.parametrize("change", ["token ids", "labels", "max_length", "kind", "model", "extra"])
def test_the_key_changes_with_what_the_features_depend_on(change, tiny_model_dir, tmp_path):
    split, max_length, kind, model, extra = token_split([2, 7, 3], [2, 9, 3]), 32, "first_token", tiny_model_dir, {}
    before = cache.feature_key(model, split, max_length, kind, **extra)
    if change == "token ids":
        split = token_split([2, 7, 3], [2, 8, 3])
    elif change == "labels":
        split = token_split([2, 7, 3], [2, 9, 3], labels=(1, 1))
    elif change == "max_length":
        max_length = 64
    elif change == "kind":
        kind = "tokens"
    elif change == "model":
        model = str(tmp_path)
        (tmp_path / "config.json").write_text("{}")
    else:
        extra = {"precision": "bf16"}
    after = cache.feature_key(model, split, max_length, kind, **extra)
    assert cache.entry_path(before, tmp_path) != cache.entry_path(after, tmp_path)


def test_rewritten_weights_change_the_key(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"1234")
    before = cache.checkpoint_fingerprint(str(tmp_path))
    weights.write_bytes(b"123456")
    assert cache.checkpoint_fingerprint(str(tmp_path)) != before


def test_the_same_inputs_give_the_same_key(tiny_model_dir):
    def key():
        return cache.feature_key(tiny_model_dir, token_split([2, 7, 3]), 32, "first_token")

    assert cache.key_text(key()) == cache.key_text(key())


@pytest.mark.parametrize("damage", [b"", b"not a torch file", "truncate"])
def test_a_corrupted_entry_is_recomputed_not_trusted(damage, key, tmp_path):
    cache.cached(key, Counter(feature_split()), tmp_path)
    path = cache.entry_path(key, tmp_path)
    path.write_bytes(path.read_bytes()[:100] if damage == "truncate" else damage)
    fresh = feature_split(rows=2)
    compute = Counter(fresh)
    assert_same_rows(cache.cached(key, compute, tmp_path), fresh)
    assert compute.calls == 1
    assert_same_rows(cache.load(path, key), fresh)  # the bad entry was replaced


def test_an_entry_of_another_key_is_not_trusted(key, tmp_path):
    other = key | {"max_length": 64}
    cache.save(cache.entry_path(key, tmp_path), other, feature_split())
    compute = Counter(feature_split(rows=2))
    assert len(cache.cached(key, compute, tmp_path)) == 2
    assert compute.calls == 1


def test_a_crash_while_writing_leaves_no_entry_and_no_temporary_file(key, tmp_path, monkeypatch):
    def crash(obj, file):
        file.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.cached(key, Counter(feature_split()), tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    compute = Counter(feature_split())
    cache.cached(key, compute, tmp_path)
    assert compute.calls == 1


def test_an_unwritable_folder_still_returns_the_features(key, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    features = feature_split()
    assert cache.cached(key, Counter(features), blocker / "cache") is features


def test_the_folder_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.cache_folder() == tmp_path / "env"
    assert cache.cache_folder(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(cache.CACHE_ENV)
    assert cache.cache_folder() == cache.DEFAULT_FOLDER.expanduser()


def test_off_disables_the_cache(key, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    compute = Counter(feature_split())
    cache.cached(key, compute)
    cache.cached(key, compute)
    assert compute.calls == 2
