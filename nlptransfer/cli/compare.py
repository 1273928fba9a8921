"""Which transfer method for this data? Train each strategy on the same splits and seed, and compare.

    python -m nlptransfer.compare recipe=sentiment strategies=full,frozen,lora,gradual [key=value ...]

Every strategy runs the recipe with the same config (data, seed, epochs; each its own default
learning rate unless train.lr is set), by default in a process of its own so that its peak memory
is its own. The comparison folder gets `report.md` (a table: held-out metric with its 95% interval, trainable
parameters, training time, peak memory, model size on disk; and which strategy wins on which criterion,
with the metric's win marked not significant when the test split is too small to tell),
`comparison.csv`, two plots (`metric_vs_params.png`, `metric_vs_time.png`) and one run folder per
strategy. With `pretrain.mlm=true` (or `recipe=adapt`) the encoder is adapted once and every
strategy runs from the adapted and from the original checkpoint, which shows what adaptation gains.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import strategies as registry
from ..api import load_recipe
from ..config import RunConfig, apply_overrides, describe, load_yaml, only_own_sections, to_yaml, validate
from ..errors import ConfigError, TrainingError
from ..outputs import folders
from ..outputs.console import ConsoleHandler
from .run import parse_args, parse_options, quiet_libraries, run_command

logger = logging.getLogger("nlptransfer")

USAGE = """usage: python -m nlptransfer.compare recipe=NAME|path.py [strategies=full,frozen,...] [key=value ...]

Trains each strategy on the same splits and seed and writes report.md, comparison.csv and plots.
Options of the comparison (the other key=value options go to the recipe, see `recipe=NAME --help`):
{options}"""


@dataclass
class CompareOptions:
    strategies: str = ",".join(registry.names())
    """Comma-separated strategies to train, each on the same splits with the same seed (default: all)."""
    output_dir: str | None = None
    """Folder for report.md, comparison.csv, the plots and a run folder per strategy; default: runs/compare-..."""
    overwrite: bool = False
    """Allow writing into an existing comparison folder."""
    isolate: bool = True
    """Train each strategy in a process of its own (its own peak memory); false: in this process, no memory figure."""
    unadapted: bool = True
    """With pretrain.mlm=true: also train each strategy from the original checkpoint, to show the gain."""


@dataclass
class Entry:
    """One trained variant: a strategy, from the adapted encoder or not."""

    name: str
    cfg: RunConfig
    metrics: dict = dataclasses.field(default_factory=dict)
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None
    """CPU time of the run (all its threads): unlike wall time, hardly affected by other jobs on the machine."""


def split_options(overrides: list[str], options_type: type) -> tuple[list[str], list[str]]:
    """Overrides of the command's own options, and those for the recipe."""
    own = {f.name for f in dataclasses.fields(options_type)}
    mine = [item for item in overrides if item.split("=", 1)[0] in own]
    return mine, [item for item in overrides if item.split("=", 1)[0] not in own and not item.startswith("recipe=")]


def recipe_config(recipe_name: str, overrides: list[str], config_file: str | None) -> RunConfig:
    """The recipe's Config with the --config file and the key=value overrides applied."""
    cfg = load_recipe(recipe_name).Config()
    if config_file:
        cfg = load_yaml(cfg, config_file)
    return apply_overrides(cfg, overrides)


def strategy_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in registry.names()]
    if not names or unknown:
        raise ConfigError(f"strategies must be a comma-separated list of {', '.join(registry.names())}; got '{text}'")
    return list(dict.fromkeys(names))


def entries(cfg: RunConfig, strategies: list[str], out: Path, unadapted: bool) -> list[Entry]:
    """The variants to train: each strategy, from the adapted encoder (adapted once, here) and/or the original."""
    from .. import adapt

    variants = []
    if cfg.pretrain.mlm:
        adapted = adapt.adapted_config(cfg, adapt.default_folder(cfg, out))
        variants += [(f"{s}+mlm", only_own_sections(dataclasses.replace(adapted, strategy=s))) for s in strategies]
    if unadapted or not cfg.pretrain.mlm:
        original = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, mlm=False))
        variants += [(s, only_own_sections(dataclasses.replace(original, strategy=s))) for s in strategies]
    return [Entry(name, dataclasses.replace(variant, output_dir=str(out / name), overwrite=True))
            for name, variant in variants]


def compare(recipe: str, cfg: RunConfig | None = None, strategies: list[str] | str | None = None,
            output_dir: str | Path | None = None, overwrite: bool = False, isolate: bool = True,
            unadapted: bool = True) -> list[Entry]:
    """Train `strategies` (default: every registered one) of `recipe` (name or .py path) with `cfg`
    (default: the recipe's) and write the report.

    Returns one `Entry` per trained variant, with its run's metrics.json and peak memory.
    """
    cfg = cfg or load_recipe(recipe).Config()
    strategies = registry.names() if strategies is None else strategies
    strategies = strategy_list(strategies) if isinstance(strategies, str) else list(strategies)
    out = Path(output_dir or f"runs/compare-{cfg.recipe}-{datetime.now():%Y%m%d-%H%M%S}")
    check_output_dir(out, comparison_folder(), overwrite, cfg)
    for strategy in strategies:  # a bad combination fails now, not after the first strategies trained
        validate(only_own_sections(dataclasses.replace(cfg, strategy=strategy)))
    folders.claim(out, comparison_folder())
    trained = entries(cfg, strategies, out, unadapted)
    for entry in trained:
        logger.info("compare: training %s (%d of %d)", entry.name, trained.index(entry) + 1, len(trained))
        if isolate:
            entry.peak_rss_mb, entry.cpu_seconds = run_in_process_of_its_own(recipe, entry, out)
        else:
            started = time.process_time()
            load_recipe(recipe).run(entry.cfg)
            entry.cpu_seconds = time.process_time() - started
        entry.metrics = json.loads((Path(entry.cfg.output_dir) / "metrics.json").read_text(encoding="utf-8"))
    write_report(trained, cfg, out)
    return trained


def comparison_folder() -> folders.Kind:
    """What compare writes in its folder (each strategy's run, config and log, the report): a folder with anything
    else is not replaced."""
    runs = (f"{name}{suffix}" for name in registry.names() for suffix in ("", "+mlm"))
    return folders.Kind("comparison", ("report.md", "*.csv", "*.png", "*.yaml", "*.log", "adapted-encoder", *runs),
                        ("report.md",))


def check_output_dir(out: Path, kind: folders.Kind, overwrite: bool, cfg: RunConfig) -> None:
    """Refuse a file (or a folder under a file) as the output folder, a folder of files `kind` does not write, a
    finished `kind` without overwrite and, with it, a folder holding the runs' inputs; then check the data files and
    mark the folder as `kind`'s: nothing is written before these checks pass."""
    from ..pipeline import check_input_files

    blocking = next((path for path in (out, *out.absolute().parents) if path.is_file()), None)
    if blocking is not None:
        raise ConfigError(f"output_dir={out}: {blocking} is a file, not a folder; choose another output_dir")
    folders.check_writable(out, kind, "output_dir", replacing=overwrite, inputs=folders.config_inputs(cfg))
    if (out / "report.md").exists() and not overwrite:
        raise ConfigError(f"{out} already holds {folders.article(kind.name)}; choose another output_dir or pass "
                          "overwrite=true")
    check_input_files(cfg)


def run_in_process_of_its_own(recipe: str, entry: Entry, out: Path) -> tuple[float, float]:
    """Run one variant with `python -m nlptransfer.run`; returns its peak resident memory (MB) and CPU seconds."""
    from ..outputs.export import write_text

    config_file = out / f"{entry.name}.yaml"
    write_text(config_file, to_yaml(entry.cfg))
    log_file = out / f"{entry.name}.log"
    with open(log_file, "w", encoding="utf-8") as log:
        # no feature cache: frozen's time includes computing its features, as in a first run
        child = subprocess.Popen([sys.executable, "-m", "nlptransfer.run", f"recipe={recipe}", "--config",
                                  str(config_file)], stdout=log, stderr=subprocess.STDOUT,
                                 env=os.environ | {"NLPTRANSFER_CACHE": "off"})
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        lines = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["(no output)"]
        raise TrainingError(f"strategy {entry.name} failed (exit code {child.returncode}): {lines[-1]}; "
                            f"see {log_file}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss: kilobytes on Linux


def folder_mb(folder: Path) -> float | None:
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def headline(cfg: RunConfig) -> str:
    """The metric the comparison ranks by: the one that picks the best epoch."""
    return cfg.train.metric_for_best


def rows(trained: list[Entry], metric: str) -> list[dict]:
    """One flat row per variant: the figures of the table and comparison.csv."""
    table = []
    for entry in trained:
        run_dir, m = Path(entry.cfg.output_dir), entry.metrics
        table.append({
            "strategy": entry.name, metric: m["test"][metric], "macro_f1": m["test"].get("macro_f1"),
            "trainable_params": m["parameters"]["trainable"], "total_params": m["parameters"]["total"],
            "cpu_seconds": entry.cpu_seconds, "run_seconds": m["timing"]["wall_seconds"],
            "train_seconds": m["timing"]["train_seconds"],
            "peak_rss_mb": entry.peak_rss_mb, "model_mb": folder_mb(run_dir / "model"),
            "adapter_mb": folder_mb(run_dir / "adapter"), "best_epoch": m["timing"].get("best_epoch"),
            "test_examples": test_size(m),
        })
    return table


def test_size(metrics: dict) -> int | None:
    """Examples (NER: sentences) in the run's test split, from metrics.json's `data`."""
    data = metrics.get("data") or {}
    return (data.get("examples") or data.get("sentences") or {}).get("test")


Z95 = 1.959964
"""The normal quantile of a two-sided 95% interval."""


def wilson_interval(score: float, n: int | None, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `score` measured on `n` examples (95% by default).

    Unlike the normal interval it stays inside [0, 1] and is not empty at 0 or 1. For macro-F1 or entity F1
    (not proportions) it is an approximation. Without a size: (0, 1), nothing is known.
    """
    if not n:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    center = (score + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(max(score * (1 - score), 0.0) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def significantly_better(best: dict, other: dict, metric: str, z: float = Z95) -> bool:
    """Whether `best` beats `other` by more than chance on test splits of their sizes: a two-proportion z-test
    (unpaired: conservative for two models scored on the same examples)."""
    n1, n2 = best["test_examples"], other["test_examples"]
    if not n1 or not n2:
        return False
    pooled = (best[metric] * n1 + other[metric] * n2) / (n1 + n2)
    spread = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n1 + 1 / n2))
    return best[metric] - other[metric] > z * spread


def winners(table: list[dict], metric: str) -> list[str]:
    """Which variant wins on which criterion, in sentences."""
    ship = lambda row: row["adapter_mb"] if row["adapter_mb"] is not None else row["model_mb"]
    fastest = min(table, key=lambda row: row["cpu_seconds"])
    smallest = min(table, key=ship)
    fewest = min(table, key=lambda row: row["trainable_params"])
    lines = [metric_winner(table, metric),
             f"- **speed**: `{fastest['strategy']}` ({fastest['cpu_seconds']:.0f} CPU seconds for the whole run)",
             f"- **size**: `{smallest['strategy']}` ({ship(smallest):.1f} MB to ship: the adapter where "
             "there is one, else the model folder)",
             f"- **fewest trainable parameters**: `{fewest['strategy']}` ({fewest['trainable_params']:,})"]
    measured = [row for row in table if row["peak_rss_mb"] is not None]
    if measured:
        lightest = min(measured, key=lambda row: row["peak_rss_mb"])
        lines.append(f"- **memory**: `{lightest['strategy']}` ({lightest['peak_rss_mb']:.0f} MB peak RSS)")
    by_name = {row["strategy"]: row for row in table}
    for row in table:
        base = by_name.get(row["strategy"].removesuffix("+mlm"))
        if row["strategy"].endswith("+mlm") and base is not None:
            lines.append(f"- **domain-adaptive pretraining** with `{base['strategy']}`: {metric} "
                         f"{base[metric]:.4f} -> {row[metric]:.4f} ({row[metric] - base[metric]:+.4f})")
    return lines


def metric_winner(table: list[dict], metric: str) -> str:
    """The best variant on the held-out metric with its 95% interval, and whether it beats the runner-up by more
    than the test split's size can tell."""
    best = max(table, key=lambda row: row[metric])
    tied = ", ".join(f"`{row['strategy']}`" for row in table if row[metric] == best[metric])
    n = best.get("test_examples")
    if not n:
        return f"- **{metric}**: {tied} ({best[metric]:.4f} on the test split)"
    low, high = wilson_interval(best[metric], n)
    line = f"- **{metric}**: {tied} ({best[metric]:.4f} on {n:,} test examples, 95% interval {low:.3f}-{high:.3f})"
    others = [row for row in table if row[metric] < best[metric]]
    if not others:
        return line
    runner_up = max(others, key=lambda row: row[metric])
    if significantly_better(best, runner_up, metric):
        return line + f"; ahead of `{runner_up['strategy']}` ({runner_up[metric]:.4f}) by more than the uncertainty"
    return line + (f"; not significant: `{runner_up['strategy']}` ({runner_up[metric]:.4f}) is within the "
                   "uncertainty, a larger test split would tell them apart")


def with_interval(score: float | None, n: int | None) -> str | float | None:
    """A held-out score with its 95% interval, as the report's table shows it."""
    if score is None or not n:
        return score
    low, high = wilson_interval(score, n)
    return f"{score:.4f} ({low:.3f}-{high:.3f})"


def markdown_table(headers: list[str], body: list[list]) -> list[str]:
    def cell(value) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4f}" if value < 1 else f"{value:,.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    return ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)] + [
        "| " + " | ".join(cell(value) for value in row) + " |" for row in body]


def write_csv(path: Path, table: list[dict]) -> None:
    """The rows as a csv file with a header, written atomically."""
    from ..outputs.export import write_text

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    write_text(path, text.getvalue())


def write_report(trained: list[Entry], cfg: RunConfig, out: Path) -> None:
    """report.md, comparison.csv and the two plots."""
    from ..outputs.export import write_text

    metric = headline(cfg)
    table = rows(trained, metric)
    write_csv(out / "comparison.csv", table)
    plot(table, metric, "trainable_params", "trainable parameters", out / "metric_vs_params.png", log_x=True)
    plot(table, metric, "cpu_seconds", "CPU time of the run (s)", out / "metric_vs_time.png", log_x=False)
    data = trained[0].metrics.get("data", {})
    examples = data.get("examples") or data.get("sentences") or {}
    headers = ["strategy", f"test {metric} (95% interval)", "macro-F1", "trainable params", "CPU time (s)",
               "wall time (s)", "train loop (s)", "peak RSS (MB)", "model on disk (MB)", "adapter (MB)"]
    body = [[row["strategy"], with_interval(row[metric], row["test_examples"]), row["macro_f1"],
             row["trainable_params"], row["cpu_seconds"], row["run_seconds"], row["train_seconds"],
             row["peak_rss_mb"], row["model_mb"], row["adapter_mb"]]
            for row in table]
    lines = [f"# Transfer methods compared: recipe `{cfg.recipe}`", "",
             f"Model `{cfg.model}`; data: {data.get('source', '?')}; "
             + ", ".join(f"{n} {split}" for split, n in examples.items())
             + f"; the same splits and seed ({cfg.seed}) for every strategy, {cfg.train.epochs} epochs, "
             f"max length {cfg.data.max_length}. Test metrics on the held-out test split, with the 95% Wilson interval "
             f"of {metric} for that many test examples (approximate for F1 scores): differences inside it are "
             "noise. CPU and wall time: the whole "
             "run (data, training with frozen's feature extraction, evaluation); wall time grows with other jobs on "
             "the machine, CPU time hardly; train loop: the epochs' wall time alone. Peak RSS: the run's process "
             "(n/a when not run in a process of its own).",
             "", *markdown_table(headers, body), "", "## Winners", "", *winners(table, metric), "",
             f"![{metric} vs trainable parameters](metric_vs_params.png)", "",
             f"![{metric} vs training time](metric_vs_time.png)", ""]
    write_text(out / "report.md", "\n".join(lines))
    logger.info("compare: report in %s", out / "report.md")


def plot(table: list[dict], metric: str, x_key: str, x_label: str, path: Path, log_x: bool) -> None:
    """A scatter of the held-out metric against one cost, each point named by its variant."""
    from ..outputs.plots import new_figure, save_figure

    figure = new_figure(6, 4)
    axes = figure.subplots()
    for row in table:
        axes.scatter(row[x_key], row[metric], s=40)
        axes.annotate(row["strategy"], (row[x_key], row[metric]), textcoords="offset points", xytext=(5, 5))
    if log_x:  # symmetric-log keeps a strategy that trains nothing (zeroshot: 0 parameters) on the plot
        axes.set_xscale("symlog", linthresh=1) if any(row[x_key] <= 0 for row in table) else axes.set_xscale("log")
    axes.margins(x=0.15, y=0.1)  # room for the names
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"test {metric}")
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def console_logging(quiet: bool) -> None:
    """Progress on the console (runs in this process add their own train.log)."""
    quiet_libraries()
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(isinstance(handler, ConsoleHandler) for handler in logger.handlers):
        console = ConsoleHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)


def main(argv: list[str] | None = None) -> int:
    return run_command(compare_command, argv)


def parse_tool_command(argv: list[str], options: Any, usage: str):
    """compare's and curve's command line: (recipe name, its config, the tool's options), or the exit
    code when only the usage or `--help` was printed."""
    flags, overrides, config_file = parse_args(argv)
    mine, for_recipe = split_options(overrides, type(options))
    recipe_items = [o for o in overrides if o.startswith("recipe=")]
    if flags["help"] or not recipe_items:
        print(usage.format(options=describe(options)), file=sys.stdout if flags["help"] else sys.stderr)
        return 0 if flags["help"] else 2
    options = parse_options(options, mine)
    recipe = recipe_items[-1].split("=", 1)[1]
    cfg = recipe_config(recipe, for_recipe, config_file)
    console_logging(flags["quiet"])
    return recipe, cfg, options


def compare_command(argv: list[str]) -> int:
    parsed = parse_tool_command(argv, CompareOptions(), USAGE)
    if isinstance(parsed, int):
        return parsed
    recipe, cfg, options = parsed
    compare(recipe, cfg, options.strategies, options.output_dir, options.overwrite, options.isolate,
            options.unadapted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
