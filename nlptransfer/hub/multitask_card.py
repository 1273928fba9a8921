"""The model card of a multi-task run (task=multitask): one README.md for every task.

The shared encoder's base and the strategy once; per task its labels, data, test results (the model-index entries
named by task, as `card.py` writes a single task's) and how its `model/<task>/` folder loads.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCardData

from .. import strategies, tasks
from ..config import RunConfig
from ..outputs.model_files import saved_label_names
from .card import (
    LICENSES,
    card_base,
    data_section,
    eval_results,
    hub_dataset,
    results_section,
    run_files,
    split_sizes,
    training_section,
)

MERGED_NOTE = ("The adapters are merged into the shared encoder of each task's model in `model/<task>/`; a multi-task "
               "run writes no adapter folder.")


def task_metrics(metrics: dict, name: str) -> dict:
    """One task of a multi-task run's metrics.json as a single-task run's: its test, baselines and data."""
    return {"test": metrics.get("test", {}).get(name, {}), "baselines": metrics.get("baselines", {}).get(name, {}),
            "data": metrics.get("tasks", {}).get(name, {}).get("data", {})}


def multitask_card(cfg: RunConfig, metrics: dict, *, run_dir: Path, repo_id: str | None = None,
                   license: str | None = None) -> str:
    """The README.md of a multi-task run: every task's data, test results (model-index entries named by task) and
    usage; the shared encoder's base and the strategy once."""
    from ..tasks.alone import card_line
    from ..tasks.multitask import sub_task

    model_name = repo_id.split("/")[-1] if repo_id else f"{cfg.recipe}-multitask-{cfg.strategy}"
    subs = [(sub.name, sub_task(cfg, sub)[1], task_metrics(metrics, sub.name)) for sub in cfg.multitask.tasks]
    results = []
    for name, sub_cfg, sub_metrics in subs:
        for result in eval_results(sub_cfg, sub_metrics["test"]):
            result.task_name, result.metric_name = f"{result.task_name} ({name})", f"{name}: {result.metric_name}"
            results.append(result)
    base, strategy = card_base(cfg, metrics), strategies.get(cfg.strategy)
    tags = list(dict.fromkeys(tasks.get(sub_cfg.task).pipeline_tag for _, sub_cfg, _ in subs))
    datasets = [d for d in dict.fromkeys(hub_dataset(sub_cfg) for _, sub_cfg, _ in subs) if d]
    header = ModelCardData(
        library_name="transformers", base_model=base, base_model_relation="finetune" if base else None,
        datasets=datasets or None, license=license or LICENSES.get(base or "", "other"),
        tags=["nlptransfer", "multitask", *tags, strategy.card_tag],
        metrics=list(dict.fromkeys(r.metric_type for r in results)) or None,
        model_name=model_name if results else None, eval_results=results or None)
    start = f"[{base}](https://huggingface.co/{base})" if base else "A local checkpoint"
    names = ", ".join(f"`{name}` ({sub_cfg.task}, loss weight {sub.weight:g})"
                      for (name, sub_cfg, _), sub in zip(subs, cfg.multitask.tasks))
    sections = [f"# {model_name}\n\n{start} {strategy.card_verb} {len(subs)} tasks at once (one shared encoder, a head "
                f"per task), with nlptransfer (recipe `{cfg.recipe}`, task `multitask`, strategy "
                f"`{cfg.strategy}`, sampler `{cfg.multitask.sampler}`): {names}. Each task is saved as its own "
                "transformers model (the shared encoder and that task's head) in `model/<task>/`.",
                training_section(cfg, metrics, note=MERGED_NOTE if strategy.adapter else None)]
    for name, sub_cfg, sub_metrics in subs:
        sizes = split_sizes(run_dir / "model" / name, sub_metrics)  # its own data only
        intro = tasks.get(sub_cfg.task).card_intro(saved_label_names(run_dir / "model" / name / "config.json"))
        sections.append("\n\n".join([
            f"## Task `{name}`", f"{intro[1]}: {', '.join(f'`{n}`' for n in intro[2])}.",
            "#" + data_section(sub_cfg, sizes), "#" + results_section(sub_cfg, sub_metrics),
            *filter(None, [card_line(metrics.get("alone", {}).get(name))])]))
    if "mean" in metrics.get("test", {}):
        sections.append(f"Mean of the tasks' headline test metrics: {metrics['test']['mean']:.4f}.")
    sections.append("\n".join([
        "## Usage", "", "Each task's folder loads in transformers alone, e.g.:", "", "```python",
        "from transformers import pipeline", "",
        *(f'{name} = pipeline("{tasks.get(sub_cfg.task).pipeline_tag}", model="path/to/run/model/{name}")'
          for name, sub_cfg, _ in subs), "```", "",
        "or every task at once (or one by name, `task=...`) with nlptransfer installed:", "", "```python",
        'from nlptransfer import load_model\n\nprint(load_model("path/to/run").predict(["Your text here"]))', "```"]))
    return f"---\n{header.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def multitask_run_card(run_dir: str | Path, *, repo_id: str | None = None) -> str:
    """The model card of a finished multi-task run folder (config.yaml, metrics.json, model/<task>/)."""
    run_dir = Path(run_dir)
    cfg, metrics = run_files(run_dir)
    return multitask_card(cfg, metrics, run_dir=run_dir, repo_id=repo_id)
