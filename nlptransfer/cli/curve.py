"""How much labeled data does the pretrained knowledge save? A learning curve, with and without it.

    python -m nlptransfer.curve recipe=sentiment sizes=50,200,1000,5000 from_scratch=true [key=value ...]

The recipe's data is split once (its seed): the validation and test splits stay the same for every
point, and each point trains on a seeded, stratified subset of the training split of the given size,
once per seed. With `from_scratch=true` the same architecture, randomly initialized, is trained the
same way. The curve folder gets `curve.csv` (one row per run), `report.md` (mean, spread, and how
many labeled examples the pretrained checkpoint needs to match the from-scratch model trained on the
most data), `curve.png` and one run folder per point; a point whose run already finished with the
same config is not trained again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..api import load_recipe
from ..config import RunConfig, to_yaml, validate
from ..errors import ConfigError
from .compare import check_output_dir, markdown_table, parse_tool_command, write_csv
from .run import run_command

logger = logging.getLogger("nlptransfer")

USAGE = """usage: python -m nlptransfer.curve recipe=NAME|path.py sizes=50,200,all [from_scratch=true] [key=value ...]

Trains on growing labeled subsets (same validation and test split) and plots the held-out metric.
Options of the curve (the other key=value options go to the recipe, see `recipe=NAME --help`):
{options}"""


@dataclass
class CurveOptions:
    sizes: str = "50,200,1000,all"
    """Comma-separated numbers of labeled training examples; `all` is the whole training split."""
    seeds: int = 3
    """Runs per point, seeds seed, seed+1, ...: each draws its own subset and initializes its own head."""
    from_scratch: bool = False
    """Also train the same architecture randomly initialized: what the pretrained weights are worth."""
    scratch_sizes: str | None = None
    """Sizes for the from-scratch model (e.g. `all`); default: the same sizes."""
    min_steps: int = 0
    """Train each run for at least this many optimizer steps: more epochs for small subsets."""
    output_dir: str | None = None
    """Folder for curve.csv, report.md, curve.png and a run folder per point; default: runs/curve-..."""
    overwrite: bool = False
    """Allow writing into an existing curve folder (finished points with the same config are kept)."""


def parse_sizes(text: str, available: int) -> list[int]:
    """`50,200,all` -> sorted sizes, each at most the training split's size."""
    sizes = []
    for item in (part.strip() for part in str(text).split(",") if part.strip()):
        if item == "all":
            sizes.append(available)
        elif item.isdigit() and int(item) >= 1:
            if int(item) > available:
                logger.warning("size %s is more than the %d training examples: using all of them", item, available)
            sizes.append(min(int(item), available))
        else:
            raise ConfigError(f"sizes must be positive numbers or 'all', comma-separated (e.g. 50,200,all); "
                              f"got '{item}'")
    if not sizes:
        raise ConfigError("sizes is empty; e.g. sizes=50,200,1000,all")
    return sorted(set(sizes))


def fixed_splits(cfg: RunConfig, out: Path) -> tuple[RunConfig, int]:
    """Split the recipe's data once and save the splits; returns a config reading them, and the train size.

    Every point then reads the same validation and test files, and `data.max_train_samples` with the
    point's seed draws its stratified subset of the training file.
    """
    from .. import tasks
    from ..data.classification import load_classification

    supported = [name for name in tasks.names() if tasks.get(name).learning_curves]
    if not tasks.get(cfg.task).learning_curves:
        raise ConfigError(f"curve supports task={' or '.join(supported)}; got task={cfg.task}")
    data = load_classification(dataclasses.replace(cfg.data, max_train_samples=None), cfg.seed)
    files = {}
    for split in ("train", "validation", "test"):
        files[split] = out / "data" / f"{split}.parquet"
        files[split].parent.mkdir(parents=True, exist_ok=True)
        write_split(getattr(data, split), data.label_names, files[split])
    pairs = data.train.text_pairs is not None
    data_cfg = dataclasses.replace(
        cfg.data, name=None, config=None, train_file=str(files["train"]), validation_file=str(files["validation"]),
        test_file=str(files["test"]), text_column="text", label_column="label",
        text_pair_column="text_pair" if pairs else None, label_names=list(data.label_names),
        max_validation_samples=None, max_test_samples=None)
    logger.info("curve: %d training / %d validation / %d test examples, the same for every point", len(data.train),
                len(data.validation), len(data.test))
    return dataclasses.replace(cfg, data=data_cfg), len(data.train)


def write_split(split, label_names: list[str], path: Path) -> None:
    import pandas as pd

    columns = {"text": split.texts, "label": [label_names[i] for i in split.labels]}
    if split.text_pairs is not None:
        columns["text_pair"] = split.text_pairs
    pd.DataFrame(columns).to_parquet(path, index=False)


def scratch_checkpoint(cfg: RunConfig, seed: int, out: Path) -> str:
    """The checkpoint's architecture and tokenizer with random weights (seeded), saved as a checkpoint folder."""
    import torch
    from transformers import AutoConfig, AutoModel

    from .. import catalog, models
    from ..outputs import export

    folder = out / f"scratch-init-s{seed}"
    if not (folder / "config.json").is_file():
        config = AutoConfig.from_pretrained(catalog.resolve_model(cfg.model), trust_remote_code=cfg.trust_remote_code)
        torch.manual_seed(seed)
        model = AutoModel.from_config(config, trust_remote_code=cfg.trust_remote_code)
        export.save_pretrained(model, models.load_tokenizer(cfg.model, cfg.trust_remote_code), folder)
    return str(folder)


def point_config(cfg: RunConfig, size: int, seed: int, all_size: int, min_steps: int) -> RunConfig:
    """A point's config: its subset size and seed; more epochs if `min_steps` asks for them."""
    steps_per_epoch = math.ceil(math.ceil(size / cfg.train.batch_size) / cfg.train.grad_accum_steps)
    epochs = max(cfg.train.epochs, math.ceil(min_steps / steps_per_epoch))
    return dataclasses.replace(cfg, seed=seed, overwrite=True,
                               data=dataclasses.replace(cfg.data, max_train_samples=None if size == all_size else size),
                               train=dataclasses.replace(cfg.train, epochs=epochs))


def run_point(recipe: str, cfg: RunConfig) -> dict:
    """Train one point, or read it back if its folder holds a finished run of the same config."""
    import json

    run_dir = Path(cfg.output_dir)
    metrics_file, config_file = run_dir / "metrics.json", run_dir / "config.yaml"
    if metrics_file.is_file() and config_file.is_file() and config_file.read_text(encoding="utf-8") == to_yaml(cfg):
        logger.info("curve: %s already finished; reusing it", run_dir.name)
    else:
        load_recipe(recipe).run(cfg)
    return json.loads(metrics_file.read_text(encoding="utf-8"))


def curve(recipe: str, cfg: RunConfig | None = None, sizes: str = "50,200,1000,all", seeds: int = 3,
          from_scratch: bool = False, scratch_sizes: str | None = None, min_steps: int = 0,
          output_dir: str | Path | None = None, overwrite: bool = False) -> list[dict]:
    """Train `recipe` on growing subsets, pretrained (and randomly initialized); write the report.

    Returns one row per run: model (pretrained / scratch), size, seed, test metrics and time.
    """
    cfg = validate(cfg or load_recipe(recipe).Config())
    if seeds < 1:
        raise ConfigError("seeds must be at least 1")
    out = Path(output_dir or f"runs/curve-{cfg.recipe}-{datetime.now():%Y%m%d-%H%M%S}")
    check_output_dir(out, "curve", overwrite)
    if cfg.pretrain.mlm:  # adapt the encoder once; every pretrained point starts from it
        from ..adapt import adapted_config, default_folder

        cfg = adapted_config(cfg, default_folder(cfg, out))
    base, available = fixed_splits(cfg, out)
    plan = [("pretrained", size) for size in parse_sizes(sizes, available)]
    if from_scratch:
        plan += [("scratch", size) for size in parse_sizes(scratch_sizes or sizes, available)]
    metric, table, held_out = cfg.train.metric_for_best, [], {}
    for number, (kind, size) in enumerate(plan, start=1):
        for seed in range(cfg.seed, cfg.seed + seeds):
            point = point_config(base, size, seed, available, min_steps)
            model = scratch_checkpoint(cfg, seed, out) if kind == "scratch" else cfg.model
            point = dataclasses.replace(point, model=model, output_dir=str(out / f"{kind}-n{size}-s{seed}"))
            logger.info("curve: %s, %d examples, seed %d (point %d of %d)", kind, size, seed, number, len(plan))
            written = run_point(recipe, point)
            held_out = {split: written["data"]["examples"][split] for split in ("validation", "test")}
            table.append({"model": kind, "size": written["data"]["examples"]["train"], "seed": seed,
                          metric: written["test"][metric], "macro_f1": written["test"].get("macro_f1"),
                          "epochs": point.train.epochs, "train_seconds": written["timing"]["train_seconds"]})
    write_report(table, cfg, metric, out, available, held_out)
    return table


def summary(table: list[dict], metric: str) -> list[dict]:
    """Mean, standard deviation (None for a single run: it has none), min and max of the metric per model and size."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in table:
        groups.setdefault((row["model"], row["size"]), []).append(row[metric])
    return [{"model": model, "size": size, "runs": len(values), "mean": statistics.fmean(values),
             "std": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}
            for (model, size), values in sorted(groups.items())]


def transfer_gain(points: list[dict]) -> str:
    """How many labeled examples the pretrained model needs to match from-scratch on its most data."""
    scratch = [p for p in points if p["model"] == "scratch"]
    pretrained = [p for p in points if p["model"] == "pretrained"]
    if not scratch or not pretrained:
        return ""
    target = max(scratch, key=lambda p: p["size"])
    matching = [p for p in pretrained if p["mean"] >= target["mean"]]
    head = (f"Trained from scratch on {target['size']:,} examples, the same architecture reaches "
            f"{target['mean']:.4f} (mean of {target['runs']}). ")
    if not matching:
        return head + "The pretrained checkpoint does not reach it at any measured size."
    first = min(matching, key=lambda p: p["size"])
    smaller = " (the smallest size measured)" if first["size"] == min(p["size"] for p in pretrained) else ""
    return head + (f"The pretrained checkpoint matches it with {first['size']:,} labeled examples{smaller} "
                   f"({first['mean']:.4f}): {target['size'] / first['size']:.0f}x fewer.")


def write_report(table: list[dict], cfg: RunConfig, metric: str, out: Path, available: int,
                 held_out: dict[str, int]) -> None:
    from ..outputs.export import write_text

    write_csv(out / "curve.csv", table)
    points = summary(table, metric)
    plot(points, table, metric, out / "curve.png")
    body = [[p["model"], p["size"], p["runs"], p["mean"], "n=1" if p["std"] is None else p["std"], p["min"], p["max"]]
            for p in points]
    lines = [f"# Learning curve: recipe `{cfg.recipe}`, model `{cfg.model}`", "",
             f"Test {metric} on the same held-out test split ({held_out['test']:,} examples; "
             f"{held_out['validation']:,} validation examples pick the best epoch) for every point; each point "
             "trains on a seeded, "
             f"stratified subset of the {available:,} training examples (seeds "
             f"{', '.join(str(seed) for seed in sorted({row['seed'] for row in table}))}), with the recipe's "
             f"training settings (strategy {cfg.strategy}, at least {cfg.train.epochs} epochs). `scratch` is the "
             "same architecture randomly initialized, trained the same way.", "",
             *markdown_table(["model", "labeled examples", "runs", f"mean {metric}", "std", "min", "max"], body),
             "", transfer_gain(points), "", f"![test {metric} vs labeled examples](curve.png)", ""]
    write_text(out / "report.md", "\n".join(lines))
    logger.info("curve: report in %s", out / "report.md")


def plot(points: list[dict], table: list[dict], metric: str, path: Path) -> None:
    """Mean per size with a min-max band and every run as a dot; x on a log scale."""
    from ..outputs.plots import new_figure, save_figure

    figure = new_figure(6.5, 4.2)
    axes = figure.subplots()
    for model, color in (("pretrained", "tab:blue"), ("scratch", "tab:orange")):
        mine = [p for p in points if p["model"] == model]
        if not mine:
            continue
        sizes = [p["size"] for p in mine]
        axes.plot(sizes, [p["mean"] for p in mine], marker="o", color=color, label=f"{model}: mean, min-max band")
        axes.fill_between(sizes, [p["min"] for p in mine], [p["max"] for p in mine], color=color, alpha=0.2)
        runs = [row for row in table if row["model"] == model]
        axes.scatter([row["size"] for row in runs], [row[metric] for row in runs], color=color, s=10, alpha=0.6)
    scratch = [p for p in points if p["model"] == "scratch"]
    if scratch:  # the level the pretrained curve has to reach
        most = max(scratch, key=lambda p: p["size"])
        axes.axhline(most["mean"], color="tab:orange", linestyle="--", linewidth=1,
                     label=f"scratch on {most['size']:,} examples")
    axes.set_xscale("log")
    sizes = sorted({p["size"] for p in points})
    axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axes.minorticks_off()
    axes.set_xlabel("labeled training examples")
    axes.set_ylabel(f"test {metric}")
    axes.grid(alpha=0.3)
    axes.legend()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    return run_command(curve_command, argv)


def curve_command(argv: list[str]) -> int:
    parsed = parse_tool_command(argv, CurveOptions(), ("sizes", "scratch_sizes", "output_dir"), USAGE)
    if isinstance(parsed, int):
        return parsed
    recipe, cfg, options = parsed
    curve(recipe, cfg, options.sizes, options.seeds, options.from_scratch, options.scratch_sizes, options.min_steps,
          options.output_dir, options.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
