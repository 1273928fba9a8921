"""Where the training loop is and everything it has counted: one object, saved in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoopState:
    """Where the training loop is, and everything it has counted so far."""

    epoch: int = 1
    """The epoch in progress (1-based)."""
    batches_done: int = 0
    """Batches of `epoch` already trained on."""
    epoch_losses: list[float] = field(default_factory=list)
    optimizer_steps: int = 0
    train_examples: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_step: int | None = None
    """Step of the checkpoint that holds the best epoch's weights."""
    epochs_without_gain: int = 0
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0

    @property
    def nonfinite_steps(self) -> int:
        """Batches skipped because their loss or gradients were NaN/inf."""
        return self.nonfinite_total


FitResult = LoopState
"""What `fit` returns: the final loop state (history, best epoch, counters)."""
