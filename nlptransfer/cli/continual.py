"""Command line: `python -m nlptransfer.continual --config stages.yaml [key=value ...]` (also `nlptransfer continual
...`), or `python -m nlptransfer.continual extend=runs/A data.train_file=new.csv methods=[replay]`.

Learns a sequence of stages with each method, scores every stage after each, and writes the sequence's folder (the
library side: `nlptransfer.stages`).
"""

from __future__ import annotations

import sys

from ..config import apply_overrides, load_yaml
from ..stages import settings
from .run import configure_console, parse_args, run_command, usage_exit

USAGE = f"""usage: python -m nlptransfer.continual --config stages.yaml [key=value ...] [--debug] [--quiet] [--help]
       python -m nlptransfer.continual extend=runs/A data.train_file=new.csv [methods=[replay]] [key=value ...]
Learns stages one after another (scenarios: {', '.join(settings.SCENARIOS)}) with each of `methods`
({', '.join((*settings.ALONE, *settings.PARTS))}; replay, ewc and lwf combine: replay+lwf), scores every stage's test
split after each stage, and writes report.md (accuracy matrices, average accuracy, backward and forward transfer,
forgetting), accuracy-matrices.png, predictions.jsonl, the final model (model/, or model/<stage>/ where heads differ;
<method>/model/ with several methods) and metrics.json. A killed sequence started again resumes after its last stage.
stages.yaml:
  scenario: class-incremental
  methods: [naive, replay, adapters]
  model: minilm
  train: {{epochs: 1}}
  stages:
    - {{name: first, data: {{name: bbc_news}}, labels: [business, entertainment]}}
    - {{name: second, data: {{name: bbc_news}}, labels: [politics, sport]}}
examples:
  python -m nlptransfer.continual --config stages.yaml output_dir=runs/bbc-stages
  python -m nlptransfer.continual extend=runs/sentiment data.train_file=new_class.csv methods=[replay+lwf]
  python -m nlptransfer.predict model=runs/bbc-stages text="shares fell sharply\""""


def continual_command(argv: list[str]) -> int:
    flags, overrides, config_file = parse_args(argv)
    if (code := usage_exit(flags, overrides, config_file, USAGE, settings.ContinualConfig(), "continual",
                           takes_config=True)) is not None:
        return code
    cfg = settings.ContinualConfig()
    if config_file:
        cfg = load_yaml(cfg, config_file)
    cfg = settings.check(apply_overrides(cfg, overrides, interpolate=False))
    configure_console(quiet=flags["quiet"], verbose=flags["verbose"])
    from ..stages.sequence import learn  # torch loads here: --help and option errors answer at once

    learn(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(continual_command, argv)


if __name__ == "__main__":
    sys.exit(main())
