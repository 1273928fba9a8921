"""What the labels mean in words (`labels.descriptions`, `labels.template`): the prompts zero-shot
classification embeds, and the templated examples of a cold start."""

from __future__ import annotations

import dataclasses
import logging

from ..errors import ConfigError, DataError

logger = logging.getLogger("nlptransfer")

ALTERNATIVES = "|"
"""Separates alternatives in a description or template ('negative | sad | angry'): each label's prompts are every
template around every description, their embeddings averaged."""


def checks(cfg) -> list[tuple[bool, str]]:
    """What the strategies that read `labels.descriptions` check first: no description is empty (its prompt would be
    the template alone, 'This text is about .')."""
    blank = [str(label) for label, text in (cfg.labels.descriptions or {}).items()
             if text is None or not str(text).replace(ALTERNATIVES, "").strip()]
    return [(not blank, f"labels.descriptions gives {', '.join(blank[:5])} an empty description; describe "
                        "each in words, or leave it out to use the label's name")]


def alternatives(text: str) -> list[str]:
    """The `|`-separated alternatives of a description or template, stripped; the text itself when it has none."""
    return [part.strip() for part in str(text).split(ALTERNATIVES) if part.strip()] or [str(text)]


def label_prompts(label_names: list[str], cfg) -> list[list[str]]:
    """Each label's prompts, in label order: every template (`labels.template`, alternatives separated by `|`) around
    every description of the label (`labels.descriptions`, the same; default: its name).

    A description of a label the data does not have (unless it is the recipe's own description of a label it
    knows), labels that are bare numbers without descriptions, and a template without `{}` are one-line errors.
    """
    given = {str(k): str(v) for k, v in (cfg.labels.descriptions or {}).items()}
    recipes = recipe_descriptions(cfg)
    unknown = sorted(name for name in set(given) - set(label_names) if recipes.get(name) != given[name])
    if unknown:
        raise ConfigError(f"labels.descriptions names {', '.join(unknown[:5])}, which the data does not have "
                          f"(its labels: {', '.join(label_names)}); describe those labels only")
    nameless = [name for name in label_names if name not in given and not any(ch.isalpha() for ch in name)]
    if nameless:
        raise DataError(f"the labels {', '.join(nameless[:5])} are not words, so they cannot be described to the "
                        f"model; set labels.descriptions={{{nameless[0]}: '...'}} for each, or data.label_names")
    templates = alternatives(cfg.labels.template)
    if any("{}" not in template for template in templates):
        raise ConfigError(f"labels.template must mark the description's place with {{}} (in each alternative "
                          f"separated by |), e.g. 'This text is about {{}}.'; got {cfg.labels.template!r}")
    prompts = [[template.replace("{}", description) for template in templates
                for description in alternatives(given.get(name, name))] for name in label_names]
    logger.info("label prompts: %s", "; ".join(f"{name}: {' | '.join(map(repr, each))}"
                                               for name, each in zip(label_names, prompts)))
    return prompts


def recipe_descriptions(cfg) -> dict[str, str]:
    """The recipe's own `labels.descriptions` (its defaults): they may describe labels a user's data does not have,
    and a user's descriptions merge into them."""
    try:
        return {str(k): str(v) for k, v in (type(cfg)().labels.descriptions or {}).items()}
    except TypeError:  # a config that cannot be built without arguments is no recipe's default
        return {}


def mean_rows(embeddings, counts: list[int]):
    """One unit row per label (a numpy array): the mean of its prompts' unit embeddings, `counts` consecutive rows of
    `embeddings` each, normalized."""
    import numpy as np

    unit = lambda rows: rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    bounds = np.cumsum([0] + list(counts))
    return unit(np.stack([unit(embeddings[start:end]).mean(0) for start, end in zip(bounds, bounds[1:])]))


def with_templated_examples(data, cfg, per_label: int):
    """`data` with `per_label` templated examples of each label added to its training split (SetFit's
    `get_templated_dataset`: the label prompt, repeated)."""
    prompts = label_prompts(data.label_names, cfg)
    texts, labels = [], []
    for label, each in enumerate(prompts):
        texts += [each[i % len(each)] for i in range(per_label)]
        labels += [[label] if data.multilabel else label] * per_label
    train = data.train
    if train.text_pairs is not None:
        raise ConfigError("templated examples are single texts: contrastive.synthetic_per_class does not work with "
                          "data.text_pair_column")
    logger.info("added %d templated examples (%d per label) to %d labeled training examples", len(texts), per_label,
                len(train))
    return dataclasses.replace(data, train=dataclasses.replace(train, texts=train.texts + texts,
                                                               labels=list(train.labels) + labels))
