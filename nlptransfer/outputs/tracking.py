"""Experiment tracking (`log_with=tensorboard|wandb|mlflow`) through Accelerate's trackers.

The run's resolved config goes in as hyperparameters; the loop logs `train/loss`, `train/lr` and
`train/samples_per_second` per optimizer step and `validation/<metric>` per epoch, and the run
ends with `test/<metric>`. Without `log_with`, Accelerate has no trackers and every call here is
a no-op. TensorBoard event files land in `output_dir/tensorboard/`: one run, whose hyperparameters are
written at the end with the test metrics (TensorBoard's HParams view compares runs by the metrics of
the session in the same folder; Accelerate's own tracker writes them at the start, without metrics, into
a second folder), so a run that fails before its test has scalars but no hyperparameters.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .plots import scalar_metrics

if TYPE_CHECKING:
    from accelerate import Accelerator

TRACKERS = ("tensorboard", "wandb", "mlflow")
"""Values of `log_with` besides `none`."""
PROJECT = "nlptransfer"
"""The wandb project / mlflow experiment that runs are logged under."""
TENSORBOARD_FOLDER = "tensorboard"


def missing_package(log_with: str | None) -> str | None:
    """The package `log_with` needs that is not installed, or None."""
    if log_with in (None, "none"):
        return None
    return None if importlib.util.find_spec(log_with) is not None else log_with


def trackers(log_with: str | None, output_dir: Path) -> list | None:
    """What to pass as `Accelerator(log_with=...)`: None, or one tracker.

    TensorBoard gets a ready tracker writing to `output_dir/tensorboard` (Accelerate's default would
    nest it in a folder named after the project).
    """
    if log_with in (None, "none"):
        return None
    if log_with == "tensorboard":
        return [tensorboard_tracker(Path(output_dir))]
    return [log_with]


def tensorboard_tracker(output_dir: Path):
    """Accelerate's TensorBoard tracker, holding the hyperparameters until `finish` writes them with the metrics."""
    from accelerate.tracking import TensorBoardTracker

    class HParamsAtTheEnd(TensorBoardTracker):
        hyperparameters: dict | None = None

        def store_init_configuration(self, values: dict) -> None:
            self.hyperparameters = values

    return HParamsAtTheEnd(TENSORBOARD_FOLDER, output_dir)


def write_hparams(writer, values: dict, metrics: dict[str, float]) -> None:
    """TensorBoard's HParams session in the writer's own run folder: the hyperparameters and final metrics."""
    from torch.utils.tensorboard.summary import hparams

    for summary in hparams(values, metrics):
        writer.file_writer.add_summary(summary)


def hyperparameters(cfg: Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """The config flattened to dotted keys with values TensorBoard's hparams accept.

    None becomes "none" and lists become comma-separated strings.
    """
    flat: dict[str, bool | int | float | str] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            flat |= hyperparameters(value, f"{prefix}{f.name}.")
        elif value is None:
            flat[prefix + f.name] = "none"
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix + f.name] = value
        elif isinstance(value, (list, tuple)):
            flat[prefix + f.name] = ",".join(map(str, value))
        else:
            flat[prefix + f.name] = str(value)
    return flat


def start(accelerator: Accelerator, cfg: Any, output_dir: Path) -> None:
    """Start the configured trackers with the resolved config as hyperparameters (no-op without any)."""
    if not accelerator.log_with:
        return
    run_name = Path(output_dir).name
    accelerator.init_trackers(PROJECT, config=hyperparameters(cfg),
                              init_kwargs={"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}})


def scalars(prefix: str, metrics: dict) -> dict[str, float]:
    """`prefix/name` for each finite numeric metric; tables (per class, confusion matrix) are left out."""
    return {f"{prefix}/{name}": value for name, value in scalar_metrics(metrics).items()}


def finish(accelerator: Accelerator, test_metrics: dict, step: int) -> None:
    """Log the test metrics and close the trackers (flushes TensorBoard's event file).

    Not `accelerator.end_training()`: that also tears down the process group, which the caller
    (a notebook running several runs, a multi-process launch) may still need.
    """
    if not accelerator.trackers:
        return
    final = scalars("test", test_metrics)
    accelerator.log(final, step=step)
    for tracker in accelerator.trackers:
        if getattr(tracker, "hyperparameters", None) is not None:
            write_hparams(tracker.writer, tracker.hyperparameters, final)
        tracker.finish()
    accelerator.trackers = []
