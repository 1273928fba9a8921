"""The task protocol: what is predicted, from which data, scored how.

A task is one object, registered by name in `tasks/__init__.py`. It reads and splits its data,
encodes it, names the model class of its head, builds the loss, scores predictions (validation
and test, with baselines), writes its prediction rows and its part of metrics.json and of the
model card. The run skeleton (`pipeline.run`) drives any task with any strategy; code outside
this folder never compares a task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # numpy, torch and transformers load when a task works, not when the config reads its checks
    import numpy as np
    from accelerate import Accelerator
    from torch import nn
    from torch.utils.data import DataLoader


@dataclass
class TestOutcome:
    """The test split's scores and what the predictions were (for predictions.jsonl)."""

    metrics: dict
    predictions: Any
    """Pooled logits (classification) or predicted tags per sentence (token classification)."""


class Task:
    """Base of every task; subclasses fill in each step."""

    name: ClassVar[str]
    auto_class_name: ClassVar[str]
    """The transformers Auto class whose head this task trains (`auto_class`), by name."""
    peft_task_type: ClassVar[str | None]
    """peft's task type (`SEQ_CLS`, `TOKEN_CLS`) for adapter strategies; None: peft's custom-module mode."""
    pipeline_tag: ClassVar[str]
    """The Hub's pipeline tag and the `transformers.pipeline` task of the saved model."""
    metrics: ClassVar[tuple[str, ...]]
    """Validation metrics `train.metric_for_best` may name."""
    headline: ClassVar[str]
    """The test metric of the last log line, e.g. `accuracy`."""
    unit: ClassVar[str] = "samples"
    """What the training throughput counts."""
    pooled_head: ClassVar[bool] = False
    """Its head can read a pooled sentence embedding (`head.pooling`; contrastive and zero-shot strategies)."""
    features: ClassVar[str | None]
    """What a frozen encoder's cached features are for this head: a kind of `engine.features.EXTRACTIONS`; None:
    no cache, `frozen` trains the head over the frozen encoder in the plain loop."""
    architecture_suffix: ClassVar[str]
    """How a saved model's `architectures` entry ends for this task's head (e.g. `ForTokenClassification`)."""
    extra_model_options: ClassVar[dict] = {}
    learning_curves: ClassVar[bool] = False
    """`curve` can draw learning curves of this task (it writes the fixed splits as single-label tables)."""
    """Extra options of `from_pretrained` (e.g. the multi-label problem type)."""
    several_tasks: ClassVar[bool] = False
    """Trains one encoder under several tasks' heads: only a strategy with `shared_encoder` applies."""
    model_card: ClassVar[bool] = True
    """The run writes a model card (README.md) for its model."""
    ensembles: ClassVar[bool] = False
    """Its models give each text every label's probability (`text_probabilities`): `ensemble` combines them."""
    distillation: ClassVar[str | None] = None
    """How a teacher's outputs teach a student of this task (`nlptransfer.distill`): `softmax` (a distribution over the
    labels per text), `sigmoid` (a probability per label), `tokens` (a distribution per word); None: not built."""

    card_metrics: ClassVar[list[tuple[str, str, str]]]
    """The model card's overall test metrics: (hub metric type, key in metrics.json "test", display name)."""
    card_unit: ClassVar[str] = "examples"
    """What the card's split table counts."""
    card_predictor: ClassVar[str] = "classifier"
    """The name of the `pipeline(...)` object in the card's usage snippet."""
    pipeline_options: ClassVar[str] = ""
    """Extra arguments of `pipeline(...)` in the usage snippet (e.g. `, aggregation_strategy="first"`)."""
    peft_auto_class: ClassVar[str]
    """peft's Auto class that loads an adapter of this task (card usage snippet)."""

    @property
    def auto_class(self) -> Any:
        """The transformers Auto class whose head this task trains (`AutoModelForSequenceClassification`, ...)."""
        import transformers

        return getattr(transformers, self.auto_class_name)

    def checks(self, cfg) -> list[tuple[bool, str]]:
        return []

    def sub_tasks(self, cfg) -> list[tuple[str, Task, Any]]:
        """(name, task, run config) of each task a run of several tasks trains (their data and checks are checked
        as a run of each would check them); [] for a run of one task."""
        return []

    def best_metrics(self, cfg) -> tuple[str, ...]:
        """The names `train.metric_for_best` may take for this run."""
        return self.metrics

    def build_model(self, cfg, data, load) -> nn.Module:
        """The model to train: `load(task, label_names)` loads the checkpoint with a new head of `task`."""
        return load(self, data.label_names)

    def run_companions(self, cfg, data, metrics: dict, output_dir, train, lr: float) -> None:
        """Runs this task trains beside the run, after its test (each task of several alone); `train(cfg)` is the run
        skeleton, `lr` the learning rate the run trained with. None by default."""

    def save_model(self, model, tokenizer, output_dir, cfg, data):
        """Save the model itself and return its folder; None: the strategy saves it (`model/`, `adapter/`)."""
        return None

    def card_intro(self, label_names: list[str]) -> tuple[str, str, list[str]]:
        """(what the model does, how the labels are introduced, the names listed) for the card's first lines."""
        raise NotImplementedError

    def card_limitations(self, cfg, test: dict, sizes: dict[str, int] | None) -> list[str]:
        """This task's items of the card's limitations (e.g. how long inputs are read)."""
        return []

    def load_data(self, cfg, source: tuple | None = None):
        """Read, split and label the configured data (or `source`: in-memory frames from the Python API)."""
        raise NotImplementedError

    def describe_data(self, data) -> str:
        raise NotImplementedError

    def max_length(self, tokenizer, cfg) -> int:
        """The input length in tokens: `data.max_length` capped at the model's own limit."""
        return cfg.data.max_length

    def encode(self, data, tokenizer, cfg) -> dict:
        raise NotImplementedError

    def train_loader(self, encoded, tokenizer, cfg) -> DataLoader:
        raise NotImplementedError

    def eval_loader(self, encoded, tokenizer, cfg) -> DataLoader:
        raise NotImplementedError

    def loss_fn(self, data, cfg) -> nn.Module | None:
        """A loss to use instead of the model's own (class weights, focal loss), or None."""
        return None

    def validator(self, data, encoded: dict, cfg, accelerator: Accelerator
                  ) -> Callable[[DataLoader], Callable[[nn.Module], dict]]:
        """`validator(loader)(model)`: validation metrics of the model on a loader of the validation split."""
        raise NotImplementedError

    def test(self, model: nn.Module, data, encoded: dict, tokenizer, cfg, accelerator: Accelerator) -> TestOutcome:
        raise NotImplementedError

    def report(self, metrics: dict, data) -> str:
        raise NotImplementedError

    def baselines(self, data) -> tuple[dict, str]:
        """Simple baselines' test scores on the same data, and the log line that states them."""
        raise NotImplementedError

    def below_baseline(self, metrics: dict, baselines: dict) -> str | None:
        """A warning when the test accuracy is below always answering the most frequent label (None otherwise)."""
        accuracy, majority = metrics.get("accuracy"), baselines.get("majority_accuracy")
        if accuracy is None or majority is None or accuracy >= majority:
            return None
        return (f"test accuracy {accuracy:.4f} is below the majority class's {majority:.4f}: the model does worse than "
                "always answering the most frequent label; train longer or on more examples, or (zero-shot) describe "
                "the labels more distinctly (labels.descriptions) or label a few (strategy=contrastive)")

    def prediction_rows(self, data, outcome: TestOutcome) -> list[dict]:
        raise NotImplementedError

    def inference_settings(self, cfg, metrics: dict, data) -> dict | None:
        """Saved in the model's config.json (`nlptransfer`) so that `nlptransfer.predict` reads like the run."""
        return None

    def data_summary(self, data, encoded: dict, cfg) -> dict:
        """The `data` part of metrics.json (and what else the run reports about its inputs)."""
        raise NotImplementedError

    def predict_texts(self, predictor, texts: list[str], pairs: list[str] | None, all_scores: bool,
                      batch_size: int) -> list[dict]:
        """The rows `Predictor.predict` returns for this task's models."""
        raise NotImplementedError

    def text_probabilities(self, predictor, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        """Per text, every label's probability as the model predicts it (what an ensemble combines)."""
        raise NotImplementedError

    def split_texts(self, split) -> list[str]:
        """A split's texts as plain strings (unlabeled text for domain-adaptive pretraining)."""
        raise NotImplementedError

    def test_labels(self, data) -> list:
        """The gold labels of the test split, one entry per example (for the Python API's predictions frame)."""
        raise NotImplementedError


def sigmoid(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    return 1 / (1 + np.exp(-logits))
