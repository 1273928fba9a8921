"""How an ensemble turns its members' label probabilities into its own (`nlptransfer.ensemble method=...`).

Each method is one object in `REGISTRY`: `fit` sees the members' probabilities on the validation split only (never
test) and returns its parameters as plain JSON (saved in the ensemble's `ensemble.json`: no pickles); `combine`
applies them to any texts' probabilities, at the ensemble's test and in `nlptransfer.predict`.

- `mean`: the average of the members' probabilities (fits nothing).
- `weights`: non-negative weights summing to 1 that maximize the validation log-likelihood of the gold labels
  (a softmax over free parameters, L-BFGS; from equal weights).
- `stack`: a multinomial logistic regression (scikit-learn, L2, C=1) on the members' concatenated validation
  probabilities: stacking in the classical sense. Single-label only.

numpy, scipy and scikit-learn load inside the functions: the command's `--help` lists the methods at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


class Combiner:
    """One way to combine members: fitted on validation probabilities, applied to any probabilities."""

    name: ClassVar[str]
    summary: ClassVar[str]
    fits: ClassVar[bool] = True
    """Whether it fits parameters on the validation split (a member without one cannot join)."""
    multilabel: ClassVar[bool] = True
    """Whether it combines multi-label (independent per-label) probabilities."""

    def fit(self, probabilities: list[np.ndarray], gold: np.ndarray, multilabel: bool) -> dict:
        """Parameters (JSON) from each member's (examples, labels) validation probabilities and the gold labels
        (label ids; multi-label: multi-hot rows)."""
        return {}

    def combine(self, params: dict, probabilities: list[np.ndarray], multilabel: bool) -> np.ndarray:
        raise NotImplementedError


class Mean(Combiner):
    name = "mean"
    summary = "the average of the members' probabilities"
    fits = False

    def combine(self, params: dict, probabilities: list[np.ndarray], multilabel: bool) -> np.ndarray:
        import numpy as np

        return np.mean(np.stack(probabilities), axis=0)


class Weights(Combiner):
    name = "weights"
    summary = ("a weighted average, the weights (non-negative, summing to 1) maximizing the validation "
               "log-likelihood of the gold labels")

    def fit(self, probabilities: list[np.ndarray], gold: np.ndarray, multilabel: bool) -> dict:
        import numpy as np
        from scipy.optimize import minimize

        stacked = np.stack(probabilities).astype(np.float64)  # (members, examples, labels)

        def loss(free: np.ndarray) -> float:
            weights = np.exp(free - free.max())
            mixed = np.tensordot(weights / weights.sum(), stacked, axes=1)
            return -log_likelihood(mixed, gold, multilabel)

        found = minimize(loss, np.zeros(len(probabilities)), method="L-BFGS-B")
        weights = np.exp(found.x - found.x.max())
        return {"weights": [float(w) for w in weights / weights.sum()], "objective": "validation log-likelihood",
                "validation_log_likelihood": -float(found.fun)}

    def combine(self, params: dict, probabilities: list[np.ndarray], multilabel: bool) -> np.ndarray:
        import numpy as np

        return np.tensordot(np.asarray(params["weights"]), np.stack(probabilities), axes=1)


class Stack(Combiner):
    name = "stack"
    summary = "a logistic regression on the members' concatenated probabilities, fitted on the validation split"
    multilabel = False

    def fit(self, probabilities: list[np.ndarray], gold: np.ndarray, multilabel: bool) -> dict:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        if len(set(np.asarray(gold).tolist())) < 2:
            raise ConfigError("method=stack needs at least two labels among the validation examples to fit its "
                              "meta-classifier; use method=mean or method=weights")
        meta = LogisticRegression(max_iter=1000).fit(np.hstack(probabilities), gold)
        return {"classes": [int(c) for c in meta.classes_], "coef": meta.coef_.tolist(),
                "intercept": meta.intercept_.tolist(), "meta_classifier": "sklearn LogisticRegression (L2, C=1)"}

    def combine(self, params: dict, probabilities: list[np.ndarray], multilabel: bool) -> np.ndarray:
        """The meta-classifier's probabilities (as its predict_proba), 0 for a label it never saw in validation."""
        import numpy as np

        scores = np.hstack(probabilities) @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
        if scores.shape[1] == 1:  # two classes: scikit-learn keeps one row of coefficients, for the second class
            seen = np.hstack([-scores, scores]) / 2
        else:
            seen = scores
        seen = np.exp(seen - seen.max(axis=1, keepdims=True))
        combined = np.zeros((len(scores), probabilities[0].shape[1]))
        combined[:, params["classes"]] = seen / seen.sum(axis=1, keepdims=True)
        return combined


def log_likelihood(probabilities: np.ndarray, gold: np.ndarray, multilabel: bool) -> float:
    """The gold labels' mean log-probability (multi-label: each label's Bernoulli log-likelihood)."""
    import numpy as np

    clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
    if multilabel:
        return float(np.mean(gold * np.log(clipped) + (1 - gold) * np.log(1 - clipped)))
    return float(np.mean(np.log(clipped[np.arange(len(gold)), gold])))


REGISTRY: dict[str, Combiner] = {combiner.name: combiner for combiner in (Mean(), Weights(), Stack())}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Combiner:
    if name not in REGISTRY:
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(REGISTRY)} (e.g. method=mean)")
    return REGISTRY[name]
