"""task=multitask: config checks, the single-task batch sampler, a run with a classification and an NER task,
and each task's exported model in plain transformers.pipeline()."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nlptransfer.config import RunConfig, validate
from nlptransfer.errors import ConfigError
from nlptransfer.tasks.multitask import TaskBatches, task_weights

ASSETS = Path(__file__).parent / "assets"
pytestmark = pytest.mark.usefixtures("one_thread")


def tasks_list(reviews: Path) -> list[dict]:
    return [{"name": "sentiment", "task": "classification", "data": {"train_file": str(reviews), "max_length": 32}},
            {"name": "ner", "task": "token-classification", "weight": 2.0,
             "data": {"train_file": str(ASSETS / "ner_tiny.conll"), "max_length": 32}}]


def config(model: str, reviews: Path, output_dir: Path | None = None, **multitask) -> RunConfig:
    return RunConfig(task="multitask", model=model, output_dir=str(output_dir) if output_dir else None,
                     multitask={"tasks": tasks_list(reviews)} | multitask,
                     train={"epochs": 3, "batch_size": 4, "metric_for_best": "mean", "lr": 1e-3})


@pytest.mark.parametrize(("change", "message"), [
    ({"tasks": []}, "non-empty multitask.tasks"),
    ({"temperature": 0.0}, "multitask.temperature must be above 0"),
    ({"sampler": "uniform"}, "multitask.sampler must be one of"),
])
def test_bad_multitask_options_are_one_line(reviews_csv, change, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate(config("minilm", reviews_csv, **change))
    assert "\n" not in str(error.value)


def test_an_empty_task_list_is_named_before_the_metric_it_cannot_have():
    with pytest.raises(ConfigError, match="non-empty multitask.tasks"):  # not "metric_for_best=accuracy ..."
        validate(RunConfig(task="multitask"))


def test_tasks_sharing_a_name_no_data_or_another_checkpoint_are_refused(reviews_csv):
    shared = tasks_list(reviews_csv)
    shared[1]["name"] = "sentiment"
    no_data = tasks_list(reviews_csv)
    no_data[1]["data"] = {}
    other = tasks_list(reviews_csv)
    other[1]["model"] = "bert"
    for tasks, message in ((shared, "share the name sentiment"), (no_data, "ner has no data"),
                           (other, "names another checkpoint")):
        with pytest.raises(ConfigError, match=message):
            validate(config("minilm", reviews_csv, tasks=tasks))
    with pytest.raises(ConfigError, match="strategy=contrastive does not train a model of several tasks"):
        validate(RunConfig(**{**config("minilm", reviews_csv).__dict__, "strategy": "contrastive"}))


@pytest.mark.parametrize("sampler", ["proportional", "temperature", "round_robin"])
def test_batches_are_single_task_and_follow_the_sampler(sampler):
    sizes = [300, 60]
    batches = TaskBatches(sizes, batch_size=4, seed=0, sampler=sampler, temperature=3.0)
    counts = Counter()
    for epoch in range(20):
        batches.set_epoch(epoch)
        for batch in batches:
            tasks = {int(index >= sizes[0]) for index in batch}
            assert len(tasks) == 1
            counts[tasks.pop()] += 1
    share = counts[0] / sum(counts.values())
    assert share == pytest.approx(task_weights(sizes, sampler, 3.0)[0], abs=0.03)
    batches.set_epoch(5)
    order = list(batches)
    batches.skip = 7
    assert list(batches) == order[7:]  # a resumed run's position


@pytest.fixture(scope="module")
def trained(tiny_model_dir, reviews_csv, tmp_path_factory):
    """One multi-task run (sentiment and ner) and its folder, shared by the tests that read it."""
    from nlptransfer.pipeline import run

    folder = tmp_path_factory.mktemp("multitask") / "run"
    return run(config(tiny_model_dir, reviews_csv, folder, compare_alone=True)), folder


def test_compare_alone_trains_each_task_alone_and_reports_it_beside_the_multitask_score(trained):
    import json

    import yaml

    folder = trained[1]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["alone"]) == ["sentiment", "ner"]
    for name, metric in (("sentiment", "accuracy"), ("ner", "f1")):
        entry, alone_dir = metrics["alone"][name], folder / "alone" / name
        alone = json.loads((alone_dir / "metrics.json").read_text())  # a finished run of that task alone
        assert entry["metric"] == metric and entry["alone"] == alone["test"][metric] == entry["test"][metric]
        assert entry["multitask"] == metrics["test"][name][metric]
        assert entry["difference"] == pytest.approx(entry["multitask"] - entry["alone"])
        options = yaml.safe_load((alone_dir / "config.yaml").read_text())
        assert options["task"] != "multitask" and options["strategy"] == "full" and options["seed"] == 42
        assert options["train"]["epochs"] == 3 and options["train"]["lr"] == 1e-3
        assert (f"test {metric} {entry['alone']:.4f}, against {entry['multitask']:.4f}"
                in (folder / "README.md").read_text())
    assert "each task trained alone with the same options" in (folder / "train.log").read_text()


def test_multitask_run_trains_both_heads_and_exports_each_task(trained):
    import json

    import torch
    from transformers import pipeline

    results, tmp_path = trained[0], trained[1].parent
    history = results.history
    assert {"sentiment", "ner", "mean", "sentiment.accuracy"} <= set(history[0]["validation"])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"sentiment", "ner", "mean"}
    model = results.model.eval()
    texts = ["the food was fine", "john lives in paris"]
    for name, kind in (("sentiment", "text-classification"), ("ner", "token-classification")):
        folder = tmp_path / "run" / "model" / name
        exported = pipeline(kind, model=str(folder), device="cpu")
        assert type(exported.model).__name__.startswith("Bert")
        inputs = exported.tokenizer(texts[0], return_tensors="pt")
        with torch.no_grad():
            expected = model.task_models[name](**inputs).logits
            got = exported.model(**inputs).logits
        torch.testing.assert_close(got, expected)
        assert exported(texts[0]) is not None


def test_a_multitask_run_predicts_every_task_or_one_by_name(trained, capsys):
    import json

    from nlptransfer import load_model
    from nlptransfer.cli.predict import main
    from nlptransfer.errors import ModelError

    folder = trained[1]
    texts = ["the food was fine", "john lives in paris"]
    alone = {name: load_model(folder / "model" / name).predict(texts) for name in ("sentiment", "ner")}
    rows = load_model(folder).predict(texts)
    assert [row["text"] for row in rows] == texts and list(rows[0]["tasks"]) == ["sentiment", "ner"]
    for name, expected in alone.items():
        assert [{"text": row["text"]} | row["tasks"][name] for row in rows] == expected
        assert load_model(str(folder), task=name).predict(texts) == expected
    assert main([f"model={folder}", "task=ner", f"text={texts[1]}"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == alone["ner"][1]
    for location, task, message in ((folder, "pos", "has no such task; its tasks: sentiment, ner"),
                                    (folder / "model" / "ner", "ner", "is not a multi-task run")):
        with pytest.raises(ModelError, match=message) as error:
            load_model(location, task=task)
        assert "\n" not in str(error.value)


def test_a_multitask_run_writes_one_card_for_every_task_and_refuses_push(trained):
    import yaml

    from nlptransfer.config import PushConfig
    from nlptransfer.errors import ModelError
    from nlptransfer.hub.push import push_run

    folder = trained[1]
    card = (folder / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---")[1])
    names = [metric["name"] for result in header["model-index"][0]["results"] for metric in result["metrics"]]
    assert "sentiment: Test Accuracy" in names and "ner: Test F1 (entity level)" in names
    assert {"multitask", "text-classification", "token-classification"} <= set(header["tags"])
    assert header["library_name"] == "transformers"
    for text in ("## Task `sentiment`", "## Task `ner`", "strategy `full`", "A local checkpoint",
                 'pipeline("token-classification", model="path/to/run/model/ner")', 'load_model("path/to/run")'):
        assert text in card
    with pytest.raises(ModelError, match="multi-task run, which does not push") as error:
        push_run(folder, PushConfig(repo_id="user/name"))
    assert "\n" not in str(error.value)


def test_the_readme_example_is_a_valid_multitask_config(tmp_path):
    from nlptransfer.config import load_yaml

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Multi-task learning", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "multitask.yaml").write_text(example, encoding="utf-8")
    cfg = validate(load_yaml(RunConfig(), tmp_path / "multitask.yaml"))
    assert [(sub.name, sub.data.name, sub.weight) for sub in cfg.multitask.tasks] == [
        ("sentiment", "tweets", 1.0), ("ner", "wnut16", 2.0)]
    assert cfg.multitask.sampler == "temperature" and cfg.train.metric_for_best == "mean"


def two_task_model():
    """A tiny random MultitaskModel: a 3-label classifier and a 5-tag token classifier on one 2-layer BERT."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    from nlptransfer.tasks.multitask import shared_model

    torch.manual_seed(0)
    sizes = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64}
    task_models = {"sentiment": BertForSequenceClassification(BertConfig(**sizes, num_labels=3)),
                   "ner": BertForTokenClassification(BertConfig(**sizes, num_labels=5))}
    return shared_model({"models": task_models, "weights": [1.0, 1.0]})


def trained_names(model) -> set[str]:
    return {name.removeprefix("base_model.model.") for name, p in model.named_parameters() if p.requires_grad}


HEADS = {f"task_models.{task}.classifier.{kind}" for task in ("sentiment", "ner") for kind in ("weight", "bias")}


@pytest.mark.parametrize("strategy", ["full", "frozen", "bitfit", "gradual", "lora", "ia3"])
def test_every_strategy_trains_the_shared_encoder_as_it_trains_one_model(strategy):
    from nlptransfer import models, strategies, tasks

    model = two_task_model()
    encoder = {f"task_models.sentiment.bert.{name}" for name, _ in model.base_model.named_parameters()}
    cfg = RunConfig(task="multitask", strategy=strategy, freeze={"embeddings": True} if strategy == "full" else {})
    prepared = strategies.get(strategy).prepare(model, cfg, tasks.get("multitask"))
    trained = trained_names(prepared)
    heads = {name.replace(".modules_to_save.default.", ".") for name in trained if "modules_to_save" in name}
    if strategy == "full":  # freeze.embeddings=true: all but the embeddings
        assert trained == HEADS | {name for name in encoder if ".embeddings." not in name}
    elif strategy in ("frozen", "gradual"):  # gradual: stage 0
        assert trained == HEADS
    elif strategy == "bitfit":
        assert trained == HEADS | {name for name in encoder if name.endswith("bias")}
    else:  # the adapters on the one encoder and each task's head (peft's trainable copy)
        adapters = trained - {name for name in trained if "modules_to_save" in name}
        assert heads == HEADS and adapters
        assert all((".lora_" if strategy == "lora" else ".ia3_l.") in name and ".sentiment.bert." in name
                   for name in adapters)
    assert models.count_parameters(prepared)[0] == sum(
        p.numel() for name, p in prepared.named_parameters() if p.requires_grad and ".original_module." not in name)
    if strategy == "gradual":
        from nlptransfer.strategies.gradual import unfreeze_stage

        unfreeze_stage(model, 2, cfg.gradual, epochs=2)  # the last stage: everything
        assert trained_names(model) == HEADS | encoder


def tiny_run_argv(model: str, reviews: Path, folder: Path, tmp_path: Path) -> list[str]:
    """A one-epoch lora multi-task run on the CLI, 16 training examples a task, checkpointed every 2 steps (4 steps
    an epoch)."""
    import yaml

    tasks = tasks_list(reviews)
    for task in tasks:
        task["data"]["max_train_samples"] = 16
    settings = {"task": "multitask", "model": model, "strategy": "lora", "multitask": {"tasks": tasks},
                "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "metric_for_best": "mean", "patience": None},
                "checkpoint": {"every_steps": 2, "keep": 2}}
    (tmp_path / "multitask.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return ["recipe=sentiment", "--config", str(tmp_path / "multitask.yaml"), f"output_dir={folder}", "--quiet"]


def test_a_lora_multitask_run_exports_merged_task_models_and_resumes_bit_identically(
        tiny_model_dir, reviews_csv, tmp_path, server):
    """One lora run in this process (the reference); the same run on the CLI killed mid-epoch and resumed."""
    import json

    import torch
    from nlptransfer.recipes.sentiment import Config
    from safetensors.torch import load_file
    from test_checkpoint import drive
    from transformers import pipeline

    from nlptransfer.config import load_yaml
    from nlptransfer.pipeline import run

    reference = tmp_path / "reference"
    tiny_run_argv(tiny_model_dir, reviews_csv, reference, tmp_path)  # the YAML the CLI runs read
    cfg = load_yaml(Config(output_dir=str(reference)), tmp_path / "multitask.yaml")
    model = run(cfg).model.eval()
    assert not (reference / "adapter").exists() and "adapter/" not in (reference / "README.md").read_text()
    assert not (reference / "alone").exists()  # multitask.compare_alone is off: nothing more is trained
    for name, kind in (("sentiment", "text-classification"), ("ner", "token-classification")):
        exported = pipeline(kind, model=str(reference / "model" / name), device="cpu")
        assert type(exported.model).__name__.startswith("Bert")  # plain transformers: no peft, no adapter
        inputs = exported.tokenizer(["the food was fine", "john lives in paris"], return_tensors="pt", padding=True)
        with torch.no_grad():
            torch.testing.assert_close(exported.model(**inputs).logits, model.task_models[name](**inputs).logits)

    run_dir = tmp_path / "run"
    argv = tiny_run_argv(tiny_model_dir, reviews_csv, run_dir, tmp_path)
    # one thread, as this process (one_thread): the same sums, bit for bit; killed mid-epoch after the step-2 checkpoint
    killed, _ = drive(server, tmp_path, argv, "step", 3, name="killed", threads=1)
    assert killed.returncode == -9 and not (run_dir / "metrics.json").exists()
    resumed, resumed_ids = drive(server, tmp_path, argv + ["resume=auto"], name="resumed", threads=1)
    assert resumed.returncode == 0, resumed.stderr
    assert len(resumed_ids) == 4 - 2  # the sampler went on where the checkpoint stopped
    expected, got = (json.loads((folder / "metrics.json").read_text()) for folder in (reference, run_dir))
    assert got["test"] == expected["test"]
    assert [e["train_loss"] for e in got["epochs"]] == [e["train_loss"] for e in expected["epochs"]]
    for name in ("sentiment", "ner"):
        want, have = (load_file(str(folder / "model" / name / "model.safetensors")) for folder in (reference, run_dir))
        assert want.keys() == have.keys() and all(torch.equal(want[k], have[k]) for k in want)
