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
    with pytest.raises(ConfigError, match="strategy=lora does not train a model of several tasks"):
        validate(RunConfig(**{**config("minilm", reviews_csv).__dict__, "strategy": "lora"}))


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
    return run(config(tiny_model_dir, reviews_csv, folder)), folder


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
