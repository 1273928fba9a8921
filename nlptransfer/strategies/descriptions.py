"""What the labels mean in words (`labels.descriptions`, `labels.template`): the prompts zero-shot
classification embeds, and the templated examples of a cold start."""

from __future__ import annotations

import dataclasses
import logging

from ..errors import ConfigError, DataError

logger = logging.getLogger("nlptransfer")


def checks(cfg) -> list[tuple[bool, str]]:
    """What the strategies that read `labels.descriptions` check first: no description is empty (its prompt would be
    the template alone, 'This text is about .')."""
    blank = [str(label) for label, text in (cfg.labels.descriptions or {}).items()
             if text is None or not str(text).strip()]
    return [(not blank, f"labels.descriptions gives {', '.join(blank[:5])} an empty description; describe "
                        "each in words, or leave it out to use the label's name")]


def label_prompts(label_names: list[str], cfg) -> list[str]:
    """One prompt per label, in label order: the template around the label's description (default: its name).

    A description of a label the data does not have, labels that are bare numbers without descriptions,
    and a template without `{}` are one-line errors.
    """
    given = {str(k): str(v) for k, v in (cfg.labels.descriptions or {}).items()}
    unknown = sorted(set(given) - set(label_names))
    if unknown:
        raise ConfigError(f"labels.descriptions names {', '.join(unknown[:5])}, which the data does not have "
                          f"(its labels: {', '.join(label_names)}); describe those labels only")
    nameless = [name for name in label_names if name not in given and not any(ch.isalpha() for ch in name)]
    if nameless:
        raise DataError(f"the labels {', '.join(nameless[:5])} are not words, so they cannot be described to the "
                        f"model; set labels.descriptions={{{nameless[0]}: '...'}} for each, or data.label_names")
    if "{}" not in cfg.labels.template:
        raise ConfigError(f"labels.template must mark the description's place with {{}}, e.g. 'This text is about "
                          f"{{}}.'; got {cfg.labels.template!r}")
    prompts = [cfg.labels.template.replace("{}", given.get(name, name)) for name in label_names]
    logger.info("label prompts: %s", "; ".join(f"{name}: {prompt!r}" for name, prompt in zip(label_names, prompts)))
    return prompts


def with_templated_examples(data, cfg, per_label: int):
    """`data` with `per_label` templated examples of each label added to its training split (SetFit's
    `get_templated_dataset`: the label prompt, repeated)."""
    prompts = label_prompts(data.label_names, cfg)
    texts, labels = [], []
    for label, prompt in enumerate(prompts):
        texts += [prompt] * per_label
        labels += [[label] if data.multilabel else label] * per_label
    train = data.train
    if train.text_pairs is not None:
        raise ConfigError("templated examples are single texts: contrastive.synthetic_per_class does not work with "
                          "data.text_pair_column")
    logger.info("added %d templated examples (%d per label) to %d labeled training examples", len(texts), per_label,
                len(train))
    return dataclasses.replace(data, train=dataclasses.replace(train, texts=train.texts + texts,
                                                               labels=list(train.labels) + labels))
