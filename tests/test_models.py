"""nlptransfer/models.py: loading with a new head, and the trainable parameters of each strategy."""

from __future__ import annotations

import time

import pytest
import torch

from nlptransfer import models, strategies, tasks
from nlptransfer.config import RunConfig
from nlptransfer.errors import ConfigError, ModelError
from nlptransfer.outputs.export import merged_copy

LABELS = ["neg", "neu", "pos"]
HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2  # the tiny checkpoint of conftest.py
HEAD = HIDDEN * len(LABELS) + len(LABELS)


@pytest.fixture
def load(tiny_model_dir):
    def load_with(**changes):
        torch.manual_seed(0)
        model = models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)
        cfg = RunConfig(model=tiny_model_dir, **changes)
        return model, strategies.get(cfg.strategy).prepare(model, cfg, tasks.get(cfg.task))

    return load_with


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def trainable_names(model) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_load_model_stores_the_labels(tiny_model_dir):
    model = models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)
    sizes = model.config
    assert (sizes.hidden_size, sizes.intermediate_size, sizes.num_hidden_layers) == (HIDDEN, INTERMEDIATE, LAYERS)
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert model.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    assert model.classifier.out_features == 3
    assert models.head_module_names(model) == ["classifier"]


def test_full_trains_everything(load):
    model, adapted = load(strategy="full")
    assert adapted is model
    assert models.count_parameters(adapted) == (numel(model), numel(model))
    assert numel(model) == numel(model.bert) + HEAD


def test_frozen_trains_only_the_head(load):
    model, adapted = load(strategy="frozen")
    assert models.count_parameters(adapted) == (HEAD, numel(model))
    assert trainable_names(adapted) == ["classifier.weight", "classifier.bias"]


def test_lora_trains_adapters_on_query_and_value_and_the_head(load):
    model, adapted = load(strategy="lora")
    rank = RunConfig().lora.r
    adapters = LAYERS * 2 * rank * (HIDDEN + HIDDEN)  # per layer: query and value, A (r x in) + B (out x r)
    trainable, total = models.count_parameters(adapted)
    assert trainable == adapters + HEAD
    # peft adapted `model` in place: it now holds the adapters, the head and peft's frozen copy of
    # the head, which is not counted.
    assert total == numel(model) - HEAD
    lora_names = [n for n in trainable_names(adapted) if "lora_" in n]
    assert len(lora_names) == LAYERS * 2 * 2
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora_names} == {"query", "value"}
    head_names = [n for n in trainable_names(adapted) if "lora_" not in n]
    assert all("classifier" in n for n in head_names) and len(head_names) == 2


def test_lora_settings_change_the_count(load):
    _, adapted = load(strategy="lora", lora={"r": 2, "target_modules": ["query", "key", "value", "dense"]})
    # per layer query, key, value and three `dense`: attention output (h->h), intermediate (h->i),
    # output (i->h); once more the pooler's `dense` (h->h)
    h, i, r = HIDDEN, INTERMEDIATE, 2
    per_layer = 3 * r * (h + h) + r * (h + h) + r * (h + i) + r * (i + h)
    assert models.count_parameters(adapted)[0] == LAYERS * per_layer + r * (h + h) + HEAD


def test_lora_with_unknown_target_modules_is_a_config_error(load):
    with pytest.raises(ConfigError, match="lora.target_modules"):
        load(strategy="lora", lora={"target_modules": ["no_such_projection"]})


def test_freeze_embeddings(load):
    model, adapted = load(strategy="full", freeze={"embeddings": True})
    assert models.count_parameters(adapted) == (numel(model) - numel(model.bert.embeddings), numel(model))


def test_freeze_bottom_layer(load):
    model, adapted = load(strategy="full", freeze={"layers": 1})
    frozen = numel(model.bert.embeddings) + numel(model.bert.encoder.layer[0])
    assert models.count_parameters(adapted) == (numel(model) - frozen, numel(model))
    assert not any(n.startswith("bert.encoder.layer.0.") for n in trainable_names(adapted))
    assert any(n.startswith("bert.encoder.layer.1.") for n in trainable_names(adapted))


def test_freezing_more_layers_than_the_model_has(load):
    with pytest.raises(ConfigError, match="freeze.layers=3 but the model has 2 layers"):
        load(strategy="full", freeze={"layers": 3})


def test_merged_copy_gives_the_same_logits_and_leaves_the_original(load, tiny_model_dir):
    _, adapted = load(strategy="lora")
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # B starts at zero: make the update visible
    adapted.eval()
    inputs = {"input_ids": torch.tensor([[2, 10, 20, 30, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    merged = merged_copy(adapted)
    merged.eval()
    assert type(merged).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        assert torch.allclose(adapted(**inputs).logits, merged(**inputs).logits, atol=1e-5)
    assert any("lora_" in n for n, _ in adapted.named_parameters())


def test_default_learning_rates():
    lr = {name: strategies.get(name).default_lr for name in strategies.names()}
    assert lr["full"] < lr["lora"] < lr["frozen"]


@pytest.mark.parametrize("name", ["/no/such/folder", "nobody/no-such-model"])
def test_unloadable_model_is_a_model_error_with_a_fix(name):
    for load_it in (models.load_tokenizer, lambda n: models.load_model(n, tasks.get("classification"), LABELS)):
        started = time.perf_counter()
        with pytest.raises(ModelError) as error:
            load_it(name)
        assert time.perf_counter() - started < 5  # HF_HUB_OFFLINE=1: no network retries
        message = str(error.value)
        assert f"cannot load model '{name}'" in message
        assert "model=minilm" in message and "\n" not in message
        assert ("folder does not exist" in message) == name.startswith("/")


def test_folder_without_a_checkpoint_is_a_model_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="config.json"):
        models.load_model(str(tmp_path), tasks.get("classification"), LABELS)


# A checkpoint that is already a classifier or a tagger: its own head, marked so that a kept head shows.

def headed_checkpoint(folder, tiny_model_dir, labels, head="ForSequenceClassification"):
    """The tiny BERT fine-tuned (so to speak) with a head whose weights are all 1 and biases all 5."""
    import transformers

    config = transformers.BertConfig.from_pretrained(tiny_model_dir, num_labels=len(labels),
                                                     id2label=dict(enumerate(labels)),
                                                     label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    model = getattr(transformers, f"Bert{head}")(config)
    with torch.no_grad():
        model.classifier.weight.fill_(1.0)
        model.classifier.bias.fill_(5.0)
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return str(folder), model


@pytest.mark.parametrize("task, head, saved, wanted", [
    ("classification", "ForSequenceClassification", ["a", "b", "c"], ["neg", "neu", "pos"]),  # same count
    ("classification", "ForSequenceClassification", ["a", "b"], ["neg", "neu", "pos"]),  # another count
    ("classification", "ForSequenceClassification", ["a", "b", "c"], ["a", "b", "c"]),  # even the same labels
    ("token-classification", "ForTokenClassification", ["O", "B-X", "I-X"], ["O", "B-PER", "I-PER"]),
    ("token-classification", "ForSequenceClassification", ["a", "b", "c"], ["O", "B-PER", "I-PER"]),
])
def test_a_checkpoint_with_its_own_head_gets_a_really_new_one(tmp_path, tiny_model_dir, caplog, task, head, saved,
                                                             wanted):
    folder, saved_model = headed_checkpoint(tmp_path / "tuned", tiny_model_dir, saved, head)
    with caplog.at_level("INFO", logger="nlptransfer.models"):
        model = models.load_model(folder, tasks.get(task), wanted)
    assert model.classifier.out_features == len(wanted)
    assert torch.all(model.classifier.bias == 0)  # as transformers initializes a head: zero biases, small weights
    assert model.classifier.weight.abs().max() < 0.5 and model.classifier.weight.std() > 0
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved_model.bert.embeddings.word_embeddings.weight)
    assert model.config.id2label == dict(enumerate(wanted))
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "already has a head of its own (classifier)" in message and f"new {len(wanted)}-label head" in message


def test_a_checkpoint_without_a_head_is_not_said_to_have_one(tiny_model_dir, caplog):
    with caplog.at_level("INFO", logger="nlptransfer.models"):
        models.load_model(tiny_model_dir, tasks.get("classification"), LABELS)
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "with a new 3-label head" in message and "already has a head" not in message


def test_keep_head_keeps_the_checkpoints_head_for_the_same_labels(tmp_path, tiny_model_dir):
    folder, _ = headed_checkpoint(tmp_path / "tuned", tiny_model_dir, LABELS)
    model = models.load_model(folder, tasks.get("classification"), LABELS, keep_head=True)
    assert torch.all(model.classifier.bias == 5) and torch.all(model.classifier.weight == 1)


@pytest.mark.parametrize("saved, wanted, message", [
    (["pos", "neu", "neg"], LABELS, r"has pos, neu, neg and the data has neg, neu, pos; set "
                                    r"data.label_names=\[pos,neu,neg\]"),
    (["a", "b"], LABELS, "has a, b and the data has neg, neu, pos; drop keep_head=true"),
    (None, LABELS, r"has none \(architectures: BertModel\); drop keep_head=true"),
])
def test_keep_head_refuses_other_labels_or_no_head(tmp_path, tiny_model_dir, saved, wanted, message):
    folder = headed_checkpoint(tmp_path / "tuned", tiny_model_dir, saved)[0] if saved else tiny_model_dir
    with pytest.raises(ConfigError, match=message) as error:
        models.load_model(folder, tasks.get("classification"), wanted, keep_head=True)
    assert "\n" not in str(error.value)


def test_keep_head_for_another_task_is_refused(tmp_path, tiny_model_dir):
    folder, _ = headed_checkpoint(tmp_path / "tuned", tiny_model_dir, ["O", "B-X"], "ForTokenClassification")
    with pytest.raises(ConfigError, match="fine-tuned for task=classification"):
        models.load_model(folder, tasks.get("classification"), ["O", "B-X"], keep_head=True)


def test_keep_head_is_part_of_the_checkpoint_fingerprint():
    from nlptransfer.pipeline import trajectory_fingerprint

    fingerprint = [trajectory_fingerprint(RunConfig(keep_head=keep), strategies.get("full"), ["a"], 1)
                   for keep in (False, True)]
    assert fingerprint[0] != fingerprint[1]


# Safetensors only, and messages that say what is wrong with a local folder.

def pickle_only(folder):
    """Turn a saved checkpoint's (or adapter's) safetensors weights into pickled .bin ones."""
    from safetensors.torch import load_file

    pickled = {"model.safetensors": "pytorch_model.bin", "adapter_model.safetensors": "adapter_model.bin"}
    for weights in folder.glob("*.safetensors"):
        torch.save(load_file(weights), folder / pickled[weights.name])
        weights.unlink()
    return folder


def copy_checkpoint(source, folder):
    import shutil

    shutil.copytree(source, folder)
    return folder


def remote_code_checkpoint(source, folder):
    """A checkpoint whose config.json maps its classes to code of its own (auto_map)."""
    import json

    copy_checkpoint(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "nlptransfer-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                                                                 "AutoModel": "modeling_custom.CustomModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_with_only_pickle_weights_is_refused_with_the_conversion(tmp_path, tiny_model_dir):
    folder = pickle_only(copy_checkpoint(tiny_model_dir, tmp_path / "pickled"))
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    with pytest.raises(ModelError) as error:
        models.load_model(str(folder), tasks.get("classification"), LABELS)
    message = str(error.value)
    assert "only pickle weights (pytorch_model.bin)" in message and "can run code" in message
    assert "save_pretrained(folder, safe_serialization=True)" in message and "network" not in message
    assert "\n" not in message


def test_a_folder_with_remote_code_says_trust_remote_code(tmp_path, tiny_model_dir):
    folder = remote_code_checkpoint(tiny_model_dir, tmp_path / "custom")
    for load_it in (models.load_tokenizer,
                    lambda name: models.load_model(name, tasks.get("classification"), LABELS)):
        with pytest.raises(ModelError) as error:
            load_it(str(folder))
        message = str(error.value)
        assert "runs its own Python code (configuration_custom.CustomConfig" in message
        assert "trust_remote_code=true" in message and "network" not in message and "\n" not in message


def test_a_missing_relative_folder_is_not_called_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelError) as error:
        models.load_model("runs/does_not_exist", tasks.get("classification"), LABELS)
    assert "the folder does not exist" in str(error.value) and "hub id and your network" not in str(error.value)


# data.max_length over the model's positions: capped, with a line in the log, for every task.

def test_max_length_is_capped_at_the_models_positions(tiny_model_dir, caplog):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # knows no limit: the config's 128 positions count
    assert tokenizer.model_max_length > 100_000
    with caplog.at_level("INFO", logger="nlptransfer.models"):
        assert models.max_length(tokenizer, 100_000) == 128
    assert "data.max_length=100000 is more than the model reads: inputs hold 128 tokens" in caplog.text
    assert models.max_length(tokenizer, 64) == 64
    cfg = RunConfig(task="token-classification", data={"max_length": 100_000})
    assert tasks.get("token-classification").max_length(tokenizer, cfg) == 128


def test_position_limits_of_model_families():
    assert models.position_limit({"model_type": "bert", "max_position_embeddings": 512}) == 512
    assert models.position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert models.position_limit({"model_type": "t5"}) is None


@pytest.mark.parametrize("long_text", ["truncate", "head_tail", "sliding"])
def test_classification_encodes_within_the_models_positions(tiny_model_dir, tmp_path, long_text):
    from transformers import AutoTokenizer

    rows = "".join(f"{' '.join(['great'] * (150 + i))},{'ab'[i % 2]}\n" for i in range(20))
    (tmp_path / "long.csv").write_text("text,label\n" + rows)
    cfg = RunConfig(model=tiny_model_dir, long_text=long_text,
                    data={"train_file": str(tmp_path / "long.csv"), "max_length": 100_000, "stride": 16})
    task = tasks.get("classification")
    encoded = task.encode(task.load_data(cfg), AutoTokenizer.from_pretrained(tiny_model_dir), cfg)
    lengths = [len(feature["input_ids"]) for split in encoded.values() for feature in split.features]
    assert max(lengths) == 128  # every text is longer: cut (or windowed) at the 128 positions, not 100000
