"""nlptransfer/card.py: the model card's Hub metadata parses, has the Hub's model-index shape, and tells the truth."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from nlptransfer import catalog, strategies
from nlptransfer.config import DataConfig, RunConfig
from nlptransfer.engine import precision
from nlptransfer.hub.card import base_model_id, render, run_card

CLASSIFICATION_TEST = {
    "accuracy": 0.8125, "macro_f1": 0.79,
    "per_class": {"neg": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 5},
                  "pos": {"precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 11}},
}


def header(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def card_for(tmp_path, **changes) -> str:
    cfg = RunConfig(**changes)
    metrics = {"test": CLASSIFICATION_TEST, "parameters": {"trainable": 2310, "total": 1_000_000},
               "baselines": {"majority_accuracy": 0.6875}, "data": {"train": 100, "validation": 20, "test": 16}}
    return render(cfg, metrics, ["neg", "pos"], run_dir=tmp_path, repo_id="someone/reviews")


def test_run_card_is_valid_hub_metadata(full_run, tmp_path):
    card_text = run_card(full_run, repo_id="someone/tiny-reviews")
    (tmp_path / "README.md").write_text(card_text)
    metrics = json.loads((full_run / "metrics.json").read_text())

    card = ModelCard(card_text)  # huggingface_hub's own parser: raises on a malformed model-index
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert "full-fine-tuning" in card.data.tags and "nlptransfer" in card.data.tags
    assert card.data.license == "other"  # a local base checkpoint: its license is unknown
    assert card.data.get("base_model") is None and card.data.get("datasets") is None
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "accuracy": round(metrics["test"]["accuracy"], 4), "f1": round(metrics["test"]["macro_f1"], 4)}

    loaded = metadata_load(tmp_path / "README.md")
    model_name, results = model_index_to_eval_results(loaded["model-index"])
    assert model_name == "tiny-reviews"
    assert {(r.task_type, r.dataset_split) for r in results} == {("text-classification", "test")}
    assert str(full_run) not in card_text and "reviews.csv" in card_text  # a file name, never its path


def test_run_card_body(full_run):
    card_text = run_card(full_run)
    metrics = json.loads((full_run / "metrics.json").read_text())
    sizes = (full_run / "train.log").read_text()
    for section in ("## Training", "## Data", "## Results on the held-out test split", "## Limitations", "## Usage"):
        assert section in card_text
    assert f"Trainable parameters: {metrics['parameters']['trainable']:,} of {metrics['parameters']['total']:,}" \
        in card_text
    assert f"| learning rate | {strategies.get('full').default_lr} |" in card_text
    assert "| max length (tokens) | 32 |" in card_text
    assert "48 train / 6 validation / 6 test" in sizes
    assert "| train | 48 |" in card_text and "| test | 6 |" in card_text
    for label, row in metrics["test"]["per_class"].items():
        assert f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |" \
            in card_text
    assert 'pipeline("text-classification", model="path/to/this/folder", truncation=True)' in card_text
    # train.mixed_precision=auto (the default): the choice is in config.yaml, metrics.json, the log and the card
    reason = precision.choose("auto").reason  # fp32 on every CPU in the suite (conftest: NLPTRANSFER_NO_BF16)
    assert reason.startswith("auto: fp32")
    assert "mixed_precision: 'no'" in (full_run / "config.yaml").read_text()
    assert metrics["timing"]["mixed_precision"] == "no" and metrics["timing"]["precision_reason"] == reason
    assert f"mixed precision: no ({reason})" in sizes and f"| mixed precision | no ({reason}) |" in card_text


def test_lora_card_names_the_strategy_and_the_adapter(lora_run):
    merged = header(run_card(lora_run, repo_id="someone/tiny-lora"))
    assert merged["library_name"] == "transformers" and {"lora", "peft"} <= set(merged["tags"])
    adapter_card = run_card(lora_run, repo_id="someone/tiny-lora", adapter_only=True)
    assert header(adapter_card)["library_name"] == "peft"
    assert 'AutoPeftModelForSequenceClassification.from_pretrained(\n    "someone/tiny-lora", num_labels=3' \
        in adapter_card
    assert "id2label={0: 'neg', 1: 'neu', 2: 'pos'}" in adapter_card


def test_token_classification_card(ner_run):
    card = ModelCard(run_card(ner_run, repo_id="someone/tiny-ner"))
    assert card.data.pipeline_tag == "token-classification"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "precision": 0.5, "recall": 0.25, "f1": 0.3333, "accuracy": 0.9}
    assert card.data.get("datasets") is None  # a packaged corpus is not a hub dataset
    body = card.text
    assert "| entity type | precision | recall | F1 | support |" in body
    assert "| PER | 0.500 | 0.250 | 0.333 | 8 |" in body and "| LOC | 0.500 | 0.250 | 0.333 | 4 |" in body
    assert "It tags entities of these types: `LOC`, `PER`." in body
    assert "| word-lookup tagger entity F1 | 0.2000 |" in body
    assert "| split | sentences |\n| --- | --- |\n| train | 20 |\n| validation | 5 |\n| test | 6 |" in body
    assert 'aggregation_strategy="first"' in body


@pytest.mark.parametrize("data, datasets", [
    ({"name": "stanfordnlp/imdb"}, ["stanfordnlp/imdb"]),
    ({"name": "glue", "config": "sst2"}, ["glue"]),
    ({"name": "tweets"}, None),
    ({"train_file": "/home/me/private/reviews.csv"}, None),
])
def test_datasets_only_for_hub_data(tmp_path, data, datasets):
    card = card_for(tmp_path, data=DataConfig(**data))
    meta = header(card)
    assert meta.get("datasets") == datasets
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset["type"] == (datasets[0] if datasets else "custom") and dataset["split"] == "test"
    assert "/home/me" not in card


@pytest.mark.parametrize("model, expected", [
    ("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    ("roberta", "FacebookAI/roberta-base"),
    ("google-bert/bert-base-cased", "google-bert/bert-base-cased"),
    ("./checkpoints/mine", None),
    ("/data/models/bert", None),
])
def test_base_model_is_a_hub_id_or_nothing(tmp_path, model, expected):
    assert base_model_id(model) == expected
    meta = header(card_for(tmp_path, model=model))
    assert meta.get("base_model") == expected
    assert meta["license"] == {"sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
                               "FacebookAI/roberta-base": "mit"}.get(expected, "other")


def test_packaged_minilm_folder_is_written_as_its_hub_id(tmp_path):
    folder = catalog.resolve_model("minilm")
    if folder == catalog.MODELS["minilm"][2]:
        pytest.skip("the packaged MiniLM is not installed")
    assert base_model_id(folder) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id(str(tmp_path)) is None  # any other local folder is not


def test_limitations_are_specific(tmp_path):
    card = card_for(tmp_path, strategy="frozen")
    assert "frozen-encoder" in header(card)["tags"]
    assert "The test split has 16 examples: the accuracy is uncertain by about ±0.191" in card
    assert "does not beat" not in card  # 0.8125 beats the majority class (0.6875)
    worse = render(RunConfig(), {"test": CLASSIFICATION_TEST | {"accuracy": 0.5},
                                 "baselines": {"majority_accuracy": 0.6875}}, ["neg", "pos"], run_dir=tmp_path)
    assert "It does not beat the majority-class baseline" in worse


@pytest.mark.parametrize("data, name", [
    ({"name": "tweets"}, "tweets (packaged corpus)"),
    ({"train_file": "/home/me/private/reviews.csv", "test_file": "test.csv"}, "local files: reviews.csv, test.csv"),
    ({"name": "stanfordnlp/imdb"}, "stanfordnlp/imdb"),
    ({"name": None}, "in-memory data"),
])
def test_the_eval_widget_gets_the_dataset_name_as_plain_text(tmp_path, data, name):
    card = card_for(tmp_path, data=DataConfig(**data))
    results = header(card)["model-index"][0]["results"]
    assert {result["dataset"]["name"] for result in results} == {name}
    assert "`" not in name


@pytest.mark.parametrize("data, language", [
    ({"name": "tweets"}, "en"), ({"name": "bbc_news"}, "en"), ({"name": "wnut16"}, "en"),
    ({"name": "stanfordnlp/imdb"}, None), ({"train_file": "reviews.csv"}, None),
])
def test_language_only_where_it_is_known(tmp_path, data, language):
    meta = header(card_for(tmp_path, data=DataConfig(**data)))
    assert meta.get("language") == language


def test_every_packaged_corpus_has_a_language():
    from nlptransfer.hub.card import CORPUS_LANGUAGES

    assert set(CORPUS_LANGUAGES) == set(catalog.CORPORA)


def test_usage_snippet_truncates_long_texts_to_the_trained_length(tmp_path, ner_run):
    card = card_for(tmp_path, data=DataConfig(max_length=64))
    assert 'classifier = pipeline("text-classification", model="someone/reviews", truncation=True)' in card
    assert "reads at most 64 tokens of a text (the length it was trained with" in card
    ner_card = run_card(ner_run, repo_id="someone/tiny-ner")
    assert 'pipeline("token-classification", model="someone/tiny-ner", aggregation_strategy="first")' in ner_card


def test_in_memory_data_is_named_so(tmp_path):
    # the Python API clears data.name and the files: the card must not call it "the hub dataset None"
    card = card_for(tmp_path, data=DataConfig(name=None))
    assert "None" not in card and "in-memory data" in card
    assert header(card).get("datasets") is None


def test_a_tied_majority_baseline_says_so():
    from nlptransfer.hub.card import results_section

    metrics = {"test": {"accuracy": 0.5}, "baselines": {"majority_accuracy": 0.2, "majority_tied_classes": 5}}
    assert ("| majority-class baseline accuracy (5 classes tie in training: the mean of guessing each) | 0.2000 |"
            in results_section(RunConfig(), metrics))
    assert "tie" not in results_section(RunConfig(), {"test": {}, "baselines": {"majority_accuracy": 0.2}})


def test_a_kept_head_is_not_called_new(tmp_path):
    """keep_head=true (an earlier run's head, or a distilled student copying its teacher's layers and head)."""
    assert "every weight of the encoder and the new head trained" in card_for(tmp_path)
    kept = card_for(tmp_path, keep_head=True)
    assert "every weight of the encoder and the head it started with trained" in kept and "new head" not in kept
