"""The summaries of an accuracy matrix (Lopez-Paz and Ranzato 2017, GEM; Chaudhry et al. 2018, forgetting).

`matrix[i][j]` is the test accuracy on stage j after learning stages 0..i; `before[j]` that on stage j before any
stage was learned (the starting model: the checkpoint with its new, seeded heads), the reference of forward transfer.
Stdlib only.
"""

from __future__ import annotations


def average_accuracy(matrix: list[list[float]]) -> float:
    """Mean accuracy over every stage after the last one."""
    last = matrix[-1]
    return sum(last) / len(last)


def backward_transfer(matrix: list[list[float]]) -> float | None:
    """Mean over the stages but the last of (accuracy at the end - accuracy just after learning it); negative is
    forgetting. None with one stage."""
    stages = len(matrix)
    if stages < 2:
        return None
    return sum(matrix[-1][j] - matrix[j][j] for j in range(stages - 1)) / (stages - 1)


def forgetting(matrix: list[list[float]]) -> list[float | None]:
    """Per stage: the best accuracy it had after it was learned and before the end, minus its accuracy at the end
    (None for the last stage)."""
    stages = len(matrix)
    return [max(matrix[i][j] for i in range(j, stages - 1)) - matrix[-1][j] if j < stages - 1 else None
            for j in range(stages)]


def average_forgetting(matrix: list[list[float]]) -> float | None:
    values = [value for value in forgetting(matrix) if value is not None]
    return sum(values) / len(values) if values else None


def forward_transfer(matrix: list[list[float]], before: list[float]) -> float | None:
    """Mean over the stages but the first of (accuracy on it just before learning it - `before` it): what the earlier
    stages taught it for free. None with one stage."""
    stages = len(matrix)
    if stages < 2:
        return None
    return sum(matrix[j - 1][j] - before[j] for j in range(1, stages)) / (stages - 1)


def summary(matrix: list[list[float]], before: list[float]) -> dict:
    """Everything metrics.json and the report give for one method's matrix."""
    return {"average_accuracy": average_accuracy(matrix), "backward_transfer": backward_transfer(matrix),
            "forgetting": forgetting(matrix), "average_forgetting": average_forgetting(matrix),
            "forward_transfer": forward_transfer(matrix, before)}
