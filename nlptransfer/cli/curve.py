"""How much labeled data does the pretrained knowledge save? Learning curves, with and without it.

    python -m nlptransfer.curve recipe=sentiment sizes=50,200,1000,5000 from_scratch=true [key=value ...]
    python -m nlptransfer.curve recipe=topic sizes=8,16,32,64 per_class=true strategies=frozen,full seeds=5

The recipe's data is split once (its seed): the test split (and the validation split) stay the same
for every point, and each point trains on a seeded, stratified subset of the training split of the
given size, once per seed. With `per_class=true` (few-shot curves) the sizes count labeled examples
per class: each run trains on exactly that many of each class (`data.examples_per_class`) and has no
validation split, so none is set aside (it stays in the training split the samples are drawn from)
and each run keeps its last epoch. `strategies=a,b` draws one curve per strategy (each keeps only its
own strategy section: `lora.r=4` does not reach the `full` runs). With `from_scratch=true` the same
architecture, randomly initialized, is trained the same way, with the first strategy. The curve
folder gets `curve.csv` (one row per run), `report.md` (a table per strategy: mean, spread, and how
many labeled examples the pretrained checkpoint needs to match the from-scratch model trained on the
most data), `curve.png` (a line per strategy) and one run folder per point,
`<pretrained|scratch>-<strategy>-n<size>[pc]-s<seed>`; a point whose run already finished with the
same config is not trained again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..api import load_recipe
from ..config import RunConfig, only_own_sections, to_yaml, validate
from ..errors import ConfigError
from ..outputs import folders
from .compare import check_output_dir, markdown_table, parse_tool_command, strategy_list, write_csv
from .run import run_command

logger = logging.getLogger("nlptransfer")

USAGE = """usage: python -m nlptransfer.curve recipe=NAME|path.py sizes=50,200,all [from_scratch=true] [key=value ...]
       python -m nlptransfer.curve recipe=topic sizes=8,16,32,64 per_class=true strategies=frozen,full seeds=5

Trains on growing labeled subsets (same test split) and plots the held-out metric, one line per strategy;
with per_class=true the sizes are labeled examples per class (few-shot, no validation split).
Options of the curve (the other key=value options go to the recipe, see `recipe=NAME --help`):
{options}"""


@dataclass
class CurveOptions:
    sizes: str = "50,200,1000,all"
    """Comma-separated numbers of labeled training examples; `all` is the whole training split."""
    per_class: bool = False
    """Sizes are labeled examples per class (few-shot): exactly that many of each class, no validation split."""
    strategies: str | None = None
    """Comma-separated strategies, one curve each (e.g. frozen,full); default: the recipe's `strategy`."""
    seeds: int = 3
    """Runs per point, seeds seed, seed+1, ...: each draws its own subset and initializes its own head."""
    from_scratch: bool = False
    """Also train the same architecture randomly initialized (with the first strategy): what pretraining is worth."""
    scratch_sizes: str | None = None
    """Sizes for the from-scratch model (e.g. `all`); default: the same sizes."""
    min_steps: int = 0
    """Train each run for at least this many optimizer steps: more epochs for small subsets."""
    output_dir: str | None = None
    """Folder for curve.csv, report.md, curve.png and a run folder per point; default: runs/curve-..."""
    overwrite: bool = False
    """Allow writing into an existing curve folder (finished points with the same config are kept)."""


def size_items(text: str, example: str) -> list[str]:
    """The comma-separated items of `sizes`: positive numbers or `all`."""
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    for item in items:
        if item != "all" and not (item.isdigit() and int(item) >= 1):
            raise ConfigError(f"sizes must be positive numbers or 'all', comma-separated (e.g. {example}); "
                              f"got '{item}'")
    if not items:
        raise ConfigError(f"sizes is empty; e.g. sizes={example}")
    return items


def parse_sizes(text: str, available: int) -> list[int]:
    """`50,200,all` -> sorted sizes, each at most the training split's size."""
    sizes = []
    for item in size_items(text, "50,200,all"):
        if item != "all" and int(item) > available:
            logger.warning("size %s is more than the %d training examples: using all of them", item, available)
        sizes.append(available if item == "all" else min(int(item), available))
    return sorted(set(sizes))


def parse_per_class_sizes(text: str) -> list[int]:
    """`8,16,32` -> sorted sizes per class; `all` means nothing per class."""
    items = size_items(text, "8,16,32")
    if "all" in items:
        raise ConfigError("sizes=all does not combine with per_class=true (sizes are examples per class); "
                          "give numbers, e.g. sizes=8,16,32")
    return sorted({int(item) for item in items})


def check_class_counts(sizes: list[int], class_counts: dict[str, int]) -> None:
    """Refuse a per-class size larger than the rarest class of the training split."""
    rarest = min(class_counts, key=class_counts.get)
    if max(sizes) > class_counts[rarest]:
        raise ConfigError(f"sizes={max(sizes)} per class is more than the {class_counts[rarest]} training examples "
                          f"of class '{rarest}' (the rarest); give sizes of at most {class_counts[rarest]}")


def strategy_names(cfg: RunConfig, strategies: str | None) -> list[str]:
    """The strategies to draw a curve for (default: the config's), each one's config validated."""
    from .. import strategies as registry

    names = [cfg.strategy] if strategies is None else strategy_list(strategies)
    for name in names:
        if not registry.get(name).needs_examples:
            raise ConfigError(f"strategy={name} learns nothing from the labeled examples, so its learning curve is "
                              "flat; draw curves of strategies that train (e.g. strategies=frozen,full)")
        validate(with_strategy(cfg, name, own_only=strategies is not None))
    return names


CURVE = folders.Kind("curve", ("report.md", "*.csv", "*.png", "data", "adapted-encoder", "pretrained-*", "scratch-*"),
                     ("report.md",))
"""What curve writes in its folder: a folder with anything else is not replaced."""


def with_strategy(cfg: RunConfig, name: str, own_only: bool) -> RunConfig:
    """`cfg` with strategy `name`; `own_only`: the other strategies' sections reset (`lora.r=4` is for lora)."""
    return only_own_sections(dataclasses.replace(cfg, strategy=name)) if own_only else cfg


def fixed_splits(cfg: RunConfig, out: Path, per_class: bool = False) -> tuple[RunConfig, int, dict[str, int]]:
    """Split the recipe's data once and save the splits; returns a config reading them, the train size and
    the training examples per class.

    Every point then reads the same test (and validation) files, and `data.max_train_samples`
    (`data.examples_per_class` with `per_class`) with the point's seed draws its stratified subset of
    the training file. With `per_class` no validation split is carved (the points have none: what
    would have been one stays in the training split) and a validation split of the source is left out.
    """
    from .. import tasks
    from ..data.classification import load_classification

    supported = [name for name in tasks.names() if tasks.get(name).learning_curves]
    if not tasks.get(cfg.task).learning_curves:
        raise ConfigError(f"curve supports task={' or '.join(supported)}; got task={cfg.task}")
    whole = dataclasses.replace(cfg.data, max_train_samples=None, examples_per_class=None,
                                validation_fraction=0.0 if per_class else cfg.data.validation_fraction)
    data = load_classification(whole, cfg.seed)
    files = {}
    for split in ("train", "test") if per_class else ("train", "validation", "test"):
        files[split] = out / "data" / f"{split}.parquet"
        files[split].parent.mkdir(parents=True, exist_ok=True)
        write_split(getattr(data, split), data.label_names, files[split])
    pairs = data.train.text_pairs is not None
    data_cfg = dataclasses.replace(
        whole, name=None, config=None, train_file=str(files["train"]),
        validation_file=str(files["validation"]) if "validation" in files else None,
        test_file=str(files["test"]), text_column="text", label_column="label",
        text_pair_column="text_pair" if pairs else None, label_names=list(data.label_names),
        max_validation_samples=None, max_test_samples=None)
    counts = Counter(data.train.labels)
    logger.info("curve: %d training / %d validation / %d test examples, the same for every point", len(data.train),
                0 if per_class else len(data.validation), len(data.test))
    return (dataclasses.replace(cfg, data=data_cfg), len(data.train),
            {name: counts[i] for i, name in enumerate(data.label_names)})


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


def plan(strategies: list[str], sizes: list[int], scratch_sizes: list[int] | None) -> list[tuple[str, str, int]]:
    """The points to train, (model, strategy, size): each strategy's pretrained curve, then the scratch
    curve (with the first strategy) when `scratch_sizes` is given."""
    points = [("pretrained", strategy, size) for strategy in strategies for size in sizes]
    return points + [("scratch", strategies[0], size) for size in scratch_sizes or []]


def point_name(kind: str, strategy: str, size: int, seed: int, per_class: bool) -> str:
    """A point's run folder: `pretrained-full-n200-s42`; `n8pc` for 8 examples per class."""
    return f"{kind}-{strategy}-n{size}{'pc' if per_class else ''}-s{seed}"


def point_config(cfg: RunConfig, size: int, seed: int, all_size: int, min_steps: int,
                 per_class: bool = False) -> RunConfig:
    """A point's config: its subset size (per class with `per_class`) and seed; more epochs if `min_steps`
    asks for them."""
    examples = size * len(cfg.data.label_names) if per_class else size
    steps_per_epoch = math.ceil(math.ceil(examples / cfg.train.batch_size) / cfg.train.grad_accum_steps)
    epochs = max(cfg.train.epochs, math.ceil(min_steps / steps_per_epoch))
    if per_class:
        data = dataclasses.replace(cfg.data, max_train_samples=None, examples_per_class=size)
    else:
        data = dataclasses.replace(cfg.data, max_train_samples=None if size == all_size else size)
    return dataclasses.replace(cfg, seed=seed, overwrite=True, data=data,
                               train=dataclasses.replace(cfg.train, epochs=epochs))


def run_point(recipe: str, cfg: RunConfig) -> dict:
    """Train one point, or read it back if its folder holds a finished run of the same config."""
    import json

    run_dir = Path(cfg.output_dir)
    metrics_file, config_file = run_dir / "metrics.json", run_dir / "config.yaml"
    from ..engine import precision

    written = to_yaml(precision.resolved(cfg)[0])  # config.yaml holds train.mixed_precision=auto's choice
    if metrics_file.is_file() and config_file.is_file() and config_file.read_text(encoding="utf-8") == written:
        logger.info("curve: %s already finished; reusing it", run_dir.name)
    else:
        load_recipe(recipe).run(cfg)
    return json.loads(metrics_file.read_text(encoding="utf-8"))


def curve(recipe: str, cfg: RunConfig | None = None, sizes: str = "50,200,1000,all", seeds: int = 3,
          from_scratch: bool = False, scratch_sizes: str | None = None, min_steps: int = 0,
          output_dir: str | Path | None = None, overwrite: bool = False, per_class: bool = False,
          strategies: str | None = None) -> list[dict]:
    """Train `recipe` on growing subsets (`per_class`: examples per class), pretrained with each strategy
    (and randomly initialized); write the report.

    Returns one row per run: model (pretrained / scratch), strategy, size, seed, test metrics and time.
    """
    cfg = cfg or load_recipe(recipe).Config()
    names = strategy_names(cfg, strategies)  # a bad option or combination fails before any training
    if seeds < 1:
        raise ConfigError("seeds must be at least 1")
    if min_steps < 0:
        raise ConfigError(f"min_steps must be 0 (the recipe's epochs) or more; got {min_steps}")
    if per_class:  # checked against the classes' counts once the data is split
        point_sizes = parse_per_class_sizes(sizes)
        extra = parse_per_class_sizes(scratch_sizes or sizes) if from_scratch else None
    out = Path(output_dir or f"runs/curve-{cfg.recipe}-{datetime.now():%Y%m%d-%H%M%S}")
    check_output_dir(out, CURVE, overwrite, cfg)
    folders.claim(out, CURVE)
    if cfg.pretrain.mlm:  # adapt the encoder once; every pretrained point starts from it
        from ..adapt import adapted_config, default_folder

        cfg = adapted_config(cfg, default_folder(cfg, out))
    base, available, class_counts = fixed_splits(cfg, out, per_class)
    if per_class:
        check_class_counts(point_sizes + (extra or []), class_counts)
    else:
        point_sizes = parse_sizes(sizes, available)
        extra = parse_sizes(scratch_sizes or sizes, available) if from_scratch else None
    points = plan(names, point_sizes, extra)
    metric, table, held_out = cfg.train.metric_for_best, [], {}
    for number, (kind, strategy, size) in enumerate(points, start=1):
        own = with_strategy(base, strategy, own_only=strategies is not None)
        for seed in range(cfg.seed, cfg.seed + seeds):
            point = point_config(own, size, seed, available, min_steps, per_class)
            model = scratch_checkpoint(cfg, seed, out) if kind == "scratch" else cfg.model
            name = point_name(kind, strategy, size, seed, per_class)
            point = dataclasses.replace(point, model=model, output_dir=str(out / name))
            logger.info("curve: %s %s, %d examples%s, seed %d (point %d of %d)", kind, strategy, size,
                        " per class" if per_class else "", seed, number, len(points))
            written = run_point(recipe, point)
            examples = written["data"]["examples"]
            held_out = {split: examples.get(split, 0) for split in ("validation", "test")}
            table.append({"model": kind, "strategy": strategy, "size": size if per_class else examples["train"],
                          "seed": seed, metric: written["test"][metric], "macro_f1": written["test"].get("macro_f1"),
                          "train_examples": examples["train"], "epochs": point.train.epochs,
                          "train_seconds": written["timing"]["train_seconds"]})
    write_report(table, cfg, metric, out, available, held_out, per_class)
    return table


def summary(table: list[dict], metric: str) -> list[dict]:
    """Mean, standard deviation (None for a single run: it has none), min and max of the metric per model,
    strategy and size, the curves in the table's order."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for row in table:
        groups.setdefault((row["model"], row["strategy"], row["size"]), []).append(row[metric])
    curves = list(dict.fromkeys((model, strategy) for model, strategy, _ in groups))
    return [{"model": model, "strategy": strategy, "size": size, "runs": len(values),
             "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
             "min": min(values), "max": max(values)}
            for (model, strategy, size), values in sorted(groups.items(),
                                                          key=lambda item: (curves.index(item[0][:2]), item[0][2]))]


def transfer_gain(points: list[dict], unit: str = "examples") -> str:
    """How many labeled examples the pretrained model needs to match from-scratch on its most data."""
    scratch = [p for p in points if p["model"] == "scratch"]
    pretrained = [p for p in points if p["model"] == "pretrained"]
    if not scratch or not pretrained:
        return ""
    target = max(scratch, key=lambda p: p["size"])
    matching = [p for p in pretrained if p["mean"] >= target["mean"]]
    head = (f"Trained from scratch (strategy {target['strategy']}) on {target['size']:,} {unit}, the same "
            f"architecture reaches {target['mean']:.4f} (mean of {target['runs']}). ")
    if not matching:
        return head + "The pretrained checkpoint does not reach it at any measured size."
    first = min(matching, key=lambda p: p["size"])
    smaller = " (the smallest size measured)" if first["size"] == min(p["size"] for p in pretrained) else ""
    return head + (f"The pretrained checkpoint matches it with {first['size']:,} labeled {unit}{smaller} "
                   f"({first['mean']:.4f}): {target['size'] / first['size']:.0f}x fewer.")


def setting(cfg: RunConfig, available: int, held_out: dict[str, int], per_class: bool, seeds: str) -> str:
    """The report's paragraph on what every point shares and how it draws its training examples."""
    if per_class:
        draw = (f"trains on exactly the given number of labeled examples per class, a seeded sample of the "
                f"{available:,} training examples, with no validation split (as in few-shot learning: each run "
                "keeps its last epoch)")
    else:
        draw = (f"trains on a seeded, stratified subset of the {available:,} training examples "
                f"({held_out['validation']:,} validation examples pick the best epoch)")
    return (f"Test {cfg.train.metric_for_best} on the same held-out test split ({held_out['test']:,} examples) for "
            f"every point; each point {draw} (seeds {seeds}), with the recipe's training settings (at least "
            f"{cfg.train.epochs} epochs; each strategy at its own learning rate unless train.lr is set).")


def write_report(table: list[dict], cfg: RunConfig, metric: str, out: Path, available: int,
                 held_out: dict[str, int], per_class: bool = False) -> None:
    """curve.csv, curve.png and report.md: a section per strategy, with the scratch curve in its strategy's."""
    from ..outputs.export import write_text

    write_csv(out / "curve.csv", table)
    points = summary(table, metric)
    unit = "examples per class" if per_class else "examples"
    plot(points, table, metric, out / "curve.png", per_class)
    seeds = ", ".join(str(seed) for seed in sorted({row["seed"] for row in table}))
    scratch = [p for p in points if p["model"] == "scratch"]
    lines = [f"# Learning curve: recipe `{cfg.recipe}`, model `{cfg.model}`", "",
             setting(cfg, available, held_out, per_class, seeds) + (
                 " `scratch` is the same architecture randomly initialized, trained the same way (in the first "
                 "strategy's section)." if scratch else ""), ""]
    for strategy in dict.fromkeys(p["strategy"] for p in points if p["model"] == "pretrained"):
        mine = [p for p in points if p["strategy"] == strategy]
        body = [[p["model"], p["size"], p["runs"], p["mean"], "n=1" if p["std"] is None else p["std"], p["min"],
                 p["max"]] for p in mine]
        lines += [f"## Strategy `{strategy}`", "",
                  *markdown_table(["model", f"labeled {unit}", "runs", f"mean {metric}", "std", "min", "max"], body),
                  "", transfer_gain([p for p in mine if p["model"] == "pretrained"] + scratch, unit), ""]
    lines += [f"![test {metric} vs labeled {unit}](curve.png)", ""]
    write_text(out / "report.md", "\n".join(lines))
    logger.info("curve: report in %s", out / "report.md")


COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
"""One per strategy's pretrained curve; the scratch curve is tab:orange."""


def plot(points: list[dict], table: list[dict], metric: str, path: Path, per_class: bool = False) -> None:
    """Mean per size with a min-max band and every run as a dot, a line per strategy; x on a log scale."""
    from ..outputs.plots import new_figure, save_figure

    figure = new_figure(6.5, 4.2)
    axes = figure.subplots()
    curves = list(dict.fromkeys((p["model"], p["strategy"]) for p in points))
    several = len({strategy for _, strategy in curves}) > 1
    pretrained_colors = iter(COLORS * len(curves))
    for model, strategy in curves:
        color = "tab:orange" if model == "scratch" else next(pretrained_colors)
        name = f"{model} ({strategy})" if several and model == "scratch" else strategy if several else model
        mine = [p for p in points if (p["model"], p["strategy"]) == (model, strategy)]
        sizes = [p["size"] for p in mine]
        axes.plot(sizes, [p["mean"] for p in mine], marker="o", color=color, label=f"{name}: mean, min-max band")
        axes.fill_between(sizes, [p["min"] for p in mine], [p["max"] for p in mine], color=color, alpha=0.2)
        runs = [row for row in table if (row["model"], row["strategy"]) == (model, strategy)]
        axes.scatter([row["size"] for row in runs], [row[metric] for row in runs], color=color, s=10, alpha=0.6)
    scratch = [p for p in points if p["model"] == "scratch"]
    if scratch:  # the level the pretrained curves have to reach
        most = max(scratch, key=lambda p: p["size"])
        axes.axhline(most["mean"], color="tab:orange", linestyle="--", linewidth=1,
                     label=f"scratch on {most['size']:,} examples{' per class' if per_class else ''}")
    axes.set_xscale("log")
    sizes = sorted({p["size"] for p in points})
    axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axes.minorticks_off()
    axes.set_xlabel("labeled examples per class" if per_class else "labeled training examples")
    axes.set_ylabel(f"test {metric}")
    axes.grid(alpha=0.3)
    axes.legend()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    return run_command(curve_command, argv)


def curve_command(argv: list[str]) -> int:
    parsed = parse_tool_command(argv, CurveOptions(), USAGE)
    if isinstance(parsed, int):
        return parsed
    recipe, cfg, options = parsed
    curve(recipe, cfg, options.sizes, options.seeds, options.from_scratch, options.scratch_sizes, options.min_steps,
          options.output_dir, options.overwrite, options.per_class, options.strategies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
