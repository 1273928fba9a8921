"""nlptransfer/option_values.py: every option value is read by its option's declared type, on the command line
and in --config files, for every command; YAML 1.1's booleans, numbers, times and nulls never take a string's
place, and every value `--help` prints is accepted as written."""

from __future__ import annotations

import dataclasses

import pytest
from nlptransfer.recipes import sentiment

from nlptransfer import load_recipe, recipe_names
from nlptransfer.cli.compare import CompareOptions
from nlptransfer.cli.curve import CurveOptions
from nlptransfer.cli.export import ExportOptions
from nlptransfer.cli.predict import PredictOptions
from nlptransfer.cli.push import PushOptions
from nlptransfer.cli.run import main
from nlptransfer.cli.sweep import SweepOptions
from nlptransfer.config import apply_overrides, describe, load_yaml, option_owner, validate
from nlptransfer.errors import ConfigError
from nlptransfer.option_values import field_types, from_text

COMMAND_OPTIONS = [PredictOptions(), PushOptions(), ExportOptions(), CompareOptions(), CurveOptions(), SweepOptions()]


def documented_values(options) -> list[str]:
    """The `key=value` lines `--help` prints."""
    return [line.strip() for line in describe(options).splitlines() if line.startswith("  ") and
            not line.startswith("      ")]


@pytest.mark.parametrize("options", [load_recipe(name).Config() for name in recipe_names()] + COMMAND_OPTIONS,
                         ids=[*recipe_names(), *(type(o).__name__ for o in COMMAND_OPTIONS)])
def test_every_value_help_prints_is_accepted_as_written(options):
    lines = documented_values(options)
    assert len(lines) == len(dataclasses.fields(options)) or len(lines) > 60
    for line in lines:
        key, text = line.split("=", 1)
        section, name = option_owner(options, key)
        assert from_text(text, field_types(type(section))[name], key) == getattr(section, name), line
    assert apply_overrides(options, lines) == options


def test_yaml_1_1_scalars_keep_the_text_a_text_option_was_given():
    cfg = apply_overrides(sentiment.Config(), [
        "train.mixed_precision=no", "data.label_names=[no,yes,null,1.10,off]", "output_dir=1.10",
        "data.text_column=2024-01-01", "labels.descriptions={no: 'not at all', yes: null}", "data.name=~",
    ])
    assert cfg.train.mixed_precision == "no" and validate(cfg)
    assert cfg.data.label_names == ["no", "yes", "null", "1.10", "off"]
    assert cfg.output_dir == "1.10" and cfg.data.text_column == "2024-01-01" and cfg.data.name == "~"
    given = {"no": "not at all", "yes": "null"}  # merged into the recipe's own descriptions of its labels
    assert cfg.labels.descriptions == sentiment.Config().labels.descriptions | given


def test_null_unsets_optional_options_and_quotes_keep_the_text():
    cfg = apply_overrides(sentiment.Config(), ["train.patience=null", "output_dir=null", "data.name='null'",
                                               "data.max_train_samples=null", "labels.descriptions=null"])
    assert cfg.train.patience is None and cfg.output_dir is None and cfg.data.max_train_samples is None
    assert cfg.labels.descriptions is None and cfg.data.name == "null"
    with pytest.raises(ConfigError, match="'seed' cannot be unset"):
        apply_overrides(sentiment.Config(), ["seed=null"])


@pytest.mark.parametrize("options, item, field, expected", [
    (PredictOptions(), "text_pair=null", "text_pair", None),
    (PredictOptions(), "input=null", "input", None),
    (PredictOptions(), "output=null", "output", None),
    (PredictOptions(), "text=#tag yes", "text", "#tag yes"),
    (PushOptions(), "repo_id=null", "repo_id", None),
    (PushOptions(), "license=null", "license", None),
    (PushOptions(), "private=yes", "private", True),
    (SweepOptions(), "resume=null", "resume", None),
    (SweepOptions(), "output_dir=null", "output_dir", None),
    (CompareOptions(), "output_dir=null", "output_dir", None),
    (CurveOptions(), "output_dir=null", "output_dir", None),
    (CurveOptions(), "strategies=null", "strategies", None),
    (CurveOptions(), "sizes=8,16", "sizes", "8,16"),
])
def test_every_command_reads_its_options_by_type(options, item, field, expected):
    assert getattr(apply_overrides(options, [item]), field) == expected


@pytest.mark.parametrize("item, fragment", [
    ("train.max_steps=12:30", "'12:30' is not a whole number"),
    ("train.epochs=1.0", "'1.0' is not a whole number"),
    ("train.epochs=two", "bad value for 'train.epochs'"),
    ("train.lr=[", "'[' is not a number"),
    ("train.speedups=maybe", "'maybe' is not true or false"),
    ("labels.descriptions=[a,b,c]", "'labels.descriptions': it takes a mapping, not a list"),
    ("data.label_names={a: b}", "'data.label_names': it takes a list, not a mapping"),
    ("data.label_names=[a, b", "cannot read '[a, b'"),
    ("data.label_names=!!python/object/apply:os.system [echo]", "cannot read"),
    ("output_dir=runs/${oc.env:NLPTRANSFER_NO_SUCH_VARIABLE}", "cannot resolve the interpolation in 'output_dir'"),
    ("train=5", "'train' is a section of options"),
])
def test_values_a_type_cannot_take_are_one_line_errors(item, fragment):
    with pytest.raises(ConfigError) as error:
        apply_overrides(sentiment.Config(), [item])
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_numbers_by_type():
    cfg = apply_overrides(sentiment.Config(), ["train.epochs=10", "train.lr=1e-4", "data.max_length=1_024",
                                               "loss.class_weights=[1, 2.5, 3]", "loss.class_weights=balanced"])
    assert cfg.train.epochs == 10 and type(cfg.train.epochs) is int and cfg.train.lr == 1e-4
    assert cfg.data.max_length == 1024 and cfg.loss.class_weights == "balanced"
    assert apply_overrides(cfg, ["loss.class_weights=[1, 2.5, 3]"]).loss.class_weights == [1, 2.5, 3]


def test_text_options_keep_what_yaml_cannot_scan():
    for value in ("@runs", "*a", "!!python/object/apply:os.system [echo]", "a: b", "{} and {}", "'{}", "#x"):
        assert apply_overrides(sentiment.Config(), [f"output_dir={value}"]).output_dir == value


def test_a_config_file_is_read_by_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n  max_steps: 12\n  patience: ~\n"
                    "data:\n  label_names: [no, yes, null]\n  name:\noutput_dir: 1.10\n"
                    "labels:\n  template: 'It is {}.'\n")
    cfg = load_yaml(sentiment.Config(), path)
    assert cfg.train.mixed_precision == "no" and cfg.train.max_steps == 12 and cfg.train.patience is None
    assert cfg.data.label_names == ["no", "yes", "null"] and cfg.data.name is None and cfg.output_dir == "1.10"
    assert cfg.labels.template == "It is {}."
    for text, fragment in [("train:\n  max_steps: 12:30\n", "'12:30' is not a whole number"),
                           ("data:\n  label_names: {a: b}\n", "it takes a list, not a mapping"),
                           ("labels:\n  descriptions: [a, b]\n", "it takes a mapping, not a list"),
                           ("train:\n  epoch: 2\n", "unknown option 'train.epoch'"),
                           ("output_dir: !!python/object/apply:os.system [echo]\n", "cannot parse")]:
        path.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_yaml(sentiment.Config(), path)
        assert fragment in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_saved_config_round_trips_values_yaml_would_retype(tmp_path):
    from nlptransfer.config import to_yaml

    cfg = apply_overrides(sentiment.Config(), ["data.label_names=[no,null,'1.10']", "output_dir=null",
                                               "labels.template=yes {}", "data.text_column=on"])
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    assert load_yaml(sentiment.Config(), tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("item, fragment", [
    ("train.max_grad_norm=-1", "train.max_grad_norm must be positive"),
    ("train.max_grad_norm=0", "train.max_grad_norm must be positive"),
    ("train.patience=0", "train.patience must be at least 1"),
    ("labels.template={} and {}", "labels.template must hold one '{}'"),
    ("labels.template=no placeholder", "labels.template must hold one '{}'"),
    ("labels.template={name}", "labels.template must hold one '{}'"),
    ("labels.template={", "labels.template must hold one '{}'"),
    (["strategy=contrastive", "contrastive.loss=triplet"], "contrastive.loss must be one of cosine, supcon"),
])
def test_values_that_would_train_wrongly_are_refused(item, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        validate(apply_overrides(sentiment.Config(), item if isinstance(item, list) else [item]))


def test_a_literal_brace_template_is_accepted():
    assert validate(apply_overrides(sentiment.Config(), ["labels.template={{tag}} {}"]))


def test_no_option_holds_a_secret(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_notarealtoken123")
    out = tmp_path / "run"
    for item in ("labels.template=${oc.env:HF_TOKEN} {}", "labels.template=hf_notarealtoken123 {}"):
        assert main(["recipe=sentiment", item, f"output_dir={out}"]) == 2
        error = capsys.readouterr().err
        assert "holds the value of the environment variable HF_TOKEN" in error and "hf_notarealtoken" not in error
        assert len(error.strip().splitlines()) == 1 and not out.exists()
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # short values of token-like names are not secrets
    assert validate(apply_overrides(sentiment.Config(), ["labels.template=false {}"]))


@pytest.mark.parametrize("argv", [
    ["train.mixed_precision=maybe"], ["labels.descriptions=[a,b,c]"], ["data.label_names={a: b}"], ["train.lr=["],
    ["labels.template={} and {}"], ["output_dir=runs/${oc.env:NLPTRANSFER_NO_SUCH_VARIABLE}"],
    ["train.max_steps=12:30"], ["train.max_grad_norm=-1"],
])
def test_the_command_line_says_one_line_and_exits_2(argv, capsys, tmp_path):
    assert main(["recipe=sentiment", f"output_dir={tmp_path / 'run'}", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err and not (tmp_path / "run").exists()


def test_help_documents_a_list_of_sections_and_its_default_is_accepted():
    options = sentiment.Config()
    text = " ".join(describe(options).split())
    assert "multitask.tasks=[]" in text and "multitask.sampler=proportional" in text
    assert "multitask.temperature=2.0" in text
    assert "Each entry has the fields name, task, data.*, weight" in text and "--config YAML" in text
    assert apply_overrides(options, ["multitask.tasks=[]"]).multitask.tasks == []
