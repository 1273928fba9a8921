"""From text to padded tensors: tokenization, length-grouped batching and dynamic padding.

Texts are tokenized once, up front, with the fast tokenizer's batch call. Training batches
hold texts of similar length (shuffled in chunks), so little compute goes into padding.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .data import TextSplit


class EncodedSplit(Dataset):
    """Tokenized examples: each a dict of input_ids, attention_mask, ... and `labels`."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]


def encode_split(split: TextSplit, tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedSplit:
    """Tokenize a split in one batch call; truncation keeps the first `max_length` tokens."""
    encoded = tokenizer(split.texts, split.text_pairs, truncation=True, max_length=max_length)
    keys = list(encoded.keys())
    features = [
        {key: encoded[key][i] for key in keys} | {"labels": split.labels[i], "example_index": i}
        for i in range(len(split))
    ]
    return EncodedSplit(features)


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

    def _resume(self, batches: list[list[int]]):
        skip, self.skip = self.skip, 0
        return iter(batches[skip:])

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = sorted(order[start:start + self.chunk], key=self.lengths.__getitem__, reverse=True)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return self._resume(batches)


class ShuffledBatches(LengthGroupedBatches):
    """Plain random batches (group_by_length=false), reshuffled each epoch."""

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        return self._resume([order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)])


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches, longest first: the least padding and an early out-of-memory if any."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


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
