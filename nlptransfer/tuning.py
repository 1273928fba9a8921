"""Hyperparameter search on Optuna: a search space over a run's options, a study kept in a SQLite file, and the
objective that trains one normal run per trial.

    space = SearchSpace.parse(["train.lr=loguniform(1e-5,1e-3)", "strategy=choice(full,lora)"])
    study = search(cfg, space, run_trial=recipe.run, output_dir="runs/sweep", trials=20)

Each trial is a run of the recipe in `<sweep>/trial-<n>` with the trial's values as overrides. Its value is the
best validation `train.metric_for_best` over its epochs: the selection never reads a test score. A loop callback
reports each epoch's validation metric to the median pruner, which may stop a poor trial after an epoch. The
study lives in `<sweep>/study.db`: a killed sweep goes on with `resume="auto"`, and processes pointing at the same
folder share it (each runs trials until the study holds `trials`). Optuna is the `sweep` extra, imported here only
when a search starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig, apply_overrides, load_yaml, only_own_sections, to_yaml, validate
from .engine.hooks import Callback
from .errors import ConfigError, TrainingError
from .outputs import folders
from .outputs.files import write_text
from .outputs.run_folder import pid_alive

if TYPE_CHECKING:  # the pipeline (torch, transformers) loads when a trial runs, not with sweep's --help
    import optuna

    from .pipeline import Inputs, Results

logger = logging.getLogger("nlptransfer")

DISTRIBUTIONS = {
    "loguniform": "loguniform(a,b): a float drawn evenly on a log scale from a to b (0 < a < b), e.g. learning rates",
    "uniform": "uniform(a,b): a float drawn evenly from a to b",
    "int": "int(a,b): an integer from a to b, both included",
    "choice": "choice(x,y,...): one of the values (names, numbers, true/false, null)",
}
SEARCH_VALUE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)
"""A `key=value` whose value reads `name(arguments)` is a search dimension, not a fixed option."""
NOT_SEARCHABLE = ("recipe", "output_dir", "overwrite", "resume", "resume_force", "train.metric_for_best")
"""Options a sweep sets itself, or that would make the trials' values incomparable."""
STUDY_FILE = "study.db"
SWEEP_FILES = (STUDY_FILE, f"{STUDY_FILE}-journal", "best.yaml", "report.md", "trials.csv",
               "optimization_history.png", "param_importances.png")
"""What a sweep writes in its folder besides the trial folders: what overwrite=true removes."""
SWEEP = folders.Kind("sweep", (*SWEEP_FILES, "trial-[0-9]*"), (STUDY_FILE,))
FAILURES_IN_A_ROW = 3
"""Trials failing one after the other (a NaN loss, say) before the sweep gives up."""


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("a sweep needs optuna: pip install 'nlptransfer[sweep]' (or pip install optuna)") from None
    return optuna


def format_value(value: Any) -> str:
    """A value as a `key=value` override writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def scalar(text: str) -> Any:
    """A choice as typed: true/false, null, an integer, a float, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text in ("null", "~"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Dimension:
    """One searched option: its dotted key and the distribution its values come from."""

    key: str
    kind: str
    """loguniform, uniform, int or choice."""
    values: tuple
    """(low, high) for the ranges; the choices for choice."""

    @property
    def text(self) -> str:
        return f"{self.key}={self.kind}({','.join(format_value(v) for v in self.values)})"

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna import distributions

        if self.kind == "choice":
            return distributions.CategoricalDistribution(self.values)
        if self.kind == "int":
            return distributions.IntDistribution(*self.values)
        return distributions.FloatDistribution(*self.values, log=self.kind == "loguniform")

    def representatives(self) -> tuple:
        """The values checked before any trial runs: both bounds of a range, every choice."""
        return self.values

    def override(self, value: Any) -> str:
        return f"{self.key}={format_value(value)}"


def is_search_item(item: str) -> bool:
    """Whether a `key=value` item is a search dimension (`train.lr=loguniform(1e-5,1e-3)`)."""
    return "=" in item and SEARCH_VALUE.match(item.split("=", 1)[1]) is not None


def parse_dimension(item: str) -> Dimension:
    """`train.lr=loguniform(1e-5,1e-3)` -> a Dimension; a one-line ConfigError on a bad one."""
    key, value = (part.strip() for part in item.split("=", 1))
    kind, inside = SEARCH_VALUE.match(value).groups()
    arguments = [argument.strip() for argument in inside.split(",")]
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{item}: unknown distribution '{kind}'; use loguniform(a,b), uniform(a,b), int(a,b) or "
                          "choice(x,y,...)")
    if kind == "choice":
        choices = tuple({repr(v): v for v in (scalar(a) for a in arguments if a)}.values())
        if len(choices) < 2:
            raise ConfigError(f"{item}: choice needs at least two different values (a fixed value is {key}=VALUE)")
        return Dimension(key, kind, choices)
    if len(arguments) != 2:
        raise ConfigError(f"{item}: {kind} takes two bounds, {kind}(low,high)")
    bounds = tuple(range_bound(argument, kind, item) for argument in arguments)
    if not bounds[0] < bounds[1]:
        raise ConfigError(f"{item}: the lower bound must be below the upper one")
    if kind == "loguniform" and bounds[0] <= 0:
        raise ConfigError(f"{item}: loguniform's bounds must be positive (a log scale), e.g. loguniform(1e-5,1e-3)")
    return Dimension(key, kind, bounds)


def range_bound(text: str, kind: str, item: str) -> int | float:
    try:
        number = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(f"{item}: '{text}' is not {'an integer' if kind == 'int' else 'a number'}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{item}: the bounds must be finite numbers")
    return number


@dataclass(frozen=True)
class SearchSpace:
    """The searched options, in the order given."""

    dimensions: tuple[Dimension, ...]

    @classmethod
    def parse(cls, items: Sequence[str]) -> SearchSpace:
        dimensions = tuple(parse_dimension(item) for item in items)
        if not dimensions:
            raise ConfigError("no search space: give at least one option as a distribution, e.g. "
                              "'train.lr=loguniform(1e-5,1e-3)' (add --help for the syntax)")
        keys = [d.key for d in dimensions]
        repeated = next((key for key in keys if keys.count(key) > 1), None)
        if repeated:
            raise ConfigError(f"{repeated} is searched twice; give one distribution per option")
        for key in keys:
            if key in NOT_SEARCHABLE or key.startswith("push."):
                raise ConfigError(f"{key} cannot be searched: the sweep sets it (or it would make the trials "
                                  "incomparable); give it as a fixed option or leave it out")
        return cls(dimensions)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.dimensions]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {d.key: d.distribution() for d in self.dimensions}

    def config(self, base: RunConfig, values: dict[str, Any]) -> RunConfig:
        """`base` with the trial's values; with the strategy searched, each trial keeps only its strategy's section."""
        cfg = apply_overrides(base, [d.override(values[d.key]) for d in self.dimensions])
        return only_own_sections(cfg) if "strategy" in values else cfg

    def check(self, base: RunConfig) -> None:
        """Validate every option of the space with each of its representative values (the others at their first)
        before any trial runs: an option that does not exist or a value it refuses is a one-line ConfigError."""
        first = {d.key: d.representatives()[0] for d in self.dimensions}
        for dimension in self.dimensions:
            for value in dimension.representatives():
                try:
                    validate(self.config(base, first | {dimension.key: value}))
                except ConfigError as e:
                    raise ConfigError(f"search space {dimension.text}, at {dimension.override(value)}: {e}") from None


class Pruning(Callback):
    """Reports each epoch's validation metric to the trial and stops training when the pruner finds the trial
    unpromising; the run then finishes as any run does (best epoch, test split, outputs)."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_after: int | None = None  # the epoch after which the pruner stopped the trial

    def on_epoch_end(self, loop, metrics: dict, train_loss: float, improved: bool) -> None:
        if self.metric not in metrics:
            return
        epoch = loop.state.epoch - 1  # the loop has already moved on to the next epoch
        self.trial.report(float(metrics[self.metric]), epoch)
        if self.trial.should_prune():
            self.pruned_after, loop.should_stop = epoch, True


def trial_folder(number: int) -> str:
    return f"trial-{number}"


def objective(trial: optuna.Trial, base: RunConfig, space: SearchSpace, out: Path,
              run_trial: Callable[[RunConfig, Inputs], Results]) -> float:
    """Train one trial's run; returns its best validation metric (raises optuna.TrialPruned when pruned)."""
    optuna = require_optuna()

    cfg = dataclasses.replace(space.config(base, trial.params), output_dir=str(out / trial_folder(trial.number)),
                              overwrite=True)
    metric = cfg.train.metric_for_best
    pruning = Pruning(trial, metric)
    logger.info("sweep: trial %d: %s", trial.number, ", ".join(d.override(trial.params[d.key])
                                                               for d in space.dimensions))
    from .pipeline import Inputs

    results = run_trial(cfg, Inputs(callbacks=[pruning]))
    scores = [epoch["validation"][metric] for epoch in results.history if metric in (epoch.get("validation") or {})]
    trial.set_user_attr("epochs_run", len(results.history))
    if not scores:
        raise ConfigError(f"trial {trial.number} has no validation {metric}: a sweep selects on the validation split; "
                          "give the runs one (data.validation_fraction above 0 or data.validation_file, and no "
                          "data.examples_per_class)")
    best = max(scores)
    trial.set_user_attr("best_validation", best)
    trial.set_user_attr("best_epoch", results.timing.get("best_epoch"))
    if pruning.pruned_after is not None:
        raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_after}")
    return best


def prepare_folder(out: Path, overwrite: bool, resume: str | None, inputs: list[tuple[str, str]] = ()) -> None:
    """Refuse a file as the folder and a sweep folder that is there without resume=auto or overwrite=true;
    with overwrite=true remove what a sweep left (study, report, trial folders)."""
    blocking = next((path for path in (out, *out.absolute().parents) if path.is_file()), None)
    if blocking is not None:
        raise ConfigError(f"output_dir={out}: {blocking} is a file, not a folder; choose another output_dir")
    if resume not in (None, "auto"):
        raise ConfigError(f"resume={resume}: a sweep resumes with resume=auto (it continues the study in output_dir)")
    if resume and overwrite:
        raise ConfigError("resume=auto continues the sweep, overwrite=true starts it afresh: pass one of them")
    folders.check_writable(out, SWEEP, "output_dir", replacing=overwrite, inputs=inputs)
    if not out.is_dir() or not folders.entries(out) or resume:
        return
    if not overwrite:
        raise ConfigError(f"{out} already holds a sweep; continue it with resume=auto, start afresh with "
                          "overwrite=true, or choose another output_dir")
    folders.clear(out, SWEEP)


def open_study(out: Path, base: RunConfig, space: SearchSpace, pruner: optuna.pruners.BasePruner | None = None
               ) -> optuna.Study:
    """The sweep's study in `<out>/study.db` (created, or loaded to go on): TPE seeded with the run's seed,
    median pruning; a study of another recipe, search space or option set is refused."""
    optuna = require_optuna()
    storage, names = study_storage(out / STUDY_FILE)
    name = f"nlptransfer-{base.recipe}"
    others = [study for study in names if study != name]
    if others:
        raise ConfigError(f"{out / STUDY_FILE} holds the study '{others[0]}', not '{name}': another recipe's sweep; "
                          "choose another output_dir")
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=pruner or default_pruner())
    check_same_sweep(study, out, base, space)
    fail_stale_trials(study)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(study, base.seed))
    return study


def study_storage(path: Path) -> tuple[optuna.storages.RDBStorage, list[str]]:
    """Optuna's SQLite storage in `path` (created if missing) and the names of its studies; a file that is not a
    study database (another program's file, a damaged one, one of an incompatible Optuna) is a one-line ConfigError."""
    import sqlalchemy.exc

    optuna = require_optuna()
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.absolute()}",
                                             engine_kwargs={"connect_args": {"timeout": 60}})  # waits for other sweeps
        return storage, optuna.study.get_all_study_names(storage)
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:160]
        raise ConfigError(f"{path} is not a study database a sweep wrote ({reason}); move it away, or start the "
                          "sweep afresh in another output_dir") from None


def sampler_seed(study: optuna.Study, seed: int) -> int:
    """The run's seed for a new study; for one that goes on (resumed, or shared with another process) a seed
    drawn from it, the trials so far and the process, so that its draws do not repeat the first process's."""
    import numpy as np

    trials = len(study.get_trials(deepcopy=False))
    if not trials:
        return seed
    return int(np.random.SeedSequence([seed, trials, os.getpid()]).generate_state(1)[0])


def default_pruner() -> optuna.pruners.BasePruner:
    """Median pruning from the first complete trial on: a trial whose best validation metric so far is below the
    median of the complete trials at the same epoch stops after that epoch."""
    return require_optuna().pruners.MedianPruner(n_startup_trials=1)


def sweep_options(base: RunConfig) -> dict[str, Any]:
    """The fixed options of the sweep's runs, flat and JSON-comparable."""
    from .pipeline import flat

    return json.loads(json.dumps(flat(dataclasses.asdict(base)), default=str))


def check_same_sweep(study: optuna.Study, out: Path, base: RunConfig, space: SearchSpace) -> None:
    """A new study records its recipe, space and options; a loaded one must match them."""
    stored = study.user_attrs
    mine = {"space": space.texts, "options": sweep_options(base), "recipe": base.recipe}
    if "recipe" not in stored:  # set last: a study with a recipe has its space and options too
        for key, value in mine.items():
            study.set_user_attr(key, value)
        return
    if stored["recipe"] != base.recipe:
        raise ConfigError(f"{out / STUDY_FILE} is a sweep of recipe {stored['recipe']}, not {base.recipe}; "
                          "choose another output_dir")
    if stored.get("space") != mine["space"]:
        raise ConfigError(f"{out} was searched over {' '.join(stored.get('space', []))}, "
                          f"not {' '.join(mine['space'])}; "
                          "resume with the same space or choose another output_dir")
    before, now = stored.get("options", {}), mine["options"]
    changed = [f"{key}: {before.get(key)} -> {now.get(key)}" for key in dict.fromkeys([*before, *now])
               if before.get(key) != now.get(key)]
    if changed:
        raise ConfigError(f"{out} was searched with other options ({'; '.join(changed[:3])}); resume with the same "
                          "options or choose another output_dir")


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_stale(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose process is gone: killed on this host (or this very process, which runs no trial now)."""
    owner = trial.user_attrs.get("process")
    if owner is None:  # killed between ask and the attribute: only an old one, not a trial another sweep just began
        return trial.datetime_start is None or datetime.now() - trial.datetime_start > timedelta(minutes=1)
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        logger.warning("sweep: trial %d runs on %s: counted as running", trial.number, owner)
        return False
    return int(pid) == os.getpid() or not pid_alive(int(pid))


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark the RUNNING trials of a killed sweep FAIL and queue their values again, to be re-run first."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):  # another sweep process finished it first
            continue
        logger.warning("sweep: trial %d was left running by a killed sweep: marked failed, to be run again",
                       trial.number)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def trials_counted(study: optuna.Study) -> int:
    """Trials that count toward `trials=`: finished (complete or pruned) and running."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def optimize(study: optuna.Study, base: RunConfig, space: SearchSpace, out: Path, trials: int,
             run_trial: Callable[[RunConfig, Inputs], Results]) -> None:
    """Run trials until the study holds `trials` complete, pruned or running ones (other processes' included).

    A trial whose training fails (TrainingError, e.g. a NaN loss at a high learning rate) is marked FAIL and
    does not count; after FAILURES_IN_A_ROW of them in a row the sweep stops. Any other error marks it FAIL and
    ends the sweep.
    """
    optuna = require_optuna()
    from optuna.trial import TrialState

    failures = 0
    while trials_counted(study) < trials:
        trial = study.ask(space.distributions())
        trial.set_user_attr("process", process_name())
        try:
            value = objective(trial, base, space, out, run_trial)
        except optuna.TrialPruned as pruned:
            logger.info("sweep: trial %d %s", trial.number, pruned)
            study.tell(trial, state=TrialState.PRUNED)
        except TrainingError as e:
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
            failures += 1
            logger.warning("sweep: trial %d failed: %s", trial.number, e)
            if failures >= FAILURES_IN_A_ROW:
                raise TrainingError(f"{failures} trials in a row failed; the last: {e}") from None
            continue
        except BaseException as e:
            trial.set_user_attr("error", str(e) or type(e).__name__)
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
            logger.info("sweep: trial %d: best validation %s %.4f", trial.number, base.train.metric_for_best, value)
        failures = 0


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete trial of the highest validation metric, or None while there is none."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda trial: trial.value) if complete else None


def write_best_config(study: optuna.Study, base: RunConfig, out: Path) -> Path | None:
    """`<out>/best.yaml`: the best trial's resolved config.yaml, without its run folder, for `--config`."""
    best = best_trial(study)
    if best is None:
        return None
    cfg = load_yaml(base, out / trial_folder(best.number) / "config.yaml")
    cfg = dataclasses.replace(cfg, output_dir=None, overwrite=False)
    header = (f"# The best trial ({best.number}) of the sweep in {out}, validation {base.train.metric_for_best} "
              f"{best.value:.4f}.\n# python -m nlptransfer.run recipe={base.recipe} --config best.yaml\n")
    write_text(out / "best.yaml", header + to_yaml(cfg))
    return out / "best.yaml"


def search(base: RunConfig, space: SearchSpace | Sequence[str], run_trial: Callable[[RunConfig, Inputs], Results],
           output_dir: str | Path, trials: int = 20, overwrite: bool = False, resume: str | None = None,
           pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Search `space` (a SearchSpace or `key=distribution` items) over runs of `base`, each trained by
    `run_trial(cfg, inputs)` (a recipe's `run`); returns the study, with `<output_dir>/best.yaml` written.

    Everything is checked before the first trial: the space's options and values, `trials`, the folder, and a
    study already in it (`resume="auto"` goes on with it). `pruner` replaces the median pruner.
    """
    space = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    if trials < 2:
        raise ConfigError(f"trials={trials}: a search compares trials, give at least 2 (e.g. trials=20)")
    if base.push.repo_id:
        raise ConfigError("push.repo_id: a sweep does not push its trials; push the best one afterwards with "
                          "python -m nlptransfer.push <sweep>/trial-<n>")
    if base.data.examples_per_class is not None:
        raise ConfigError("data.examples_per_class: such runs have no validation split, and a sweep selects on it")
    space.check(base)
    out = Path(output_dir)
    from .pipeline import check_input_files

    check_input_files(base)
    prepare_folder(out, overwrite, resume, folders.config_inputs(base))
    out.mkdir(parents=True, exist_ok=True)
    study = open_study(out, base, space, pruner)
    folders.claim(out, SWEEP)  # once its study is this sweep's: a refused sweep changes nothing
    optimize(study, base, space, out, trials, run_trial)
    write_best_config(study, base, out)
    return study
