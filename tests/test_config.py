"""nlptransfer/config.py: dotted overrides, YAML round trips, validation, notebook kwargs, --help text."""

from __future__ import annotations

import dataclasses

import pytest
from nlptransfer.recipes import sentiment

from nlptransfer import api, load_recipe
from nlptransfer.config import (
    RunConfig,
    TrainConfig,
    apply_overrides,
    describe,
    dotted_keys,
    field_docs,
    load_yaml,
    to_yaml,
    validate,
)
from nlptransfer.errors import ConfigError


def test_overrides_convert_types_and_reach_nested_sections():
    cfg = apply_overrides(sentiment.Config(), [
        "train.epochs=2", "train.lr=3e-5", "lora.target_modules=[query,value]",
        "data.max_train_samples=20", "strategy=lora", "train.patience=null",
    ])
    assert type(cfg) is sentiment.Config
    assert cfg.train.epochs == 2 and type(cfg.train.epochs) is int
    assert cfg.train.lr == 3e-5 and type(cfg.train.lr) is float
    assert cfg.lora.target_modules == ["query", "value"]
    assert cfg.data.max_train_samples == 20
    assert cfg.strategy == "lora"
    assert cfg.train.patience is None
    # everything not overridden keeps the recipe's defaults
    assert cfg.data.name == "tweets" and cfg.train.batch_size == 32 and cfg.recipe == "sentiment"


def test_overrides_return_a_copy():
    original = sentiment.Config()
    apply_overrides(original, ["train.epochs=7"])
    assert original.train.epochs == sentiment.Config().train.epochs


@pytest.mark.parametrize("override, suggestion", [
    ("train.epoch=2", "train.epochs"),
    ("epochs=2", "train.epochs"),
    ("data.max_lenght=64", "data.max_length"),
    ("lora.rank=4", "lora.r"),
])
def test_unknown_key_names_the_close_match(override, suggestion):
    with pytest.raises(ConfigError) as error:
        apply_overrides(sentiment.Config(), [override])
    message = str(error.value)
    assert f"'{override.split('=')[0]}'" in message
    assert suggestion in message
    assert "\n" not in message


@pytest.mark.parametrize("override, key", [
    ("train.epochs=two", "train.epochs"),
    ("train.lr=fast", "train.lr"),
    ("data.max_length=1.5", "data.max_length"),
    ("overwrite=maybe", "overwrite"),
])
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        apply_overrides(sentiment.Config(), [override])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(sentiment.Config(), ["train.epochs"])


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(sentiment.Config(), [
        "strategy=lora", "train.lr=3e-5", "lora.target_modules=[query,value]",
        "data.label_names=[negative,neutral,positive]", "output_dir=somewhere", "seed=7",
    ])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    loaded = load_yaml(sentiment.Config(), path)
    assert loaded == cfg
    assert type(loaded) is sentiment.Config


def test_load_yaml_rejects_missing_and_unknown(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(sentiment.Config(), tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 2\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_yaml(sentiment.Config(), bad)


@pytest.mark.parametrize("changes, complaint", [
    ({"strategy": "adapters"}, "strategy"),
    ({"task": "regression"}, "task"),
    ({"strategy": "lora", "freeze": {"embeddings": True}}, "strategy=full"),
    ({"strategy": "frozen", "freeze": {"layers": 2}}, "strategy=full"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"data": {"test_fraction": 0.0}}, "data.test_fraction"),
    ({"train": {"mixed_precision": "fp8"}}, "mixed_precision must be one of auto, no, fp16, bf16; got fp8"),
])
def test_validate_rejects_impossible_settings(changes, complaint):
    with pytest.raises(ConfigError, match=complaint):
        validate(sentiment.Config(**changes))


def test_validate_accepts_freezing_with_full_strategy():
    cfg = sentiment.Config(freeze={"embeddings": True, "layers": 2})
    assert validate(cfg) is cfg


def test_notebook_dicts_keep_the_recipe_defaults():
    cfg = sentiment.Config(strategy="lora", train={"epochs": 1}, data={"max_length": 32})
    assert isinstance(cfg.train, TrainConfig)
    assert cfg.train.epochs == 1
    assert cfg.train.batch_size == sentiment.Config().train.batch_size == 32  # recipe default, not TrainConfig's
    assert cfg.data.name == "tweets" and cfg.data.max_train_samples == 4000 and cfg.data.max_length == 32


@pytest.mark.parametrize("changes, key", [
    ({"train": {"epoch": 1}}, "train.epochs"),
    ({"data": {"max_length": "long"}}, "data.max_length"),
])
def test_notebook_dicts_are_checked(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        sentiment.Config(**changes)


def test_describe_lists_every_key_with_its_doc():
    cfg = sentiment.Config()
    lines = describe(cfg).splitlines()
    option_lines = [i for i, line in enumerate(lines) if line.startswith("  ") and not line.startswith("    ")]
    shown = [lines[i].strip().split("=", 1)[0] for i in option_lines]
    assert shown == dotted_keys(cfg)
    for i in option_lines:  # each option is followed by its one-line doc
        assert i + 1 < len(lines) and lines[i + 1].startswith("      ") and lines[i + 1].strip()
    assert "  train.batch_size=32" in lines
    assert "  data.max_train_samples=4000" in lines
    assert "  train.lr=null" in lines
    assert "  overwrite=false" in lines and "  train.group_by_length=true" in lines  # YAML, as typed on the CLI


def test_every_leaf_option_has_a_doc():
    # a new option without a docstring would show up in --help without explanation
    cfg = RunConfig()
    sections = [type(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
                if dataclasses.is_dataclass(getattr(cfg, f.name))]
    for section in [RunConfig, *sections]:
        leaves = {f.name for f in dataclasses.fields(section) if not dataclasses.is_dataclass(f.type)
                  and not dataclasses.is_dataclass(getattr(cfg, f.name, None))}
        assert leaves <= set(field_docs(section)), section.__name__


@pytest.mark.parametrize("name", api.recipe_names())
def test_every_recipe_default_config_validates(name):
    recipe = load_recipe(name)
    cfg = recipe.Config()
    assert validate(cfg) is cfg
    assert cfg.recipe == name
    assert recipe.__doc__ and recipe.__doc__.strip()


def test_builtin_recipes_are_found():
    assert {"sentiment", "topic"} <= set(api.recipe_names())


@pytest.mark.parametrize("changes, message", [
    ({"train": {"metric_for_best": "f1"}},
     "train.metric_for_best=f1 is not a metric of task=classification: metric_for_best must be one of "
     "accuracy, macro_f1"),
    ({"task": "token-classification", "train": {"metric_for_best": "macro_f1"}},
     "metric_for_best must be one of f1, precision, recall, accuracy"),
    ({"train": {"eval_batch_size": 0}}, "train.eval_batch_size must be at least 1"),
    ({"seed": -1}, "seed must be from 0 to 4294967295 (numpy's seed range); e.g. seed=42"),
    ({"seed": 2 ** 32}, "seed must be from 0 to 4294967295"),
])
def test_validate_names_the_option_and_the_valid_values(changes, message):
    with pytest.raises(ConfigError) as error:
        validate(sentiment.Config(**changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_largest_seed_is_accepted():
    assert validate(sentiment.Config(seed=2 ** 32 - 1)).seed == 2 ** 32 - 1


@pytest.mark.parametrize("text, message", [
    ("- train.epochs=1\n- strategy=lora\n", "holds a list at its top level; write `key: value` lines"),
    ("42\n", "holds a single value (42) at its top level; write `key: value` lines"),
    ("lora\n", "'lora' is a section of options, not a value"),
    ("epochs\n", "unknown option 'epochs'; did you mean: train.epochs"),
    ("train: 5\n", "'train' is a section of options, not a value: give it `key: value` lines indented under "
                   "`train:` (e.g. `  epochs: 2`)"),
    ("train: null\n", "'train' is a section of options, not a value"),
    ("train:\n  epochs: 2\nlora: [4]\n", "'lora' is a section of options, not a value"),
])
def test_yaml_that_is_not_a_mapping_of_options_is_one_line(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_yaml(sentiment.Config(), path)
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_an_empty_yaml_changes_nothing(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("# nothing set yet\n")
    assert load_yaml(sentiment.Config(), path) == sentiment.Config()


@pytest.mark.parametrize("override, message", [
    ("train=5", "'train' is a section of options, not a value: set its options one by one (e.g. train.epochs=2)"),
    ("lora=[4]", "'lora' is a section of options, not a value: set its options one by one (e.g. lora.r=8)"),
    ("+train.foo=1", "'+train.foo=1': the leading '+' is Hydra syntax; nlptransfer options are set without it: "
                     "train.foo=1 (add --help to list every option)"),
    ("++seed=3", "the leading '++' is Hydra syntax; nlptransfer options are set without it: seed=3"),
    ("~seed", "'~seed': the leading '~' is Hydra syntax (deleting an option); nlptransfer options cannot be "
              "deleted: set seed=VALUE"),
])
def test_overrides_of_a_section_or_in_hydra_syntax_are_explained(override, message):
    with pytest.raises(ConfigError) as error:
        apply_overrides(sentiment.Config(), [override])
    assert message in str(error.value)


def test_a_missing_tensorboard_names_the_extra(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"log_with=tensorboard needs the tensorboard package: pip install "
                                          r"tensorboard \(or pip install 'nlptransfer\[tensorboard\]'\)"):
        validate(RunConfig(log_with="tensorboard"))
