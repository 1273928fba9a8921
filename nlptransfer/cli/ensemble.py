"""Command line: `python -m nlptransfer.ensemble RUN1 RUN2 ... [method=mean|weights|stack] [output_dir=...]`
(also `nlptransfer ensemble ...`).

Combines finished runs of one label set and one test split (the library side: `nlptransfer.ensembles`) and writes
an ensemble folder that `nlptransfer.predict model=FOLDER` serves.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .. import combiners
from ..errors import ConfigError
from .run import configure_console, parse_args, parse_options, run_command, usage_exit


@dataclass
class EnsembleOptions:
    method: str = "mean"
    """mean (average probabilities), weights (weights fitted on validation: log-likelihood), stack (logistic
    regression on the members' validation probabilities)."""
    output_dir: str | None = None
    """The ensemble folder; default: runs/ensemble-<method>-<time>."""
    overwrite: bool = False
    """Replace the ensemble an output_dir already holds (only what an ensemble writes)."""
    batch_size: int = 32
    """Texts per forward pass while the members predict."""


USAGE = f"""usage: python -m nlptransfer.ensemble RUN1 RUN2 [RUN3 ...] [method={'|'.join(combiners.names())}]
                                       [output_dir=FOLDER] [overwrite=true] [--debug] [--quiet] [--help]
Combines finished runs (same labels, same test split), scores the ensemble beside each member on the test split, and
writes ensemble.json, report.md, ensemble.png, predictions.jsonl, README.md and metrics.json.
examples:
  python -m nlptransfer.ensemble runs/sentiment-full-1 runs/sentiment-lora-1 runs/sentiment-contrastive-1
  python -m nlptransfer.ensemble runs/a runs/b method=stack output_dir=runs/ensemble-ab
  python -m nlptransfer.predict model=runs/ensemble-ab text="what a great day\""""


def ensemble_command(argv: list[str]) -> int:
    flags, items, config_file = parse_args(argv)
    if (code := usage_exit(flags, items, config_file, USAGE, EnsembleOptions(), "ensemble")) is not None:
        return code
    runs = [item for item in items if "=" not in item]
    options = parse_options(EnsembleOptions(), [item for item in items if "=" in item])
    combiners.get(options.method)
    if isinstance(options.batch_size, bool) or options.batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of at least 1, got {options.batch_size}")
    configure_console(quiet=flags["quiet"], verbose=flags["verbose"])
    from ..ensembles import ensemble  # torch loads here: --help and option errors answer at once

    ensemble(runs, options.method, options.output_dir, options.overwrite, options.batch_size)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(ensemble_command, argv)


if __name__ == "__main__":
    sys.exit(main())
