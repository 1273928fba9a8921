"""Words and tags to sub-token windows and back: alignment, windows with stride, word-level predictions.

Sentences come as lists of words (tokenized with `is_split_into_words`, so WordPiece and
byte-level BPE with its prefix space see the same words). A word's label sits on its first
sub-token; the others get -100 and are ignored by the loss, unless `label_all_subtokens`.
A sentence longer than the model's limit is cut into windows of whole words that overlap by
about `stride` tokens; each word is labeled and predicted in exactly one window (the one where
it has the most context), so no word is lost and none counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase
from transformers.modeling_outputs import TokenClassifierOutput

from . import batches
from .batches import EncodedSplit
from .loop import predict

IGNORED = -100  # the label the loss skips


@dataclass
class Window:
    sentence: int
    """Index of the sentence in its split."""
    word_starts: list[tuple[int, int]]
    """(word index in the sentence, position of its first sub-token) for the words this window predicts."""


class EncodedWords(EncodedSplit):
    """Tokenized windows (features with `labels` per sub-token) and the words each window predicts."""

    def __init__(self, features: list[dict], windows: list[Window], sentence_lengths: list[int], max_length: int = 0):
        super().__init__(features)
        self.windows = windows
        self.sentence_lengths = sentence_lengths
        self.max_length = max_length
        """The window length in tokens the split was encoded with (predictions pad to it)."""


def _fill(counts: list[int], start: int, budget: int) -> int:
    """The end of the longest run of whole words from `start` within `budget` tokens (at least one word)."""
    end, used = start, 0
    while end < len(counts) and used + counts[end] <= budget:
        used, end = used + counts[end], end + 1
    return max(end, start + 1)


def plan_windows(counts: list[int], budget: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Cut a sentence into windows of whole words: (start, end, own_start, own_end) word ranges.

    `counts` are the sub-tokens per word. A window holds as many words as fit in `budget`
    tokens (at least one; a longer word is truncated after its first sub-token). The next
    window starts so that at most `stride` tokens of the previous one are repeated as context;
    the words in the overlap are owned half by each window.
    """
    windows, start, own_start = [], 0, 0
    while True:
        end = _fill(counts, start, budget)
        if end <= own_start:  # the context left no room for the first word to predict: drop it
            start = own_start
            end = _fill(counts, start, budget)
        if end >= len(counts):
            windows.append((start, len(counts), own_start, len(counts)))
            return windows
        next_start, overlap = end, 0
        while next_start - 1 > own_start and overlap + counts[next_start - 1] <= stride:
            next_start, overlap = next_start - 1, overlap + counts[next_start - 1]
        middle = (next_start + end) // 2
        windows.append((start, end, own_start, middle))
        start, own_start = next_start, middle


def subtoken_counts(sentences: list[list[str]], tokenizer: PreTrainedTokenizerBase) -> tuple[list, list]:
    """The sentences, with words that tokenize to nothing (control characters) replaced by the unknown
    token, and the number of sub-tokens of every word."""
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    fixed, counts = [], []
    for i, words in enumerate(sentences):
        per_word = np.bincount([w for w in encoded.word_ids(i) if w is not None], minlength=len(words)).tolist()
        fixed.append([word if n else (tokenizer.unk_token or "?") for word, n in zip(words, per_word)])
        counts.append([max(n, 1) for n in per_word])
    return fixed, counts


def window_labels(
    word_ids: list[int | None], start: int, owned: range, tag_ids: list[int], continuation_ids: list[int] | None
) -> tuple[list[int], list[tuple[int, int]]]:
    """Labels of one window's sub-tokens and the first-sub-token position of each word it owns.

    `continuation_ids` (label_all_subtokens) label the later sub-tokens of a word: I- for B-.
    """
    labels, word_starts, previous = [], [], None
    for position, word in enumerate(word_ids):
        label = IGNORED
        if word is not None and start + word in owned:
            if word != previous:
                label = tag_ids[start + word]
                word_starts.append((start + word, position))
            elif continuation_ids is not None:
                label = continuation_ids[start + word]
        labels.append(label)
        previous = word
    return labels, word_starts


def encode_words(
    sentences: list[list[str]],
    tags: list[list[str]],
    tokenizer: PreTrainedTokenizerBase,
    label_names: list[str],
    max_length: int,
    stride: int,
    label_all_subtokens: bool = False,
) -> EncodedWords:
    """Tokenize tagged sentences into windows of at most `max_length` tokens with aligned labels."""
    label2id = {name: i for i, name in enumerate(label_names)}
    continuation = {name: label2id.get(f"I-{name[2:]}", i) if name.startswith("B-") else i
                    for name, i in label2id.items()}
    sentences, counts = subtoken_counts(sentences, tokenizer)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    plans = [(i, plan) for i, sentence_counts in enumerate(counts)
             for plan in plan_windows(sentence_counts, budget, stride)]
    encoded = tokenizer([sentences[i][start:end] for i, (start, end, _, _) in plans],
                        is_split_into_words=True, truncation=True, max_length=max_length)
    keys = list(encoded.keys())
    features, windows = [], []
    for index, (sentence, (start, _, own_start, own_end)) in enumerate(plans):
        tag_ids = [label2id[tag] for tag in tags[sentence]]
        labels, word_starts = window_labels(
            encoded.word_ids(index), start, range(own_start, own_end), tag_ids,
            [continuation[tag] for tag in tags[sentence]] if label_all_subtokens else None,
        )
        features.append({key: encoded[key][index] for key in keys} | {"labels": labels, "example_index": index})
        windows.append(Window(sentence, word_starts))
    return EncodedWords(features, windows, [len(words) for words in sentences], max_length)


class PaddedLogits(nn.Module):
    """A token classifier whose logits are padded to `length` positions.

    `train.predict` concatenates the batches' logits, which needs one sequence length for all.
    """

    def __init__(self, model: nn.Module, length: int) -> None:
        super().__init__()
        self.model, self.length = model, length

    def forward(self, **inputs) -> TokenClassifierOutput:
        logits = self.model(**inputs).logits
        return TokenClassifierOutput(logits=F.pad(logits, (0, 0, 0, self.length - logits.shape[1])))


def word_predictions(logits: np.ndarray, encoded: EncodedWords) -> list[list[int]]:
    """Per sentence, the predicted label id of every word: the argmax at its first sub-token."""
    predicted = [[IGNORED] * length for length in encoded.sentence_lengths]
    for window, window_logits in zip(encoded.windows, logits):
        for word, position in window.word_starts:
            predicted[window.sentence][word] = int(window_logits[position].argmax())
    return predicted


def predict_words(
    model: nn.Module, loader: DataLoader, encoded: EncodedWords, max_length: int, accelerator: Accelerator,
    desc: str = "evaluating",
) -> list[list[int]]:
    """Run a token classifier over an encoded split; the predicted label ids of its words."""
    logits = predict(PaddedLogits(model, max_length), loader, accelerator, desc=desc)
    return word_predictions(logits, encoded)


def train_loader(split: EncodedWords, tokenizer: PreTrainedTokenizerBase, batch_size: int, seed: int,
                 group_by_length: bool) -> DataLoader:
    """Length-grouped training batches of windows; labels are padded with -100."""
    return batches.train_loader(split, tokenizer, batch_size, seed, group_by_length,
                                collate_fn=DataCollatorForTokenClassification(tokenizer))


def eval_loader(split: EncodedWords, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> DataLoader:
    """Evaluation batches of windows, longest first; labels are padded with -100."""
    return batches.eval_loader(split, tokenizer, batch_size, collate_fn=DataCollatorForTokenClassification(tokenizer))
