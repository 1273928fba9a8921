"""From text to padded tensors: tokenization, length-grouped batching and dynamic padding.

Texts are tokenized once, up front, with the fast tokenizer's batch call. Training batches
hold texts of similar length (shuffled in chunks), so little compute goes into padding.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from ..data.classification import TextSplit


class EncodedSplit(Dataset):
    """Tokenized examples: each a dict of input_ids, attention_mask, ... and `labels`.

    With sliding windows a text becomes several rows; `documents[row]` is the text each row
    came from (by default row i is text i) and `over_limit` counts texts longer than the limit.
    """

    def __init__(self, features: list[dict], documents: list[int] | None = None, over_limit: int = 0):
        self.features = features
        self.documents = documents if documents is not None else list(range(len(features)))
        self.over_limit = over_limit

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]

    def digest(self) -> str:
        """A SHA-256 of every field (token ids, masks, labels) of every example, in order (the feature cache's key)."""
        digest = hashlib.sha256()
        digest.update(str(len(self)).encode())
        for row in self.features:
            for key in sorted(row):
                value = np.asarray(row[key])
                digest.update(f"{key}:{value.dtype.kind}:{value.shape}".encode())
                digest.update(value.astype(np.int64 if value.dtype.kind in "iub" else np.float64).tobytes())
        return digest.hexdigest()


def encode_split(split: TextSplit, tokenizer: PreTrainedTokenizerBase, max_length: int,
                 long_text: str = "truncate", stride: int = 0, num_labels: int | None = None) -> EncodedSplit:
    """Tokenize a split in one batch call, reading texts over `max_length` tokens as `long_text` says.

    `truncate` keeps the first tokens, `head_tail` the first quarter and the last three quarters
    of the budget (Sun et al., 2019), `sliding` every window of `max_length` tokens, consecutive
    windows sharing `stride` tokens; each window carries its text's label. With `num_labels`
    (multi-label) the labels become multi-hot float vectors.
    """
    if not len(split):  # no validation split (few-shot data); fast tokenizers fail on an empty batch
        return EncodedSplit([])
    labels = split.labels if num_labels is None else [multi_hot(row, num_labels) for row in split.labels]
    if split.text_pairs is not None:  # pairs are truncated (longest first); no overflow for pairs
        encoded = tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_length)
        documents = list(range(len(split)))
        over_limit = sum(len(ids) >= max_length for ids in encoded["input_ids"])
    else:
        texts = head_tail_texts(split.texts, tokenizer, max_length) if long_text == "head_tail" else split.texts
        encoded = tokenizer(texts, truncation=True, max_length=max_length,
                            stride=stride if long_text == "sliding" else 0, return_overflowing_tokens=True)
        documents = encoded.pop("overflow_to_sample_mapping")
        over_limit = (sum(short is not text for short, text in zip(texts, split.texts)) if long_text == "head_tail"
                      else int((np.bincount(documents, minlength=len(split)) > 1).sum()))
        if long_text != "sliding":  # each text's first window: plain truncation
            first = [row for row, doc in enumerate(documents) if row == 0 or documents[row - 1] != doc]
            encoded = {key: [encoded[key][row] for row in first] for key in encoded.keys()}
            documents = list(range(len(split)))
    keys = list(encoded.keys())
    features = [{key: encoded[key][row] for key in keys} | {"labels": labels[doc], "example_index": row}
                for row, doc in enumerate(documents)]
    return EncodedSplit(features, documents, over_limit)


def multi_hot(label_ids: list[int], num_labels: int) -> list[float]:
    row = [0.0] * num_labels
    for i in label_ids:
        row[i] = 1.0
    return row


def head_tail_texts(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[str]:
    """Texts over the limit cut to their first quarter and last three quarters of the token budget.

    Cut on character offsets, so any tokenizer works; the texts under the limit are returned as is.
    """
    budget = max_length - tokenizer.num_special_tokens_to_add()
    head = budget // 4
    tail = budget - head
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [text if len(spans) <= budget else f"{text[:spans[head - 1][1]]} {text[spans[-tail][0]:]}"
            for text, spans in zip(texts, offsets)]


def pool_windows(logits: np.ndarray, documents: list[int], how: str = "mean") -> np.ndarray:
    """One row of logits per text from the rows of its windows (`mean` or `max`); rows in text order."""
    documents = np.asarray(documents)
    if len(documents) == len(np.unique(documents)):
        return logits[np.argsort(documents, kind="stable")]
    count = int(documents.max()) + 1
    if how == "max":
        pooled = np.full((count, logits.shape[1]), -np.inf, dtype=logits.dtype)
        np.maximum.at(pooled, documents, logits)
        return pooled
    pooled = np.zeros((count, logits.shape[1]), dtype=logits.dtype)
    np.add.at(pooled, documents, logits)
    return pooled / np.bincount(documents, minlength=count)[:, None]


NUMPY_ORDER_ABOVE = 1_000_000


class LengthGroupedBatches(Sampler[list[int]]):
    """Batches of similar length in random order, different each epoch, same for a seed.

    Shuffle all examples, cut them into chunks of `chunk_batches` batches, sort each chunk by
    length and cut it into batches; then shuffle the batches. Padding drops sharply while
    each batch stays a random draw from a wide window.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, chunk_batches: int = 200):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.chunk = batch_size * chunk_batches
        self.epoch = 0
        self.skip = 0
        """Batches to leave out at the start of the next pass only (a resumed run's seen batches)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _resume(self, batches: list[np.ndarray]):
        skip, self.skip = self.skip, 0
        return (batch.tolist() for batch in batches[skip:])

    def _order(self, rng: random.Random) -> np.ndarray:
        """All indices in random order: Python's shuffle, so a seed gives the same batches as it always did; above
        `NUMPY_ORDER_ABOVE` examples numpy's permutation, seeded from `rng` (a Python shuffle of millions of indices
        takes seconds and about 36 bytes each)."""
        if len(self.lengths) > NUMPY_ORDER_ABOVE:
            return np.random.default_rng(rng.getrandbits(64)).permutation(len(self.lengths))
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        return np.asarray(order, dtype=np.int64)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        order, lengths = self._order(rng), np.asarray(self.lengths)
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = order[start:start + self.chunk]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]  # longest first, ties in shuffled order
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        # The one short batch goes last: split across processes (Accelerate's split_batches), a
        # short batch anywhere else would be dropped, and only the last one is padded.
        batches.sort(key=lambda batch: len(batch) < self.batch_size)
        return self._resume(batches)


class ShuffledBatches(LengthGroupedBatches):
    """Plain random batches (group_by_length=false), reshuffled each epoch."""

    def __iter__(self):
        order = self._order(random.Random(self.seed + self.epoch))
        return self._resume([order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)])


class FixedBatches(Sampler[list[int]]):
    """A fixed list of batches. Its `batch_size` lets Accelerate split each batch across processes."""

    def __init__(self, batches: list[list[int]], batch_size: int):
        self.batches, self.batch_size = batches, batch_size

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def sorted_batches(lengths: list[int], batch_size: int) -> FixedBatches:
    """Evaluation batches, longest first: the least padding and an early out-of-memory if any."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")  # ties keep their order
    return FixedBatches([order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)], batch_size)


def train_loader(
    split: EncodedSplit, tokenizer: PreTrainedTokenizerBase, batch_size: int, seed: int, group_by_length: bool,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """Training batches; `collate_fn` defaults to dynamic padding (token classification also pads labels)."""
    batches_cls = LengthGroupedBatches if group_by_length else ShuffledBatches
    sampler = batches_cls(split.lengths, batch_size, seed)
    return DataLoader(split, batch_sampler=sampler, collate_fn=collate_fn or DataCollatorWithPadding(tokenizer))


def eval_loader(
    split: EncodedSplit, tokenizer: PreTrainedTokenizerBase, batch_size: int, collate_fn: Callable | None = None
) -> DataLoader:
    return DataLoader(
        split,
        batch_sampler=sorted_batches(split.lengths, batch_size),
        collate_fn=collate_fn or DataCollatorWithPadding(tokenizer),
    )


def model_inputs(batch: dict) -> dict[str, torch.Tensor]:
    """The batch without bookkeeping keys the model does not take."""
    return {k: v for k, v in batch.items() if k != "example_index"}
