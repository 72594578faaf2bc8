"""Agreement of an approximate ranking with a reference one (attribution vs exact activation patching).

Attribution patching is judged by how well it reproduces the ranking exact patching gives (AtP*, Kramar
et al. 2024, arXiv 2403.00745; Sparse Feature Circuits, Marks et al. 2024; REFERENCE.md section 3):

- **Spearman rank correlation** of the two score vectors over a common sample of nodes
  (``scipy.stats.spearmanr``, ties get their average rank); -1..1, 1 = the same order.
- **Top-k recall**: the fraction of the reference's k best nodes that are among the approximation's k
  best; 0..1 (``k / n`` in expectation for a random order of ``n`` nodes).

Nodes are ranked by the *absolute* value of their effect (a node that destroys the behaviour matters as
much as one that carries it), so both figures are computed on ``|scores|`` by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _as_list(x: Any) -> list[float]:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().flatten().tolist()
    return [float(v) for v in x]


def spearman(approx: Any, reference: Any, absolute: bool = True) -> float:
    """Spearman rank correlation of ``approx`` and ``reference`` (``Float[Tensor, "n"]`` or sequences).

    Args:
        approx: the approximate scores of n nodes.
        reference: the reference scores of the same n nodes, in the same order.
        absolute: rank ``|scores|`` (default) rather than signed scores.

    Returns:
        The correlation in [-1, 1]; NaN when n < 2 or either vector is constant (no ranking to compare).

    Raises:
        ValueError: the two have different lengths.
    """
    import math

    from scipy.stats import spearmanr

    a, b = _as_list(approx), _as_list(reference)
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} approximate scores for {len(b)} reference scores")
    if absolute:
        a, b = [abs(v) for v in a], [abs(v) for v in b]
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def top_k(scores: Sequence[float], k: int, absolute: bool = True) -> list[int]:
    """Indices of the ``k`` best scores (by ``|score|`` by default), best first; ties: lower index."""
    s = _as_list(scores)
    key = [abs(v) for v in s] if absolute else s
    return sorted(range(len(s)), key=lambda i: (-key[i], i))[:k]


def topk_recall(approx: Any, reference: Any, k: int, absolute: bool = True) -> float:
    """Fraction of the reference's top-``k`` nodes found in the approximation's top-``k``.

    With ``k >= n`` every node is in both top sets and the recall is 1.

    Raises:
        ValueError: different lengths, or ``k < 1``.
    """
    a, b = _as_list(approx), _as_list(reference)
    if len(a) != len(b):
        raise ValueError(f"topk_recall: {len(a)} approximate scores for {len(b)} reference scores")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not a:
        return float("nan")
    kk = min(k, len(a))
    return len(set(top_k(a, kk, absolute)) & set(top_k(b, kk, absolute))) / kk


def agreement(approx: Any, reference: Any, ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """``{"spearman": ..., "spearman_signed": ..., "recall@10": ..., "recall@50": ..., "n": ...}``."""
    out = {"spearman": spearman(approx, reference), "spearman_signed": spearman(approx, reference, absolute=False)}
    for k in ks:
        out[f"recall@{k}"] = topk_recall(approx, reference, k)
    out["n"] = len(_as_list(approx))
    return out
