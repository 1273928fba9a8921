"""Tagged sentences in, three checked splits out: CoNLL, JSON/JSONL and hub readers, tag schemes, splits.

Every source becomes a list of `TaggedSentence` (words, tags and where it came from, so that an
error can point at `file:line`). The tag scheme (IOB1, IOB2 or BIOES) is detected over all splits
and every sentence is converted to IOB2, the scheme the model trains on and seqeval scores in.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import catalog
from ..errors import ConfigError, DataError
from ..options import DataConfig
from .readers import SPLIT_ALIASES, check_file, load_hub_dataset, unreadable
from .splits import SPLITS, check_distinct_columns, check_sample_keeps_labels, dedup_key, drop_repeats

logger = logging.getLogger(__name__)

TAGGED_CORPORA = ("wnut16",)
JSON_SUFFIXES = (".json", ".jsonl")
TAG = re.compile(r"^([BIESLU])-(.+)$")
SPACE = re.compile(r"\s*")
TO_IOB2_PREFIX = {"B": "B", "I": "I", "S": "B", "U": "B", "E": "I", "L": "I"}  # BILOU's L/U are BIOES's E/S


@dataclass
class TaggedSentence:
    words: list[str]
    tags: list[str]
    where: str
    """`file:line` of the sentence's first word (`dataset split[i]` for hub rows), for error messages."""


@dataclass
class TokenSplit:
    sentences: list[TaggedSentence]

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def words(self) -> list[list[str]]:
        return [s.words for s in self.sentences]

    @property
    def tags(self) -> list[list[str]]:
        return [s.tags for s in self.sentences]


@dataclass
class TokenData:
    label_names: list[str]
    """The IOB2 tags in id order: `O`, then `B-type`, `I-type` per entity type."""
    train: TokenSplit
    validation: TokenSplit
    test: TokenSplit
    source: str
    """Where the data came from, for logs and metrics.json."""
    scheme: str
    """The tag scheme found in the data (IOB1, IOB2 or BIOES); training and scoring use IOB2."""
    dropped_repeats: dict[str, int] = field(default_factory=dict)
    """Held-out sentences dropped per split because their words repeat a training (or, for validation, a test)
    sentence."""

    @property
    def entity_types(self) -> list[str]:
        return sorted({name[2:] for name in self.label_names if name != "O"})


def check_tag(tag: str, where: str) -> str:
    if tag != "O" and not TAG.match(tag):
        raise DataError(f"{where}: tag {tag!r} is not O or B-/I-/E-/S-TYPE (an IOB1, IOB2 or BIOES tag)")
    return tag


def make_sentence(words: list, tags: list, where: str) -> TaggedSentence:
    """Check one sentence read from JSON or the hub: non-empty, words and tags paired one to one."""
    if not isinstance(words, list) or not isinstance(tags, list):
        raise DataError(f"{where}: tokens and tags must be lists, got {type(words).__name__} and {type(tags).__name__}")
    if not words:
        raise DataError(f"{where}: empty sentence (no tokens); remove it")
    if len(words) != len(tags):
        raise DataError(f"{where}: {len(words)} tokens but {len(tags)} tags; each token needs one tag")
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise DataError(f"{where}: token {word!r} is not a non-empty string")
    return TaggedSentence(list(words), [check_tag(str(tag), where) for tag in tags], where)


def read_conll(path: str | Path, tag_column: int = -1) -> list[TaggedSentence]:
    """Read a CoNLL file: a word and its tag per line (tab- or space-separated), blank lines between sentences.

    `-DOCSTART-` lines are skipped; CRLF line endings and a UTF-8 byte order mark are tolerated.
    Every line must have as many columns as the first one.
    """
    path = Path(path)
    lines = read_text(path).split("\n")
    sentences, current, columns = [], [], 0  # current: (word, tag, line number) of the open sentence
    for number, line in enumerate(lines + [""], start=1):
        line = line.rstrip()
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                words, tags, numbers = zip(*current)
                sentences.append(TaggedSentence(list(words), list(tags), f"{path}:{numbers[0]}"))
                current = []
            continue
        fields = [field.strip() for field in line.split("\t")] if "\t" in line else line.split()
        where = f"{path}:{number}"
        columns = columns or _check_columns(fields, tag_column, where)
        if len(fields) != columns:
            raise DataError(f"{where}: expected {columns} columns like the first line, found {len(fields)}: {line!r}")
        if not fields[0]:
            raise DataError(f"{where}: empty word in the first column: {line!r}")
        current.append((fields[0], check_tag(fields[tag_column], where), number))
    if not sentences:
        raise DataError(f"{path}: no sentences found; expected 'word<TAB>tag' lines with blank lines between sentences")
    return sentences


def read_text(path: Path) -> str:
    """A file's text (utf-8-sig drops a BOM; text mode turns CRLF into LF); a one-line error if it cannot be read."""
    check_file(path)
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise DataError(unreadable(path, e)) from None


def _check_columns(fields: list[str], tag_column: int, where: str) -> int:
    """The column count of a file, from its first token line; the tag column must exist and not be the word."""
    if len(fields) < 2:
        raise DataError(f"{where}: expected at least 2 columns (word and tag) separated by tabs or spaces, "
                        f"found {len(fields)}: {' '.join(fields)!r}")
    if not -len(fields) <= tag_column < len(fields) or tag_column % len(fields) == 0:
        raise ConfigError(f"data.conll_tag_column={tag_column} does not exist: {where} has {len(fields)} columns "
                          f"(the word in 0, tags in 1 to {len(fields) - 1}, or -1 for the last)")
    return len(fields)


def _json_records(path: Path) -> list[tuple[int, object]]:
    """(line, record) pairs of a JSON array of objects or of a JSON-lines file."""
    text = read_text(path)
    start = SPACE.match(text).end()
    if text.startswith("[", start):
        try:
            return _json_array(text, start + 1)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); expected an array of objects") from None
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e.msg}); expected one object per line") from None
    return records


def _json_array(text: str, position: int) -> list[tuple[int, object]]:
    """The elements of the array opened before `position`, each with the line it starts on."""
    decoder, records, line, counted = json.JSONDecoder(), [], 1, 0
    while True:
        position = SPACE.match(text, position).end()
        if text.startswith("]", position):
            return records
        if records:
            if not text.startswith(",", position):
                raise json.JSONDecodeError("expected ',' or ']'", text, position)
            position = SPACE.match(text, position + 1).end()
        record, end = decoder.raw_decode(text, position)
        line, counted = line + text.count("\n", counted, position), position
        records.append((line, record))
        position = end


def read_tagged_json(path: str | Path, cfg: DataConfig) -> list[TaggedSentence]:
    """Read a JSON array or JSON-lines file of objects with a list of words and a list of tags each.

    Integer tags are ids into `data.label_names`.
    """
    path = Path(path)
    check_distinct_columns({"tokens_column": cfg.tokens_column, "tags_column": cfg.tags_column})
    sentences = []
    for line, record in _json_records(path):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with '{cfg.tokens_column}' and '{cfg.tags_column}' lists")
        for option, column in (("tokens_column", cfg.tokens_column), ("tags_column", cfg.tags_column)):
            if column not in record:
                raise DataError(f"{where}: no '{column}' key (data.{option}); keys found: {', '.join(record)}")
        tags = record[cfg.tags_column]
        if isinstance(tags, list) and any(isinstance(tag, int) for tag in tags):
            tags = _names_of_ids(tags, cfg.label_names, where)
        sentences.append(make_sentence(record[cfg.tokens_column], tags, where))
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


def _names_of_ids(tags: list, names: list[str] | None, where: str) -> list[str]:
    if not names:
        raise DataError(f"{where}: integer tags need their names: set data.label_names=[O,B-PER,...]")
    if any(not isinstance(tag, int) or not 0 <= tag < len(names) for tag in tags):
        raise DataError(f"{where}: tag ids must be integers from 0 to {len(names) - 1} (data.label_names)")
    return [names[tag] for tag in tags]


def read_tagged_hub(cfg: DataConfig) -> tuple[dict[str, list[TaggedSentence]], list[str] | None]:
    """A hub dataset's splits as tagged sentences, and the names of its tags when they are a ClassLabel."""
    check_distinct_columns({"tokens_column": cfg.tokens_column, "tags_column": cfg.tags_column})
    dataset = load_hub_dataset(cfg.name, cfg.config, TAGGED_CORPORA)
    splits, class_names = {}, None
    for split, rows in dataset.items():
        for option, column in (("tokens_column", cfg.tokens_column), ("tags_column", cfg.tags_column)):
            if column not in rows.column_names:
                raise DataError(f"hub dataset '{cfg.name}' {split} has no column '{column}' (data.{option}); "
                                f"columns found: {', '.join(rows.column_names)}")
        # A sequence of ClassLabel stores ids; its names are the tags.
        class_names = getattr(getattr(rows.features[cfg.tags_column], "feature", None), "names", None)
        sentences = []
        for i, (words, tags) in enumerate(zip(rows[cfg.tokens_column], rows[cfg.tags_column])):
            where = f"{cfg.name} {split}[{i}]"
            if isinstance(tags, list) and any(isinstance(tag, int) for tag in tags):
                tags = _names_of_ids(tags, class_names or cfg.label_names, where)
            sentences.append(make_sentence(words, tags, where))
        splits[SPLIT_ALIASES.get(split, split)] = sentences
    return splits, class_names


def tagged_frames(source: tuple, cfg: DataConfig) -> tuple[dict[str, list[TaggedSentence]], list[str] | None, str]:
    """In-memory frames (a row per sentence: words in `data.tokens_column`, tags in `data.tags_column`) as
    tagged sentences."""
    frames, class_names, description = source
    check_distinct_columns({"tokens_column": cfg.tokens_column, "tags_column": cfg.tags_column})
    names = class_names.get(cfg.tags_column) or cfg.label_names
    splits = {}
    for split, frame in frames.items():
        for option, column in (("tokens_column", cfg.tokens_column), ("tags_column", cfg.tags_column)):
            if column not in frame.columns:
                raise DataError(f"the {split} data has no column '{column}' (data.{option}); "
                                f"columns found: {', '.join(map(str, frame.columns))}")
        sentences = []
        for i, (words, tags) in enumerate(zip(frame[cfg.tokens_column], frame[cfg.tags_column])):
            words, tags = as_list(words), as_list(tags)  # a string stays one: make_sentence refuses it
            if isinstance(tags, list) and any(isinstance(tag, int) for tag in tags):
                tags = _names_of_ids(tags, names, f"{split}[{i}]")
            sentences.append(make_sentence(words, tags, f"{split}[{i}]"))
        splits[split] = sentences
    return splits, names, description


def as_list(values):
    """Tuples, arrays and Series (a parquet or DataFrame cell) as lists; anything else unchanged."""
    return values if isinstance(values, str | dict) or not hasattr(values, "__iter__") else list(values)


def read_tagged_file(path: str | Path, cfg: DataConfig) -> list[TaggedSentence]:
    """A JSON/JSONL file by its suffix; any other file is read as CoNLL."""
    if Path(path).suffix.lower() in JSON_SUFFIXES:
        return read_tagged_json(path, cfg)
    return read_conll(path, cfg.conll_tag_column)


def read_tagged_source(cfg: DataConfig) -> tuple[dict[str, list[TaggedSentence]], list[str] | None, str]:
    """The tagged sentences of whatever source the config names, their ClassLabel names and a description."""
    if cfg.train_file:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        splits = {split: read_tagged_file(path, cfg) for split, path in files.items() if path}
        return splits, None, f"local files: {', '.join(str(p) for p in files.values() if p)}"
    if not cfg.name:
        raise DataError("no data given; set data.name=<corpus or hub id> or data.train_file=<path>")
    if cfg.name in catalog.CORPORA:
        if cfg.name not in TAGGED_CORPORA:
            raise DataError(f"corpus '{cfg.name}' is not a token classification corpus; use one of: "
                            f"{', '.join(TAGGED_CORPORA)}")
        sentences = read_conll(catalog.corpus_path(cfg.name), cfg.conll_tag_column)
        return {"train": sentences}, None, f"packaged corpus '{cfg.name}': {catalog.CORPORA[cfg.name][2]}"
    splits, class_names = read_tagged_hub(cfg)
    return splits, class_names, f"hub dataset '{cfg.name}'" + (f" ({cfg.config})" if cfg.config else "")


def _continues(previous: str, tag: str) -> bool:
    """Whether `tag` is inside the same entity type as the tag before it."""
    return previous != "O" and previous[2:] == tag[2:]


def detect_scheme(tag_sequences: list[list[str]]) -> str:
    """IOB1, IOB2 or BIOES, from the tags alone.

    E-/S- (or BILOU's L-/U-) tags mean BIOES. In IOB1 an entity starts with I- and B- only
    separates two adjacent entities of one type; a B- after O or another type means IOB2.
    """
    prefixes = {tag[0] for tags in tag_sequences for tag in tags if tag != "O"}
    if prefixes & {"E", "S", "L", "U"}:
        return "BIOES"
    starts_with_i = starts_with_b = False
    for tags in tag_sequences:
        for previous, tag in zip(["O"] + tags, tags):
            if tag != "O" and not _continues(previous, tag):
                starts_with_i |= tag[0] == "I"
                starts_with_b |= tag[0] == "B"
    return "IOB1" if starts_with_i and not starts_with_b else "IOB2"


def to_iob2(tags: list[str]) -> list[str]:
    """The same entities in IOB2: every entity starts with B-, continues with I-.

    Serves every scheme: S-/U- become B-, E-/L- become I-, and an I- that starts an entity
    (IOB1, or a stray one in IOB2 data) becomes B-.
    """
    converted: list[str] = []
    for tag in tags:
        if tag != "O":
            prefix = TO_IOB2_PREFIX[tag[0]]
            if prefix == "I" and not (converted and _continues(converted[-1], tag)):
                prefix = "B"
            tag = f"{prefix}-{tag[2:]}"
        converted.append(tag)
    return converted


def _sample(sentences: list[TaggedSentence], count: int, rng: random.Random) -> tuple[list, list]:
    """Split off `count` sentences at random; both parts keep the original order."""
    chosen = set(rng.sample(range(len(sentences)), count))
    kept = [s for i, s in enumerate(sentences) if i not in chosen]
    return kept, [s for i, s in enumerate(sentences) if i in chosen]


def make_splits(splits: dict[str, list[TaggedSentence]], cfg: DataConfig, seed: int) -> dict[str, TokenSplit]:
    """Carve the missing test and validation splits out of train (seeded), then apply the sample limits."""
    rng, splits = random.Random(seed), dict(splits)
    train, total = splits["train"], len(splits["train"])
    if "test" not in splits:
        train, splits["test"] = _sample(train, max(1, round(cfg.test_fraction * total)), rng)
    if "validation" not in splits:
        if cfg.validation_fraction <= 0:
            raise DataError("no validation split: set data.validation_fraction > 0 or data.validation_file")
        train, splits["validation"] = _sample(train, max(1, round(cfg.validation_fraction * total)), rng)
    splits["train"] = train
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples,
              "test": cfg.max_test_samples}
    for split, limit in limits.items():
        if not splits[split]:
            raise DataError(f"the {split} split is empty; give more data or change data.{split}_fraction")
        if limit is not None and len(splits[split]) > limit:
            splits[split] = _sample(splits[split], limit, rng)[1]
    check_sample_keeps_labels(entity_types(train), {split: entity_types(splits[split]) for split in SPLITS},
                              cfg.max_train_samples, "sentence with entities of type")
    return {split: TokenSplit(splits[split]) for split in SPLITS}


def entity_types(sentences: list[TaggedSentence]) -> set[str]:
    return {tag[2:] for sentence in sentences for tag in sentence.tags if tag != "O"}


def drop_repeated_sentences(splits: dict[str, TokenSplit], cfg: DataConfig) -> tuple[dict[str, TokenSplit],
                                                                                    dict[str, int]]:
    """Drop held-out sentences whose words repeat a training sentence's, or a test one's for validation, as
    classification drops repeated texts (see `classification.drop_repeats`); returns the count dropped per split."""
    keys = {split: [dedup_key(" ".join(words)) for words in data.words] for split, data in splits.items()}
    keep, dropped = drop_repeats(keys, cfg, "sentence")
    return {split: TokenSplit([s for s, kept in zip(data.sentences, keep[split]) if kept])
            for split, data in splits.items()}, dropped


def label_names_for(train: TokenSplit, cfg: DataConfig, class_names: list[str] | None) -> list[str]:
    """The tag order: configured, else the ClassLabel names, else O then B-/I- of each training entity type.

    Names in another scheme (BIOES names that decode integer tags) give way to the IOB2 tags.
    """
    train_tags = {tag for tags in train.tags for tag in tags}
    if _is_iob2(cfg.label_names):
        return list(cfg.label_names)
    if _is_iob2(class_names) and train_tags <= set(class_names):
        return list(class_names)
    types = sorted({tag[2:] for tag in train_tags if tag != "O"})
    return ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in "BI"]


def _is_iob2(names: list[str] | None) -> bool:
    return bool(names) and all(name == "O" or name[:2] in ("B-", "I-") for name in names)


def check_known_tags(split: str, data: TokenSplit, label_names: list[str]) -> None:
    """Refuse tags the model cannot predict: seen in this split but not in training (or data.label_names)."""
    known, unknown = set(label_names), {}
    for sentence in data.sentences:
        for tag in set(sentence.tags) - known:
            unknown.setdefault(tag, sentence.where)
    if unknown:
        where = "training" if split == "train" else split
        first = next(iter(unknown.values()))
        raise DataError(f"{where} data has tags not seen in training or data.label_names: "
                        f"{', '.join(sorted(unknown)[:10])} (first at {first}); fix the tags or set data.label_names")


def load_token_classification(cfg: DataConfig, seed: int, source: tuple | None = None) -> TokenData:
    """Read, check, convert to IOB2, split and label the configured tagged data (or the in-memory `source`:
    frames by split with a words column and a tags column, ClassLabel names, description)."""
    raw, class_names, source = tagged_frames(source, cfg) if source else read_tagged_source(cfg)
    if "train" not in raw:
        raise DataError(f"the data has no 'train' split (found: {', '.join(raw)})")
    raw = {split: sentences for split, sentences in raw.items() if split in SPLITS}
    scheme = detect_scheme([s.tags for sentences in raw.values() for s in sentences])
    repaired = 0
    for sentence in (s for sentences in raw.values() for s in sentences):
        iob2 = to_iob2(sentence.tags)
        repaired += sum(a != b for a, b in zip(iob2, sentence.tags))
        sentence.tags = iob2
    if scheme == "IOB2" and repaired:
        logger.warning("%d entities started with I- instead of B- (invalid IOB2); they were read as B-", repaired)
    splits, dropped = drop_repeated_sentences(make_splits(raw, cfg, seed), cfg)
    if not entity_types(splits["train"].sentences):
        first = splits["train"].sentences[0].where
        raise DataError(f"no entity tags in the training data: all {len(splits['train'])} sentences are tagged O "
                        f"only (the first at {first}); a tagger needs entities to learn: check the tag column "
                        "(data.conll_tag_column, data.tags_column) or the data")
    label_names = label_names_for(splits["train"], cfg, class_names)
    for split, data in splits.items():
        check_known_tags(split, data, label_names)
    return TokenData(label_names=label_names, source=source, scheme=scheme, dropped_repeats=dropped, **splits)
