"""nlptransfer/catalog.py: short names for the packaged checkpoint, corpora and recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlptransfer import api, catalog
from nlptransfer.errors import ConfigError, DataError


def test_minilm_resolves_to_the_packaged_folder():
    folder = Path(catalog.resolve_model("minilm"))
    assert folder.is_dir()
    assert (folder / "config.json").is_file() and (folder / "vocab.txt").is_file()


@pytest.mark.parametrize("name", ["nobody/no-such-model", "/some/local/folder", "bert-base-cased"])
def test_other_model_names_pass_through(name):
    assert catalog.resolve_model(name) == name


def test_short_names_without_a_package_resolve_to_hub_ids():
    assert catalog.resolve_model("roberta") == "FacebookAI/roberta-base"


@pytest.mark.parametrize("name", ["tweets", "bbc_news", "wnut16"])
def test_packaged_corpora_exist(name):
    assert catalog.corpus_path(name).exists()


def test_missing_corpus_package_names_the_fix(monkeypatch):
    monkeypatch.setitem(catalog.CORPORA, "ghost", ("no_such_package_xyz", "data.csv", "nothing"))
    with pytest.raises(DataError, match="no_such_package_xyz.*nlptransfer\\[offline\\]"):
        catalog.corpus_path("ghost")


def test_load_recipe_by_name():
    recipe = api.load_recipe("topic")
    assert recipe.__name__ == "nlptransfer.recipes.topic"
    assert recipe.Config().data.name == "bbc_news"


def test_unknown_recipe_suggests_the_close_name():
    with pytest.raises(ConfigError, match="did you mean sentiment"):
        api.load_recipe("sentimnt")


def test_recipe_file_must_exist_and_define_config_and_run(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        api.load_recipe(str(tmp_path / "missing.py"))
    incomplete = tmp_path / "incomplete.py"
    incomplete.write_text("def run(cfg):\n    return cfg\n")
    with pytest.raises(ConfigError, match="lacks Config"):
        api.load_recipe(str(incomplete))
