"""Active learning for NER (task=token-classification), through files: the pool's sentences, their words scored one by
one (the first sub-word's tag probabilities), the batch exported as `to_label.conll` and read back.

A sentence is stored under its words joined by spaces, its label the list of its IOB2 tags. `to_label.conll` has a
line per word, `word<TAB>suggested tag<TAB>_`, and a blank line between sentences: the person replaces each `_` by the
tag (or `=` to take the suggestion); a sentence with a `_` left is not labeled yet. The terminal (`TagEdits`) and the
labeling page show a sentence's words with their suggested tags and store its tags in the same labels.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..outputs import files
from .state import ActiveFolder

TO_LABEL = "to_label.conll"
BLANK, SAME = "_", "="


def read_sentences(path: str | Path, what: str, tags: list[str] | None = None) -> dict[str, list | None]:
    """Sentence (words joined) -> its IOB2 tags (None for a pool file's): a CoNLL file (words and tags), or a .txt
    file of one sentence a line (words split at spaces)."""
    from ..data.conll import read_conll, to_iob2

    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"{what}={path} is not a file; give a CoNLL or .txt file of sentences")
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
        found = {" ".join(words): None for words in lines if words}
    else:
        found = {" ".join(sentence.words): to_iob2(sentence.tags) for sentence in read_conll(path)}
    if not found:
        raise DataError(f"{what}={path} holds no sentence; give a CoNLL file or a .txt file of sentences")
    for sentence, given in found.items():
        unknown = [tag for tag in given or [] if tags is not None and tag not in tags]
        if unknown:
            raise DataError(f"{what}={path}: tag '{unknown[0]}' of {sentence[:40]!r} is not one of the labels "
                            f"({', '.join(tags)}); add its entity type to labels=")
    return found


def word_probabilities(scorer, sentences: list[str], batch_size: int = 32, max_length: int = 128):
    """Per sentence a (words, tags) array of each word's tag probabilities (its first sub-word's; words past the
    length limit are left out), and the sentences' mean-pooled embeddings; in the sentences' order (the batches run in
    length order)."""
    import numpy as np
    import torch

    from ..modeling_nlptransfer import pool

    caught: list = []
    hook = scorer.model.base_model.register_forward_hook(lambda module, args, output: caught.append(output[0]))
    rows: list = [None] * len(sentences)
    embeddings = None
    try:
        scorer.model.eval()
        with torch.inference_mode():
            words = [sentence.split(" ") for sentence in sentences]
            for positions, batch in scorer.batches(words, batch_size, max_length, split_words=True):
                caught.clear()
                probabilities = torch.softmax(scorer.model(**batch).logits.float(), -1)
                pooled = pool(caught[0], batch["attention_mask"], "mean").float().cpu().numpy()
                if embeddings is None:
                    embeddings = np.zeros((len(sentences), pooled.shape[1]), dtype=np.float32)
                embeddings[positions] = pooled
                for i, position in enumerate(positions):
                    rows[position] = probabilities[i, first_subwords(batch.word_ids(i))].cpu().numpy()
    finally:
        hook.remove()
    return rows, np.zeros((0, 1), dtype=np.float32) if embeddings is None else embeddings


def first_subwords(word_ids: list[int | None]) -> list[int]:
    """The positions of each word's first sub-word."""
    firsts, seen = [], set()
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            firsts.append(position)
    return firsts


def write_to_label(folder: ActiveFolder) -> Path:
    """to_label.conll: the batch's unlabeled sentences, a word a line with its suggested tag and `_` to fill."""
    blocks = []
    for item in folder.unlabeled_in_batch():
        words = item["text"].split(" ")
        suggested = item["suggestion"] or [BLANK] * len(words)
        suggested = suggested + ["O"] * (len(words) - len(suggested))  # words past the length limit
        blocks.append("\n".join(f"{word}\t{tag}\t{BLANK}" for word, tag in zip(words, suggested)))
    files.write_text(folder.path / TO_LABEL, "\n\n".join(blocks) + "\n" if blocks else "")
    return folder.path / TO_LABEL


def read_to_label(folder: ActiveFolder, tags: list[str]) -> dict[str, list[str]]:
    """Sentence -> tags of to_label.conll's sentences whose every word has its tag, every tag checked first (a bad
    one is named by line); {} without the file."""
    path = folder.path / TO_LABEL
    if not path.exists():
        return {}
    given: dict[str, list[str]] = {}
    words: list[str] = []
    chosen: list[str | None] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate([*lines, ""], 1):
        fields = [field.strip() for field in line.split("\t")] if "\t" in line else line.split()
        if not fields:
            if words and None not in chosen:
                given[" ".join(words)] = chosen
            words, chosen = [], []
            continue
        if len(fields) != 3:
            raise DataError(f"{path}:{number} has {len(fields)} columns, not 3 (word, suggestion, tag); keep the "
                            "columns, or delete the file to get the batch again (labels given before are kept)")
        word, suggestion, tag = fields
        tag = suggestion if tag == SAME else tag
        if tag != BLANK and tag not in tags:
            raise DataError(f"{path}:{number}: tag '{tag}' is not one of {', '.join(tags)}; fix it and rerun (nothing "
                            "was added; every label given before is kept)")
        words.append(word)
        chosen.append(None if tag == BLANK else tag)
    return given


def entity_types(tags: list[str]) -> list[str]:
    """The entity types of IOB2 tags, in order (`B-person`, `I-person`, `B-loc` -> person, loc)."""
    return list(dict.fromkeys(tag[2:] for tag in tags if tag != "O"))


def span_tags(kind: str, length: int) -> list[str]:
    """A span of `length` words tagged `kind`: B- on the first, I- on the rest (`O` for each when kind is O)."""
    return ["O"] * length if kind == "O" else [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)


def check_tags(sentence: str, tags, label_names: list[str], where: str) -> list[str]:
    """A sentence's tags as given (the page), checked: a tag per word, each one of the labels."""
    words = sentence.split(" ")
    if not isinstance(tags, list) or len(tags) != len(words):
        raise DataError(f"{where}: {sentence[:40]!r} has {len(words)} words; give one tag for each")
    unknown = [tag for tag in tags if tag not in label_names]
    if unknown:
        raise DataError(f"{where}: tag '{unknown[0]}' is not one of {', '.join(label_names)}")
    return tags


class TagEdits:
    """NER in the terminal (`labeling.label_in_terminal`'s keys): a sentence's words numbered with the model's
    suggested tags; Enter takes the tags shown, `3 B-PER` or `3-4 PER` tags words (a span: B- then I-), `o 3` sets O."""

    def __init__(self, label_names: list[str]) -> None:
        self.label_names = label_names
        self.kinds = {kind.lower(): kind for kind in entity_types(label_names)}
        self.tags: dict[str, list[str]] = {}  # the tags shown, per sentence, edits included

    def help(self) -> str:
        kind = next(iter(self.kinds.values()), "TYPE")
        return (f"  enter=take the tags shown  3 {kind} or 3-4 {kind}=tag words "
                f"(types: {', '.join(self.kinds.values())}; B-/I- tags too)  o 3=O  s=skip  u=undo  q=quit")

    def current(self, item: dict) -> list[str]:
        if item["text"] not in self.tags:
            words = item["text"].split(" ")
            suggested = list(item["suggestion"] or [])[:len(words)]
            self.tags[item["text"]] = suggested + ["O"] * (len(words) - len(suggested))
        return self.tags[item["text"]]

    def show(self, item: dict) -> str:
        words, tags = item["text"].split(" "), self.current(item)
        width = max(len(word) for word in words)
        lines = [f"  {i:>3} {word:<{width}}  {tag}" for i, (word, tag) in enumerate(zip(words, tags), 1)]
        said = "the model's suggestions and your edits" if item["suggestion"] is not None else \
            "no suggestion yet: every word O"
        return f"{item['text']}\n  ({said})\n" + "\n".join(lines)

    def answer(self, item: dict, answer: str) -> tuple[object, str]:
        tags = self.current(item)
        if answer == "":
            return list(tags), ""
        parts = answer.split()
        if len(parts) == 2 and parts[0].lower() == "o":
            parts = [parts[1], "O"]
        span = self.span(parts[0], len(tags)) if len(parts) == 2 else None
        if span is None:
            return None, f"  not an edit: {answer!r}\n{self.help()}"
        first, last = span
        tag = {name.lower(): name for name in self.label_names}.get(parts[1].lower())
        kind = "O" if parts[1].upper() == "O" else self.kinds.get(parts[1].lower())
        if tag is not None and tag != "O":  # a tag as written: B-PER (then I-PER), or I-PER
            tags[first:last + 1] = [tag] + [f"I-{tag[2:]}"] * (last - first)
        elif kind is not None:
            tags[first:last + 1] = span_tags(kind, last - first + 1)
        else:
            return None, f"  '{parts[1]}' is not an entity type or tag ({', '.join(self.kinds.values())})"
        return None, ""

    @staticmethod
    def span(numbers: str, length: int) -> tuple[int, int] | None:
        """`3` or `3-4` (1-based, within the sentence) as 0-based (first, last); None when it is not one."""
        ends = numbers.split("-")
        if len(ends) > 2 or not all(end.isdigit() for end in ends):
            return None
        first, last = int(ends[0]), int(ends[-1])
        return (first - 1, last - 1) if 1 <= first <= last <= length else None
