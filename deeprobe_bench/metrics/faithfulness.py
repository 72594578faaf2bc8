"""Faithfulness of a feature set and its curve over a method's ranking.

- Normalised faithfulness (Wang et al. 2022; Sparse Feature Circuits; EAP-IG):
  ``f(S) = (m(S) - m(empty)) / (m(all) - m(empty))`` with ``m`` the task's behaviour metric (IOI: the
  logit difference) when only S is kept (the rest mean-ablated). 1 = S carries all of the behaviour,
  0 = no more than the empty set; it can leave [0, 1].
- Necessity: ``(m(all) - m(ablate S)) / (m(all) - m(empty))``, the fraction of the behaviour lost when
  S alone is mean-ablated.
- Size of a feature set: the numerical rank of the span of its directions (:func:`span_rank`), and its
  fraction of ``d_model``. Keeping a span that covers the whole stream keeps ``x`` unchanged, so its
  faithfulness is 1 by construction: :data:`FULL_SPAN` flags such sets (REFERENCE.md section 9).
- Faithfulness curve (MIB's CPR, Mueller et al. 2025, arXiv 2504.13151, over the fraction of the model
  kept): ``f`` at fractions of the stream kept, :data:`FRACTION_GRID` with a 100% endpoint where
  ``f = 1`` by definition (nothing is ablated). The point at fraction ``q`` keeps the shortest prefix of
  the method's ranking whose span has rank >= ``max(1, floor(q d_model))`` (the whole set when its span
  is smaller: the curve plateaus). CPR is the trapezoid area over ``log10(q)`` rescaled to [0, 1]
  (MIB's ``log_scale``), so a curve that is 1 everywhere has area 1 and small fractions weigh as much
  as large ones. MIB's CMD (area between the curve and 1) equals ``1 - CPR`` whenever ``0 <= f <= 1``
  and is not reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

K_GRID: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
#: fractions of the stream (rank of the kept span / d_model) at which the faithfulness curve is measured
FRACTION_GRID: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: a set whose span has at least this fraction of d_model is flagged: it keeps (nearly) the whole stream
FULL_SPAN: float = 0.9


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


def span_rank(directions: Float[Tensor, "n d"], rtol: float = 1e-5) -> int:
    """Numerical rank of the span of ``directions``: singular values above ``rtol x`` the largest."""
    if directions.shape[0] == 0:
        return 0
    s = torch.linalg.svdvals(directions.double())
    return int((s > rtol * s.max()).sum()) if float(s.max()) > 0 else 0


def prefix_ranks(directions: Float[Tensor, "n d"], order: Sequence[int], rtol: float = 1e-5) -> list[int]:
    """Rank of the span of the first ``k`` features of ``order``, for k = 1..n (Gram-Schmidt, one pass).

    A feature adds to the rank when the part of its direction outside the current span is longer than
    ``rtol x`` the largest direction norm.
    """
    d = directions.double()
    tol = rtol * float(d.norm(dim=1).max()) if len(d) else 0.0
    basis = torch.zeros(0, d.shape[1], dtype=torch.float64)
    out = []
    for i in order:
        v = d[i] - basis.T @ (basis @ d[i]) if len(basis) else d[i].clone()
        v = v - basis.T @ (basis @ v) if len(basis) else v  # twice is enough (Kahan)
        nv = float(v.norm())
        if nv > tol and len(basis) < d.shape[1]:
            basis = torch.cat([basis, (v / nv).unsqueeze(0)])
        out.append(len(basis))
    return out


@dataclass
class StreamCurve:
    """The faithfulness curve over the fraction of the stream kept (see the module docstring).

    Attributes:
        fractions: the grid (:data:`FRACTION_GRID`).
        k: features of the ranking kept at each point (None at the 100% endpoint).
        rank: rank of the kept span at each point (``d_model`` at the endpoint).
        f: faithfulness at each point (1 at the endpoint).
        cpr: area under the curve over ``log10(fraction)``, rescaled to [0, 1].
    """

    fractions: list[float]
    k: list[int | None]
    rank: list[int]
    f: list[float]
    cpr: float

    def to_dict(self) -> dict[str, Any]:
        return {"x": "fraction of the stream kept (rank / d_model)", "fractions": self.fractions, "k": self.k,
                "rank": self.rank, "f": self.f}  # fmt: skip


def stream_curve(
    f_of_k: Callable[[int], float],
    directions: Float[Tensor, "n d"],
    order: Sequence[int],
    fractions: Sequence[float] = FRACTION_GRID,
) -> StreamCurve:
    """``f(top-k)`` at each fraction of the stream kept, and its CPR (see the module docstring).

    Args:
        f_of_k: faithfulness of the ``k`` best-ranked features.
        directions: ``Float[Tensor, "n d_model"]`` the set's directions; ``order`` its ranking, best first.

    Raises:
        ValueError: the grid does not end at 1.0 or is not increasing in (0, 1].
    """
    fr = [float(q) for q in fractions]
    if fr[-1] != 1.0 or any(not 0 < a < b for a, b in zip(fr[:-1], fr[1:], strict=False)) or fr[0] <= 0:
        raise ValueError(f"fractions must increase in (0, 1] and end at 1.0, got {fr}")
    d = int(directions.shape[1])
    ranks = prefix_ranks(directions, order) if len(order) else []
    cache: dict[int, float] = {}
    ks: list[int | None] = []
    rk: list[int] = []
    fs: list[float] = []
    for q in fr:
        if q == 1.0:
            ks.append(None)
            rk.append(d)
            fs.append(1.0)
            continue
        target = max(1, int(q * d))
        k = next((i + 1 for i, r in enumerate(ranks) if r >= target), len(ranks))
        if k not in cache:
            cache[k] = f_of_k(k) if k > 0 else 0.0
        ks.append(k)
        rk.append(ranks[k - 1] if k > 0 else 0)
        fs.append(cache[k])
    x = [math.log10(q) for q in fr]
    span = x[-1] - x[0]
    if span == 0:
        cpr = fs[0]
    else:
        cpr = sum((b - a) * (fa + fb) / 2 for a, b, fa, fb in zip(x[:-1], x[1:], fs[:-1], fs[1:], strict=False)) / span
    return StreamCurve(fr, ks, rk, fs, cpr)
