"""Steering metrics shared by every task that steers (DESIGN.md, "Steering shift"; REFERENCE.md section 5).

- **Steering shift** (CAA, Panickssery et al. 2023, nrimsky/CAA): the change in p(answer matching the
  target behaviour) when a steering vector is added, ``mean_i p_steered(i) - p_clean(i)`` over held-out
  prompts, in probability points (-1..1, higher is better).
- **Coefficient choice** (AxBench, Wu et al. 2025, arXiv 2501.17148: "pick the steering factor on one
  half, report on the other"): the coefficient of a fixed grid with the largest shift on the train half
  among those whose fluency cost (measured on the train half) stays within a ceiling; ties go to the
  smallest absolute coefficient, then the positive one. Tasks give coefficients in units of each vector's
  own norm (DESIGN.md, "Steering shift"), with a grid reaching at least twice it. The ceiling keeps a
  coefficient that breaks the model from being chosen for the shift its disruption happens to cause
  (AxBench scores steering as 0 when fluency fails for the same reason).
- **Fluency cost**: the increase in next-token loss (nats per token) where the intervention acts and on
  what it changes, ``loss_steered - loss_clean`` (0 is free; higher is worse). A prompting method is held
  to the same rule (its instruction is used only when its cost is within the ceiling).
- **Detection AUROC** (AxBench's concept detection): the area under the ROC curve of a feature's
  activation, max-pooled over the tokens that can carry the concept, as a score for the concept the method
  was given, on held-out rows (scikit-learn ``roc_auc_score``); 0.5 is chance.

Steering by prompting (the AxBench prompting baseline) has no vector: a method returns a FeatureSet of
``kind="prompts"`` whose ``meta[PROMPTS_KEY]`` maps concepts to an instruction. A task that can evaluate
prompting lists ``"prompts"`` in ``Task.accepts`` and prepends the instruction instead of adding a vector;
the runner refuses such a set for every other task (``runner.check_features``), and a method of that kind
(``Method.kind``) before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxtyping import Float
from torch import Tensor

#: ``FeatureSet.meta`` key of a prompting method's instructions: ``{concept: instruction text}``.
PROMPTS_KEY = "steering_prompts"


def prompts_of(features: Any) -> dict[str, str] | None:
    """The steering prompts of a FeatureSet of kind ``prompts`` (``meta[PROMPTS_KEY]``), or None (any other set)."""
    if getattr(features, "kind", "directions") != "prompts":
        return None
    prompts = (getattr(features, "meta", None) or {}).get(PROMPTS_KEY)
    return dict(prompts) if prompts else None


def shift(p_steered: Float[Tensor, " n"], p_clean: Float[Tensor, " n"]) -> tuple[float, float | None]:
    """``(mean, stderr)`` of ``p_steered - p_clean`` over prompts (probability points)."""
    d = (p_steered - p_clean).double()
    se = float(d.std() / len(d) ** 0.5) if len(d) > 1 else None
    return float(d.mean()), se


def choose_coefficient(
    grid: Sequence[float],
    train_shift: Sequence[float],
    train_cost: Sequence[float] | None = None,
    max_cost: float | None = None,
) -> tuple[float, int]:
    """``(coefficient, index)`` of the grid point with the largest train-half shift.

    Args:
        grid: the coefficients.
        train_shift: the train-half shift at each coefficient.
        train_cost: the fluency cost (nats per token) at each coefficient; with ``max_cost``, only the
            coefficients with ``cost <= max_cost`` compete (if none does, the one of least cost is taken).
        max_cost: the fluency ceiling; None: no ceiling.

    Ties (within 1e-9) go to the smallest |coefficient|, then to the positive one.

    Raises:
        ValueError: empty grid, or a grid and shifts (or costs) of different lengths.
    """
    if not grid or len(grid) != len(train_shift) or (train_cost is not None and len(train_cost) != len(grid)):
        raise ValueError(f"need one shift (and cost) per coefficient, got {len(grid)} coefficients and "
                         f"{len(train_shift)} shifts")  # fmt: skip
    allowed = list(range(len(grid)))
    if train_cost is not None and max_cost is not None:
        allowed = [i for i in allowed if train_cost[i] <= max_cost] or [min(allowed, key=lambda i: train_cost[i])]
    best = max(train_shift[i] for i in allowed)
    idx = min((i for i in allowed if train_shift[i] >= best - 1e-9), key=lambda i: (abs(grid[i]), -grid[i]))
    return float(grid[idx]), idx


def fluency_cost(loss_steered: float, loss_clean: float) -> float:
    """Increase in next-token loss (nats per token) on neutral text: ``loss_steered - loss_clean``."""
    return float(loss_steered - loss_clean)


def detection_auroc(scores: Float[Tensor, " n"], labels: Any) -> float:
    """AUROC of ``scores`` for the boolean ``labels`` (scikit-learn); NaN when one class is absent."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def auroc_columns(scores: Float[Tensor, "n f"], labels: Any) -> Float[Tensor, " f"]:
    """AUROC of every column of ``scores`` for the boolean ``labels`` at once (Mann-Whitney U with
    average ranks for ties, equal to scikit-learn's ``roc_auc_score`` per column); NaN when a class is absent."""
    import numpy as np
    import torch
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return torch.full((scores.shape[1],), float("nan"))
    ranks = rankdata(np.asarray(scores, dtype=np.float64), axis=0)
    u = ranks[y].sum(0) - n_pos * (n_pos + 1) / 2
    return torch.as_tensor(u / (n_pos * n_neg), dtype=torch.float64)
