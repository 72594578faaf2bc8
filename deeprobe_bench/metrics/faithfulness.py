"""Faithfulness of a feature set and its curve over a method's ranking.

- Normalised faithfulness (Wang et al. 2022; Sparse Feature Circuits; EAP-IG):
  ``f(S) = (m(S) - m(empty)) / (m(all) - m(empty))`` with ``m`` the task's behaviour metric (IOI: the
  logit difference) when only S is kept (the rest mean-ablated). 1 = S carries all of the behaviour,
  0 = no more than the empty set; it can leave [0, 1].
- Necessity: ``(m(all) - m(ablate S)) / (m(all) - m(empty))``, the fraction of the behaviour lost when
  S alone is mean-ablated.
- Faithfulness curve: ``f`` of the top-k features for k on a fixed grid, and its area (MIB's CPR,
  Mueller et al. 2025, arXiv 2504.13151): the trapezoid area over the grid points placed at equal
  spacing on [0, 1], so a curve that is 1 everywhere has area 1. CMD is the area between the curve
  and 1: ``mean |1 - f|`` over the same trapezoids (0 is best).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

K_GRID: tuple[int, ...] = (1, 2, 5, 10, 20, 50)


def normalized(m_s: float, m_empty: float, m_all: float) -> float:
    """``(m_s - m_empty) / (m_all - m_empty)``.

    Raises:
        ValueError: ``m_all == m_empty`` (the behaviour does not depend on the intervened site).
    """
    denom = m_all - m_empty
    if abs(denom) < 1e-9:
        raise ValueError("m(all) equals m(empty): the behaviour does not depend on the intervened positions")
    return (m_s - m_empty) / denom


def curve(f_of_k: Callable[[int], float], n_features: int, ks: Sequence[int] = K_GRID) -> list[float]:
    """``f(top-k)`` for each k of ``ks``; k larger than the set reuses the whole set (the curve plateaus)."""
    cache: dict[int, float] = {}
    out = []
    for k in ks:
        kk = min(k, n_features)
        if kk not in cache:
            cache[kk] = f_of_k(kk)
        out.append(cache[kk])
    return out


def _trapezoid(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])
    return sum((a + b) / 2 for a, b in zip(values[:-1], values[1:], strict=False)) / (len(values) - 1)


def area(values: Sequence[float]) -> float:
    """Area under the curve, grid points equally spaced on [0, 1] (CPR; 1 for a perfect curve)."""
    return _trapezoid(list(values))


def area_from_one(values: Sequence[float]) -> float:
    """Area between the curve and 1 (CMD; 0 for a perfect curve)."""
    return _trapezoid([abs(1.0 - v) for v in values])
