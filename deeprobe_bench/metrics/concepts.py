"""Calibrated concept-detection metrics: chance-corrected coverage and threshold-invariant reconstruction.

Karvonen et al. 2024 (arXiv 2408.00113; code adamkarvonen/SAE_BoardGameEval) read a feature as a binary
classifier of a concept and score it with **coverage** and **board reconstruction**
(:mod:`deeprobe_bench.metrics.threshold_sweep` computes them exactly as the paper does: thresholds
``t x max`` with the best ``t`` chosen on the split that is scored). Measured with feature sets whose answer
is known (REFERENCE.md section 9) that figure cannot tell a trained feature from a constant, so the
headline metrics here are calibrated:

- **Thresholds at quantiles** of each feature's label-split activations: a feature is *on* at level
  ``k`` where its activation exceeds its ``1 - r_k`` quantile on the label split, for firing rates
  ``r_k`` in :data:`FIRING_RATES`. A strictly increasing re-scaling of a feature (a probe's logits or its
  saturated probabilities) leaves every metric unchanged.
- **Selection on the label split, scoring on the test split**: each concept's best feature and level
  (coverage) and the tagging level (reconstruction) are chosen on the label split, never on the rows
  that are scored, so a noise feature does not win by chance.
- **Chance correction** per concept: an always-on feature scores ``F1 = 2p / (1 + p)`` on a concept of
  test base rate ``p``; ``(F1 - F1_always_on) / (1 - F1_always_on)`` clipped at 0 puts it (and any
  uninformative feature) at 0 and a perfect detector at 1.
- **Scored concepts**: only concepts with at least ``min_positives`` positives (and as many negatives)
  in both the label and the test split; how many is reported (``n_scored``), so a ceiling never depends
  on split size.

``concept_metrics`` returns both the calibrated figures and the paper-comparable ones for tasks whose
ground truth is concept labels (IOI attributes, board-state properties, planted features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from deeprobe_bench.api import Metric
from deeprobe_bench.metrics import threshold_sweep as ts

#: firing rates whose label-split quantiles are the thresholds of every feature (levels 1..K)
FIRING_RATES: tuple[float, ...] = (
    0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001
)  # fmt: skip


def quantile_thresholds(
    label_acts: Float[Tensor, "n f"], rates: tuple[float, ...] = FIRING_RATES, chunk: int = 256
) -> Float[Tensor, "K f"]:
    """Per-feature thresholds: the ``1 - r`` quantile of each feature on the label split, ascending in k.

    The quantile is ``torch.quantile(..., interpolation="lower")``: the sorted value at index
    ``floor((1 - r) (n - 1))``, read from one sort per column (the same values, without ``torch.quantile``'s
    second pass; ``tests/unit/test_concepts.py`` compares the two).

    Raises:
        ValueError: no label rows.
    """
    n = label_acts.shape[0]
    if n == 0:
        raise ValueError("quantile thresholds need at least one label row")
    q = torch.tensor([1.0 - r for r in rates], dtype=torch.float64)
    index = (q * (n - 1)).floor().long()
    out = torch.empty(len(rates), label_acts.shape[1])
    for j in range(0, label_acts.shape[1], chunk):
        out[:, j : j + chunk] = label_acts[:, j : j + chunk].float().sort(dim=0).values[index]
    return torch.cummax(out, dim=0).values  # ascending (ties kept)


def levels(acts: Float[Tensor, "n f"], thresholds: Float[Tensor, "K f"], chunk: int = 4096) -> Float[Tensor, "n f"]:
    """How many of a feature's thresholds each activation exceeds (0..K): on at level k iff level >= k.

    ``thresholds`` must be ascending in k (as :func:`quantile_thresholds` returns them): the count of
    thresholds strictly below a value is its left insertion point (``torch.searchsorted``).
    """
    out = torch.empty(acts.shape, dtype=torch.float32)
    th = thresholds.float().T.contiguous()  # f K
    for i in range(0, acts.shape[0], chunk):
        block = acts[i : i + chunk].float().T.contiguous()  # f rows
        out[i : i + chunk] = torch.searchsorted(th, block).T.float()
    return out


def split_levels(
    label_acts: Float[Tensor, "n f"], test_acts: Float[Tensor, "m f"], rates: tuple[float, ...] = FIRING_RATES
) -> tuple[Float[Tensor, "n f"], Float[Tensor, "m f"]]:
    """:func:`levels` of both splits at the label split's :func:`quantile_thresholds`; the activations as
    they are when there is nothing to take quantiles of (no label row or no feature: every metric is 0)."""
    if label_acts.shape[0] == 0 or label_acts.shape[1] == 0:
        return label_acts, test_acts
    th = quantile_thresholds(label_acts, rates)
    return levels(label_acts, th), levels(test_acts, th)


def _level_grid(k: int) -> tuple[Tensor, Tensor]:
    """The threshold_sweep arguments that read levels: on at grid index j iff level >= j + 1."""
    t = (torch.arange(1, k + 1, dtype=torch.float32) - 0.5) / k
    return t, torch.full((1,), float(k))


def _sweep(lv: Tensor, labels: Tensor, k: int) -> ts.SweepCounts:
    t, mx = _level_grid(k)
    return ts.sweep_counts(lv, labels, t, mx.expand(lv.shape[1]).clone())


@dataclass
class LabelCounts:
    """What :func:`reconstruction_from_levels` and :func:`coverage_from_levels` count on the label split, per
    feature and level: on its first half (``half``, where the level is chosen) and on all of it (``whole``, the
    tags). A curve over subsets of one feature set computes them once (:func:`label_counts`) and takes each
    subset's with :meth:`features`: a feature's counts do not depend on the other features.
    """

    half: ts.SweepCounts
    whole: ts.SweepCounts

    def features(self, idx: Tensor) -> LabelCounts:
        return LabelCounts(self.half.features(idx), self.whole.features(idx))


def label_counts(lv_label: Float[Tensor, "n f"], label_labels: Bool[Tensor, "n c"],
                 rates: tuple[float, ...] = FIRING_RATES) -> LabelCounts:  # fmt: skip
    """The :class:`LabelCounts` of the :func:`levels` ``lv_label`` (at least two rows)."""
    h = lv_label.shape[0] // 2
    return LabelCounts(_sweep(lv_label[:h], label_labels[:h], len(rates)), _sweep(lv_label, label_labels, len(rates)))


def chance_f1(pos: Tensor, n: int) -> Tensor:
    """F1 of the always-on classifier, ``2p / (1 + p)`` with ``p = pos / n``."""
    p = pos / max(n, 1)
    return 2 * p / (1 + p)


def corrected(f1: Tensor, pos: Tensor, n: int) -> Tensor:
    """``(F1 - F1_always_on) / (1 - F1_always_on)`` clipped to [0, 1]; 0 where every row is positive."""
    c = chance_f1(pos, n)
    return ((f1 - c) / (1 - c).clamp(min=1e-12)).clamp(0, 1)


@dataclass
class Coverage:
    """Chance-corrected coverage (see the module docstring).

    Attributes:
        value: mean over scored concepts of the corrected test F1 of the concept's label-chosen feature
            and level (0 = chance, 1 = a perfect detector for every scored concept); 0 when none is scored.
        per_concept: ``Float[Tensor, "c"]`` corrected test F1 of every concept (NaN where not scored).
        f1: ``Float[Tensor, "c"]`` raw test F1 of the chosen feature and level.
        feature: ``Int[Tensor, "c"]`` the chosen feature of each concept.
        rate: ``Float[Tensor, "c"]`` the firing rate of the chosen level.
        scored: ``Bool[Tensor, "c"]`` concepts with enough positives and negatives in both splits.
    """

    value: float
    per_concept: Tensor
    f1: Tensor
    feature: Tensor
    rate: Tensor
    scored: Tensor

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    def mean_over(self, columns: list[int]) -> float | None:
        """Mean corrected F1 over the scored concepts among ``columns``; None when none is scored."""
        idx = torch.as_tensor(columns, dtype=torch.long)
        sel = self.scored[idx]
        return float(self.per_concept[idx][sel].mean()) if bool(sel.any()) else None


def scored_concepts(label_labels: Tensor, test_labels: Tensor, min_positives: int) -> Tensor:
    """Concepts with at least ``min_positives`` positives and as many negatives in both splits."""
    out = torch.ones(label_labels.shape[1], dtype=torch.bool)
    for lab in (label_labels, test_labels):
        pos = lab.float().sum(0)
        out &= (pos >= min_positives) & (lab.shape[0] - pos >= min_positives)
    return out


def coverage(
    label_acts: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    test_acts: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    min_positives: int = 10,
    rates: tuple[float, ...] = FIRING_RATES,
) -> Coverage:
    """Chance-corrected coverage: each concept's feature and level chosen on the label split, scored on test.

    Raises:
        ValueError: row counts of activations and labels differ.
    """
    lv_label, lv_test = split_levels(label_acts, test_acts, rates)
    return coverage_from_levels(lv_label, label_labels, lv_test, test_labels, min_positives, rates)


def coverage_from_levels(
    lv_label: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    lv_test: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    min_positives: int = 10,
    rates: tuple[float, ...] = FIRING_RATES,
    counts: LabelCounts | None = None,
) -> Coverage:
    """:func:`coverage` from precomputed :func:`levels` (and :func:`label_counts`, when the caller has them)."""
    n_c = label_labels.shape[1]
    scored = scored_concepts(label_labels, test_labels, min_positives)
    k, n_f = len(rates), lv_label.shape[1]
    if n_f == 0 or n_c == 0 or lv_label.shape[0] == 0:
        z = torch.zeros(n_c)
        return Coverage(0.0, torch.where(scored, z, torch.nan), z, torch.zeros(n_c, dtype=torch.long), z, scored)
    lab = (_sweep(lv_label, label_labels, k) if counts is None else counts.whole).f1()  # K f c
    best = lab.permute(2, 0, 1).reshape(n_c, k * n_f).argmax(1)
    lvl, feat = best // n_f, best % n_f
    test = _sweep(lv_test, test_labels, k)
    cols = torch.arange(n_c)
    tp = test.tp[lvl, feat, cols]
    on = test.on[lvl, feat]
    f1 = 2 * tp / (on + test.pos).clamp(min=1)
    corr = corrected(f1, test.pos, test.n)
    per = torch.where(scored, corr, torch.nan)
    value = float(corr[scored].mean()) if bool(scored.any()) else 0.0
    return Coverage(value, per, f1, feat, torch.tensor(rates)[lvl], scored)


@dataclass
class Reconstruction:
    """Reconstruction at the level chosen on the label split (see :func:`reconstruction`).

    Attributes:
        value: micro-F1 on the test split over the scored columns (0..1).
        rate: the firing rate of the chosen level.
        counts: the per-level counts (tags on the whole label split, predictions on the test split).
        level: index of the chosen level into ``counts``.
    """

    value: float
    rate: float
    counts: ts.ReconstructionCounts
    level: int

    def micro_f1(self, columns: list[int]) -> float:
        return float(self.counts.micro_f1(columns)[self.level])

    @property
    def tags(self) -> Tensor:
        """``Bool[Tensor, "f c"]`` the tags of the chosen level."""
        return self.counts.tags[self.level]


def reconstruction(
    label_acts: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    test_acts: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    columns: list[int] | None = None,
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    rates: tuple[float, ...] = FIRING_RATES,
) -> Reconstruction:
    """Board reconstruction (Karvonen et al. 2024) with quantile thresholds chosen on the label split.

    Tagging as in the paper (feature f tagged with concept c where, on the label split, precision >=
    ``min_precision`` and true positives >= ``min_true_positives``); the level is the one whose tags,
    made on the first half of the label rows, give the best micro-F1 over ``columns`` on the second half;
    the scored figure uses tags made on the whole label split at that level, micro-F1 on the test split.

    Raises:
        ValueError: row counts of activations and labels differ.
    """
    lv_label, lv_test = split_levels(label_acts, test_acts, rates)
    return reconstruction_from_levels(lv_label, label_labels, lv_test, test_labels, columns, min_precision,
                                      min_true_positives, rates)  # fmt: skip


def reconstruction_from_levels(
    lv_label: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    lv_test: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    columns: list[int] | None = None,
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    rates: tuple[float, ...] = FIRING_RATES,
    counts: LabelCounts | None = None,
) -> Reconstruction:
    """:func:`reconstruction` from precomputed :func:`levels` (a curve over subsets of the same features
    reuses them: the thresholds of a feature do not depend on the other features), and from the
    :func:`label_counts` of these features when the caller has them (the same reason)."""
    k = len(rates)
    t, _ = _level_grid(k)
    mx = torch.full((lv_label.shape[1],), float(k))
    if lv_label.shape[1] == 0 or label_labels.shape[1] == 0 or lv_label.shape[0] < 2:
        rc = ts.reconstruction_counts(lv_label, label_labels, lv_test, test_labels, t, max_acts=mx)
        return Reconstruction(0.0, float(rates[0]), rc, 0)
    h = lv_label.shape[0] // 2
    half, whole = (None, None) if counts is None else (counts.half, counts.whole)
    choose = ts.reconstruction_counts(lv_label[:h], label_labels[:h], lv_label[h:], label_labels[h:], t,
                                      min_precision, min_true_positives, max_acts=mx, label_counts=half)  # fmt: skip
    j = int(choose.micro_f1(columns).argmax())
    rc = ts.reconstruction_counts(lv_label, label_labels, lv_test, test_labels, t, min_precision, min_true_positives,
                                  max_acts=mx, label_counts=whole)  # fmt: skip
    return Reconstruction(float(rc.micro_f1(columns)[j]), float(rates[j]), rc, j)


def concept_metrics(
    label_acts: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    test_acts: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    *,
    min_positives: int = 10,
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    prefix: str = "",
) -> dict[str, Metric]:
    """The calibrated and the paper-comparable concept-detection metrics of one feature set.

    Args:
        label_acts / test_acts: feature activations of the label split (choices, tags) and the test split
            (scores), one row per example and position.
        label_labels / test_labels: the concepts of the same rows.
        min_positives: a concept is scored when it has this many positives and negatives in both splits.
        prefix: prepended to every metric name (``"attribute_"``).

    Returns:
        ``{prefix}coverage`` (chance-corrected, 0 = chance, 1 = perfect), ``{prefix}coverage_n_scored``
        (concepts scored), ``{prefix}reconstruction`` (quantile thresholds, level chosen on the label
        split; micro-F1 0..1), and the paper's figures computed as its code does (thresholds ``t x max``,
        best ``t`` on the test split, concepts without positives counted as 0):
        ``{prefix}coverage_paper`` and ``{prefix}reconstruction_paper``.
    """
    lv_label, lv_test = split_levels(label_acts, test_acts)  # once for both calibrated metrics
    cov = coverage_from_levels(lv_label, label_labels, lv_test, test_labels, min_positives)
    rec = reconstruction_from_levels(lv_label, label_labels, lv_test, test_labels, None, min_precision,
                                     min_true_positives)  # fmt: skip
    paper_cov = ts.coverage(test_acts, test_labels)
    paper_rec = ts.reconstruction(label_acts, label_labels, test_acts, test_labels,
                                  min_precision=min_precision, min_true_positives=min_true_positives)  # fmt: skip
    return {
        f"{prefix}coverage": Metric(cov.value),
        f"{prefix}coverage_n_scored": Metric(float(cov.n_scored)),
        f"{prefix}reconstruction": Metric(rec.value),
        f"{prefix}coverage_paper": Metric(paper_cov.value),
        f"{prefix}reconstruction_paper": Metric(paper_rec.value),
    }
