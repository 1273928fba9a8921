"""Which hyperparameters for this data? Search them with Optuna; each trial is a normal run of the recipe.

    python -m nlptransfer.sweep recipe=sentiment trials=20 'train.lr=loguniform(1e-5,1e-3)' \\
        'train.epochs=choice(2,3,4)' 'strategy=choice(full,lora)' [key=value ...]

The options given as distributions are searched (TPE sampler seeded with the recipe's seed, median pruning on
the validation metric after each epoch); the other key=value options go to the recipe, as in compare and curve.
Each trial trains, in this process, in `<sweep>/trial-<n>`; trials are ranked on their best validation
`train.metric_for_best` only. The sweep folder gets `study.db` (Optuna's SQLite storage: `resume=auto` continues a
killed sweep, and sweeps started with resume=auto on the same folder share the study), `report.md` (every trial,
the best one, and its test metrics, the only test scores the sweep reads), `trials.csv`, `best.yaml` (the best
trial's config: `python -m nlptransfer.run recipe=NAME --config best.yaml`) and Optuna's plots of the optimization
history and the parameter importances. The search itself is `nlptransfer.tuning`.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import tuning
from ..api import load_recipe
from ..config import RunConfig
from ..errors import ConfigError
from .compare import markdown_table, parse_tool_command, write_csv
from .run import configure_console, run_command

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger("nlptransfer")

HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"

USAGE = """usage: python -m nlptransfer.sweep recipe=NAME|path.py [trials=20] KEY=DISTRIBUTION ... [key=value ...]
  python -m nlptransfer.sweep recipe=sentiment trials=20 'train.lr=loguniform(1e-5,1e-3)' \\
      'train.epochs=choice(2,3,4)' 'strategy=choice(full,lora)'

Searches the options given as distributions with Optuna: TPE sampler seeded with the recipe's seed, median
pruning after each epoch (a trial below the median of the complete trials at that epoch stops there). Each trial
is a normal run in <output_dir>/trial-<n>. Distributions (quote them for the shell):
{distributions}
Selection: a trial's value is its best validation train.metric_for_best over its epochs, and the best trial is
picked on that alone. Every run still scores its test split, as any run does; the sweep reads none of those scores
but the best trial's, which report.md states once.
Writes study.db (resume=auto continues a killed sweep; sweeps with resume=auto on one output_dir share it),
report.md, trials.csv, best.yaml (python -m nlptransfer.run recipe=NAME --config best.yaml) and two plots.
Options of the sweep (the other key=value options go to the recipe, see `recipe=NAME --help`):
{options}"""


@dataclass
class SweepOptions:
    trials: int = 20
    """Trials in the study, counting the complete and pruned ones a killed or a parallel sweep already ran."""
    output_dir: str | None = None
    """Folder for study.db, report.md, trials.csv, best.yaml, the plots and the trials; default: runs/sweep-..."""
    resume: str | None = None
    """`auto`: continue the study in output_dir (a killed sweep's, or share it with another sweep process)."""
    overwrite: bool = False
    """Start afresh in an existing sweep folder (its study, report and trial folders are removed)."""


def trial_runner(recipe: str):
    """The recipe's `run(cfg, inputs)`, which takes the pruning callback."""
    module = load_recipe(recipe)
    if len(inspect.signature(module.run).parameters) < 2:
        raise ConfigError(f"recipe '{recipe}' takes no loop callbacks (its run(cfg) has one argument) and a sweep "
                          "prunes through one: give it run(cfg, inputs=None), passing inputs to pipeline.run")
    return module.run


def sweep(recipe: str, space: list[str] | tuning.SearchSpace, cfg: RunConfig | None = None, trials: int = 20,
          output_dir: str | Path | None = None, overwrite: bool = False, resume: str | None = None,
          pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Search `space` (`key=distribution` items) over runs of `recipe` (name or .py path) with `cfg` (default: the
    recipe's) and write the report; returns the Optuna study. `pruner` replaces the median pruner."""
    run_trial = trial_runner(recipe)
    cfg = cfg or load_recipe(recipe).Config()
    space = space if isinstance(space, tuning.SearchSpace) else tuning.SearchSpace.parse(space)
    if resume and not output_dir:
        raise ConfigError("resume=auto needs the sweep's folder: pass output_dir=runs/<the sweep> too")
    out = Path(output_dir or f"runs/sweep-{cfg.recipe}-{datetime.now():%Y%m%d-%H%M%S}")
    tuning.require_optuna().logging.set_verbosity(logging.WARNING)  # its own lines would repeat ours
    study = tuning.search(cfg, space, run_trial, out, trials, overwrite, resume, pruner)
    write_report(study, space, cfg, out, trials)
    return study


def shown(value) -> str | None:
    """A parameter value for the table: 3 significant digits for floats (learning rates), else as given."""
    if value is None:
        return None
    return f"{value:.3g}" if isinstance(value, float) else tuning.format_value(value)


def note(trial: optuna.trial.FrozenTrial) -> str:
    attrs = trial.user_attrs
    parts = [f"retry of trial {attrs['retry_of']}" if "retry_of" in attrs else None,
             attrs.get("error") and str(attrs["error"]).splitlines()[0][:120],
             f"pruned after epoch {attrs['epochs_run']}" if trial.state.name == "PRUNED" and "epochs_run" in attrs
             else None]
    return "; ".join(part for part in parts if part)


def trial_rows(study: optuna.Study, space: tuning.SearchSpace, metric: str) -> list[dict]:
    """One flat row per trial: the figures of trials.csv and the report's table."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows.append({"trial": trial.number, "state": trial.state.name.lower()}
                    | {d.key: trial.params.get(d.key) for d in space.dimensions}
                    | {f"validation_{metric}": attrs.get("best_validation"), "epochs_run": attrs.get("epochs_run"),
                       "best_epoch": attrs.get("best_epoch"), "run_dir": tuning.trial_folder(trial.number),
                       "note": note(trial)})
    return rows


def write_report(study: optuna.Study, space: tuning.SearchSpace, cfg: RunConfig, out: Path, trials: int) -> None:
    """report.md, trials.csv and the plots."""
    from ..outputs.files import write_text

    metric = cfg.train.metric_for_best
    rows = trial_rows(study, space, metric)
    write_csv(out / "trials.csv", rows)
    states = [row["state"] for row in rows]
    counts = ", ".join(f"{states.count(state)} {state}" for state in dict.fromkeys(states))
    headers = ["trial", "state", *(d.key for d in space.dimensions), f"best validation {metric}", "epochs run", "note"]
    body = [[row["trial"], row["state"], *(shown(row[d.key]) for d in space.dimensions), row[f"validation_{metric}"],
             row["epochs_run"], row["note"] or ""] for row in rows]
    lines = [f"# Hyperparameter search: recipe `{cfg.recipe}`", "",
             f"Searched: {', '.join(f'`{text}`' for text in space.texts)}.", "",
             f"{len(rows)} trials for trials={trials} ({counts}); model `{cfg.model}`, every other option the "
             f"recipe's with the command's overrides. Sampler: Optuna's TPE seeded with the seed ({cfg.seed}), "
             "random for its first trials; pruner: a trial whose validation "
             f"{metric} after an epoch is below the median of the complete trials at that epoch stops there (its "
             "run still finishes: best epoch, test split, outputs).", "",
             f"**Selection uses validation only**: a trial's value is its best validation {metric} over its epochs "
             "and the best trial is the complete one with the highest value. Every trial's run also scores its "
             "test split, as any run does, but the sweep reads none of those scores except the best trial's, stated "
             "once below, after the choice was made.", "",
             *markdown_table(headers, body), "", *best_section(study, space, cfg, out), "",
             *write_plots(study, out, f"validation {metric}"), ""]
    write_text(out / "report.md", "\n".join(lines))
    logger.info("sweep: report in %s", out / "report.md")


def best_section(study: optuna.Study, space: tuning.SearchSpace, cfg: RunConfig, out: Path) -> list[str]:
    """The best trial, its config file and its test metrics: the one place the sweep reads a test score."""
    best = tuning.best_trial(study)
    if best is None:
        return ["## Best trial", "", "No trial completed yet: no best trial and no best.yaml."]
    values = ", ".join(f"`{d.key}={shown(best.params[d.key])}`" for d in space.dimensions)
    written = json.loads((out / tuning.trial_folder(best.number) / "metrics.json").read_text(encoding="utf-8"))
    test = {key: value for key, value in written["test"].items() if isinstance(value, int | float)}
    size = ((written.get("data") or {}).get("examples") or {}).get("test")
    return ["## Best trial", "",
            f"Trial {best.number} (`{tuning.trial_folder(best.number)}/`): {values}; best validation "
            f"{cfg.train.metric_for_best} {best.value:.4f} (epoch {best.user_attrs.get('best_epoch')}).", "",
            f"Its config, ready to train again: `best.yaml` (`python -m nlptransfer.run recipe={cfg.recipe} "
            "--config best.yaml`, into a new run folder).", "",
            f"Test metrics of trial {best.number}" + (f" ({size:,} test examples)" if size else "") + ", the only "
            "test scores this sweep reads: " + ", ".join(f"{key} {value:.4f}" for key, value in test.items()) + "."]


def write_plots(study: optuna.Study, out: Path, target: str = "validation metric") -> list[str]:
    """Optuna's optimization history and parameter importances as PNGs, their axes naming `target` (the metric)
    and the options in full; the report's lines for them."""
    import matplotlib
    from matplotlib import pyplot
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    from ..outputs.plots import save_figure

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = [key for key in dict.fromkeys(k for t in complete for k in t.params)
               if len({repr(t.params.get(key)) for t in complete}) > 1]
    lines = ["## Plots", ""]
    # optuna draws through pyplot and sets its own style: both stay inside this block, as do its warnings (the
    # plots are experimental; few trials make rough importances, which the caption says)
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        if not complete:
            return lines + ["No complete trial: nothing to plot."]
        axes = optuna_plots.plot_optimization_history(study, target_name=target)
        save_figure(fitted(axes.figure), out / HISTORY_PLOT)
        pyplot.close(axes.figure)
        lines += [f"![optimization history: each complete trial's value and the best so far]({HISTORY_PLOT})", ""]
        if len(complete) < 2 or not varying:
            return lines + [f"Parameter importances not drawn: they need at least 2 complete trials (here "
                            f"{len(complete)}) in which some parameter takes more than one value."]
        try:
            axes = optuna_plots.plot_param_importances(study, target_name=target)
        except (RuntimeError, ValueError) as e:  # e.g. all values equal: nothing to attribute
            return lines + [f"Parameter importances not drawn: {str(e).splitlines()[0]}"]
        axes.set_xlabel(f"importance for {target}")
        save_figure(fitted(axes.figure), out / IMPORTANCE_PLOT)
        pyplot.close(axes.figure)
    return lines + [f"![parameter importances]({IMPORTANCE_PLOT})", "",
                    f"Parameter importances by Optuna's default evaluator over the {len(complete)} complete trials: "
                    "rough with few trials (PED-ANOVA, the default since Optuna 5, wants 5 or more in its top 10%)."]


def fitted(figure):
    """The figure laid out to hold its labels: Optuna's leaves long option names (`head.pooling`) cut at the left."""
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    return run_command(sweep_command, argv)


def sweep_command(argv: list[str]) -> int:
    space = [item for item in argv if not item.startswith("-") and tuning.is_search_item(item)]
    usage = USAGE.replace("{distributions}", "\n".join(f"  {text}" for text in tuning.DISTRIBUTIONS.values()))
    parsed = parse_tool_command([item for item in argv if item not in space], SweepOptions(), usage)
    if isinstance(parsed, int):
        return parsed
    recipe, cfg, options = parsed
    configure_console(quiet="--quiet" in argv, verbose="--verbose" in argv)  # also for the trials' runs
    sweep(recipe, space, cfg, options.trials, options.output_dir, options.overwrite, options.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
