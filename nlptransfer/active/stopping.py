"""When to stop labeling: the pool's predictions have stopped changing (Cohen's kappa between successive rounds'
predictions above a threshold for some rounds: Bloodgood and Vijay-Shanker 2009, small-text's KappaAverage), and
what more labels are likely to buy (the slope of the learning curve over its last rounds). Numpy only."""

from __future__ import annotations

import numpy as np


def kappa(before: list, after: list) -> float:
    """Cohen's kappa between two rounds' predicted labels for the same pool texts (1: identical; 0: chance)."""
    before, after = np.asarray(before, dtype=object), np.asarray(after, dtype=object)
    if len(before) == 0:
        return 1.0
    agreement = float(np.mean(before == after))
    labels = set(before.tolist()) | set(after.tolist())
    chance = sum(float(np.mean(before == label)) * float(np.mean(after == label)) for label in labels)
    return 1.0 if chance >= 1.0 else (agreement - chance) / (1.0 - chance)


def slope(curve: list[tuple[int, float]], last: int = 3) -> float | None:
    """Accuracy points (percent) gained per 100 more labels, fitted (least squares) on the last `last` points of
    (labels, accuracy); None with fewer than three points at different label counts."""
    points = [(n, a) for n, a in curve if a is not None][-last:]
    if len({n for n, _ in points}) < 3:
        return None
    labels, accuracy = np.array(points, dtype=float).T
    return float(np.polyfit(labels, accuracy, 1)[0] * 100 * 100)


def suggestion(kappas: list[float | None], curve: list[tuple[int, float]], threshold: float = 0.99,
               rounds: int = 2) -> dict:
    """Whether to stop (the last `rounds` kappas all at least `threshold`) and the learning curve's slope, with
    one sentence saying both."""
    recent = [k for k in kappas[-rounds:] if k is not None]
    stop = len(recent) == rounds and min(recent) >= threshold
    gain = slope(curve)
    said = ("no two trained rounds to compare yet: keep labeling" if not recent else
            f"predictions on the pool have stopped changing (kappa >= {threshold} for {rounds} rounds): labeling more "
            "is unlikely to help" if stop else f"predictions on the pool still change between rounds (kappa "
            f"{recent[-1]:.3f}): keep labeling")
    if gain is not None:
        said += f"; the learning curve's last rounds gain {gain:+.1f} accuracy points per 100 labels"
    return {"stop": stop, "kappa": kappas[-1] if kappas else None, "slope_per_100_labels": gain, "message": said}
