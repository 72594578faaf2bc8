"""Threshold-sweep classification metrics of Karvonen et al. 2024 (arXiv 2408.00113).

Code: adamkarvonen/SAE_BoardGameEval. A feature is read as a binary classifier: it is *on* where its
activation exceeds ``t x`` (its maximum activation), for ``t`` in ``{0.0, 0.1, ..., 1.0}``. Against
one-hot concept labels (board-state properties, IOI attribute values ...):

- **coverage**: for each ``t``, the mean over concepts of the best single-feature F1; the best ``t``.
- **reconstruction**: on a *label* split, tag feature ``f`` with concept ``c`` where precision >= 0.95
  and true positives >= 10; on a *test* split, predict ``c`` wherever an active feature carries tag
  ``c``; micro-F1 over (example, concept); the best ``t``.

Both are computed with batched sparse matrix products, chunked over examples; there is no Python loop
over features, concepts or thresholds beyond one pass per threshold for the reconstruction prediction.
Thresholds are nested (on at ``t_k`` implies on at ``t_{k-1}``), so each (example, feature) pair has a
*level*, the number of thresholds its activation exceeds; one sparse product of the level indicators
(only pairs with a positive activation, which is most of the saving for SAE latents) with the labels
gives the counts at every threshold by a cumulative sum over levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def _thresholds(thresholds) -> Tensor:
    return torch.as_tensor(thresholds if thresholds is not None else THRESHOLDS, dtype=torch.float32)


def _max_acts(acts: Float[Tensor, "n f"]) -> Float[Tensor, " f"]:
    return acts.max(dim=0).values if acts.shape[0] else torch.zeros(acts.shape[1])


def _on(acts: Float[Tensor, "n f"], max_acts: Float[Tensor, " f"], t: Float[Tensor, " T"]) -> Bool[Tensor, "T n f"]:
    """On iff activation > t * max; a feature whose max is <= 0 is never on (it never fires)."""
    live = max_acts > 0
    return (acts.unsqueeze(0) > t.view(-1, 1, 1) * max_acts.view(1, 1, -1)) & live.view(1, 1, -1)


@dataclass
class SweepCounts:
    """Counts per (threshold, feature, concept).

    Attributes:
        tp: ``Float[Tensor, "T f c"]`` true positives.
        on: ``Float[Tensor, "T f"]`` examples where the feature is on.
        pos: ``Float[Tensor, " c"]`` examples where the concept holds.
        n: number of examples.
    """

    tp: Tensor
    on: Tensor
    pos: Tensor
    n: int

    def precision(self) -> Float[Tensor, "T f c"]:
        return self.tp / self.on.unsqueeze(-1).clamp(min=1)

    def recall(self) -> Float[Tensor, "T f c"]:
        return self.tp / self.pos.view(1, 1, -1).clamp(min=1)

    def f1(self) -> Float[Tensor, "T f c"]:
        # F1 = 2 TP / (on + pos); 0 where both are 0.
        return 2 * self.tp / (self.on.unsqueeze(-1) + self.pos.view(1, 1, -1)).clamp(min=1)

    def features(self, idx: Tensor) -> SweepCounts:
        """The counts of the features ``idx`` alone (a feature's counts do not depend on the other features)."""
        return SweepCounts(tp=self.tp[:, idx], on=self.on[:, idx], pos=self.pos, n=self.n)


def _levels(
    acts: Float[Tensor, "n f"], max_acts: Float[Tensor, " f"], t: Float[Tensor, " T"]
) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse levels of ``acts``: ``(rows, features, level)`` of every pair that is on at some threshold.

    ``level`` = the number of thresholds at which the pair is on (1..T); ``t`` must be ascending and
    non-negative, so a pair is on at threshold index k iff ``level > k``.
    """
    live = max_acts > 0
    mask = (acts > 0) & live.view(1, -1)
    if int(mask.sum()) > 0.25 * mask.numel():  # dense features (probes, neurons): one sorted search per row
        thr = (t.view(1, -1) * max_acts.view(-1, 1)).contiguous()  # f T, ascending where the feature is live
        level = torch.searchsorted(thr, acts.T.contiguous()).T * mask  # thresholds strictly below the value
        rows, feats = torch.nonzero(level, as_tuple=True)
        return rows, feats, level[rows, feats]
    rows, feats = torch.nonzero(mask, as_tuple=True)
    vals = acts[rows, feats]
    level = (vals.unsqueeze(1) > t.view(1, -1) * max_acts[feats].unsqueeze(1)).sum(1)
    keep = level > 0
    return rows[keep], feats[keep], level[keep]


def _sorted_nonneg(t: Tensor) -> bool:
    return bool((t >= 0).all()) and bool((t[1:] >= t[:-1]).all())


def sweep_counts(
    acts: Float[Tensor, "n f"],
    labels: Bool[Tensor, "n c"],
    thresholds=None,
    max_acts: Float[Tensor, " f"] | None = None,
    chunk: int = 2048,
) -> SweepCounts:
    """True positives and on-counts for every (threshold, feature, concept), chunked over examples.

    Args:
        acts: feature activations, one row per example (position).
        labels: one-hot concept labels of the same rows.
        thresholds: fractions of the max activation (default ``THRESHOLDS``).
        max_acts: per-feature maxima; default the maxima over ``acts``.
        chunk: rows per matrix product (memory: ``T x chunk x f`` booleans).

    Raises:
        ValueError: row counts differ.
    """
    if acts.shape[0] != labels.shape[0]:
        raise ValueError(f"{acts.shape[0]} activation rows but {labels.shape[0]} label rows")
    t = _thresholds(thresholds)
    acts = acts.float()
    mx = _max_acts(acts) if max_acts is None else max_acts.float()
    n_t, n_f, n_c = len(t), acts.shape[1], labels.shape[1]
    tp = torch.zeros(n_t, n_f, n_c)
    on_count = torch.zeros(n_t, n_f)
    lab = labels.float()
    if not _sorted_nonneg(t):  # the dense definition, for unusual thresholds
        for i in range(0, acts.shape[0], chunk):
            on = _on(acts[i : i + chunk], mx, t).float()  # T n f
            tp += torch.einsum("tnf,nc->tfc", on, lab[i : i + chunk])
            on_count += on.sum(dim=1)
        return SweepCounts(tp=tp, on=on_count, pos=lab.sum(dim=0), n=acts.shape[0])
    # by level: hist[f, l, c] = rows at level l of feature f where c holds; on at k iff level > k
    hist = torch.zeros(n_f * (n_t + 1), n_c)
    level_count = torch.zeros(n_f * (n_t + 1))
    for i in range(0, acts.shape[0], chunk):
        rows, feats, level = _levels(acts[i : i + chunk], mx, t)
        if len(rows) == 0:
            continue
        index = feats * (n_t + 1) + level
        ind = torch.sparse_coo_tensor(
            torch.stack([index, rows]),
            torch.ones(len(rows)),
            (n_f * (n_t + 1), min(chunk, acts.shape[0] - i)),
            check_invariants=False,
        )
        hist += torch.sparse.mm(ind, lab[i : i + chunk])
        level_count += torch.bincount(index, minlength=n_f * (n_t + 1)).float()
    # at or above level k + 1: reverse cumulative sum over levels 1..T
    hist = hist.view(n_f, n_t + 1, n_c)[:, 1:].flip(1).cumsum(1).flip(1)  # f T c: level > k
    level_count = level_count.view(n_f, n_t + 1)[:, 1:].flip(1).cumsum(1).flip(1)
    return SweepCounts(tp=hist.permute(1, 0, 2).contiguous(), on=level_count.T.contiguous(), pos=lab.sum(dim=0),
                       n=acts.shape[0])  # fmt: skip


@dataclass
class SweepResult:
    """A swept metric: its value at the best threshold, that threshold, and per-concept values there."""

    value: float
    threshold: float
    per_concept: Tensor
    per_threshold: Tensor


def coverage(acts: Float[Tensor, "n f"], labels: Bool[Tensor, "n c"], thresholds=None) -> SweepResult:
    """Coverage: max over t of the mean over concepts of the best single-feature F1 (range 0..1).

    A perfect feature for every concept scores 1; a feature that is always on scores, for each concept,
    ``2p / (1 + p)`` with ``p`` the concept's base rate. Concepts with no positive example count as 0.
    """
    t = _thresholds(thresholds)
    if acts.shape[1] == 0 or labels.shape[1] == 0:
        return SweepResult(0.0, float(t[0]), torch.zeros(labels.shape[1]), torch.zeros(len(t)))
    best = sweep_counts(acts, labels, t).f1().max(dim=1).values  # T c
    per_t = best.mean(dim=1)
    i = int(per_t.argmax())
    return SweepResult(float(per_t[i]), float(t[i]), best[i], per_t)


def best_f1(acts: Float[Tensor, "n f"], labels: Bool[Tensor, "n c"], thresholds=None) -> Float[Tensor, "T c"]:
    """The best single-feature F1 of every concept at every threshold (the inner part of coverage).

    Concepts with no positive example get 0; no features gives all zeros.
    """
    t = _thresholds(thresholds)
    if acts.shape[1] == 0 or labels.shape[1] == 0:
        return torch.zeros(len(t), labels.shape[1])
    return sweep_counts(acts, labels, t).f1().max(dim=1).values


@dataclass
class ReconstructionCounts:
    """Reconstruction counts per (threshold, concept), from which any group of concepts gets its micro-F1.

    Attributes:
        thresholds: ``Float[Tensor, "T"]``.
        tags: ``Bool[Tensor, "T f c"]`` feature f tagged with concept c on the label split.
        max_acts: ``Float[Tensor, "f"]`` per-feature maxima on the label split (used on both splits).
        tp: ``Float[Tensor, "T c"]`` test rows where c is predicted and holds.
        pred: ``Float[Tensor, "T c"]`` test rows where c is predicted.
        pos: ``Float[Tensor, "c"]`` test rows where c holds.
    """

    thresholds: Tensor
    tags: Tensor
    max_acts: Tensor
    tp: Tensor
    pred: Tensor
    pos: Tensor

    def micro_f1(self, columns=None) -> Float[Tensor, " T"]:
        """Micro-F1 over the concepts ``columns`` (default all) at every threshold; 0 without positives."""
        idx = slice(None) if columns is None else torch.as_tensor(list(columns), dtype=torch.long)
        tp, pred, pos = self.tp[:, idx], self.pred[:, idx], self.pos[idx]
        return 2 * tp.sum(1) / (pred.sum(1) + pos.sum()).clamp(min=1)

    def per_concept_f1(self) -> Float[Tensor, "T c"]:
        return 2 * self.tp / (self.pred + self.pos).clamp(min=1)


def reconstruction_counts(
    label_acts: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    test_acts: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    thresholds=None,
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    chunk: int = 2048,
    max_acts: Float[Tensor, " f"] | None = None,
    label_counts: SweepCounts | None = None,
) -> ReconstructionCounts:
    """Tag on the label split, predict on the test split; the counts of :func:`reconstruction`.

    ``max_acts``: the per-feature maxima the thresholds are fractions of; default the label split's.
    ``label_counts``: :func:`sweep_counts` of these features on the label split at these thresholds and maxima,
    when the caller has them (a curve over subsets of one feature set: :meth:`SweepCounts.features`).

    Raises:
        ValueError: ``label_counts`` for another number of features or thresholds.
    """
    t = _thresholds(thresholds)
    n_c, n_f = label_labels.shape[1], label_acts.shape[1]
    mx = _max_acts(label_acts.float()) if max_acts is None else max_acts.float()
    if n_f == 0 or n_c == 0:
        z = torch.zeros(len(t), n_c)
        return ReconstructionCounts(t, torch.zeros(len(t), n_f, n_c, dtype=torch.bool), mx, z, z.clone(),
                                    test_labels.float().sum(0))  # fmt: skip
    if label_counts is not None and tuple(label_counts.on.shape) != (len(t), n_f):
        raise ValueError(f"label_counts are for {tuple(label_counts.on.shape)} (thresholds, features), not {(len(t), n_f)}")
    counts = sweep_counts(label_acts, label_labels, t, mx, chunk) if label_counts is None else label_counts
    tags = (counts.precision() >= min_precision) & (counts.tp >= min_true_positives)  # T f c
    tags_f = tags.float()
    test_lab = test_labels.float()
    tp = torch.zeros(len(t), n_c)
    pred_pos = torch.zeros(len(t), n_c)
    sparse = _sorted_nonneg(t)
    tagged = tags.any(2).any(0)  # features with a tag at some threshold; the others predict nothing
    for i in range(0, test_acts.shape[0], chunk):
        block = test_acts[i : i + chunk].float()
        truth = test_lab[i : i + chunk] > 0
        if not sparse:
            on = _on(block, mx, t).float()  # T m f
            pred = torch.bmm(on, tags_f) > 0  # T m c
            tp += (pred & truth).sum(dim=1)
            pred_pos += pred.sum(dim=1)
            continue
        rows, feats, level = _levels(block[:, tagged], mx[tagged], t)
        n_tagged = int(tagged.sum())
        if len(rows) > 0.02 * block.shape[0] * max(1, n_tagged):  # dense features (probes): a dense product is faster
            lv = torch.zeros(block.shape[0], n_tagged, dtype=torch.int64)
            lv[rows, feats] = level
            tags_t = tags_f[:, tagged]  # T f_t c
            for k in range(len(t)):
                # only the features tagged at this level and the concepts they carry: the rest predict nothing
                f_k, c_k = tags_t[k].any(1), tags_t[k].any(0)
                if not bool(c_k.any()):
                    continue
                pred = ((lv[:, f_k] > k).float() @ tags_t[k][f_k][:, c_k]) > 0  # m c_k
                tp[k, c_k] += (pred & truth[:, c_k]).sum(dim=0).float()
                pred_pos[k, c_k] += pred.sum(dim=0).float()
            continue
        feats = torch.nonzero(tagged).flatten()[feats]
        for k in range(len(t)):
            c_k = tags_f[k].any(0)  # as above: only the features tagged at this level, the concepts they carry
            on_k = (level > k) & tags_f[k].any(1)[feats]
            if not on_k.any():
                continue
            ind = torch.sparse_coo_tensor(torch.stack([rows[on_k], feats[on_k]]), torch.ones(int(on_k.sum())),
                                          (block.shape[0], n_f), check_invariants=False)  # fmt: skip
            pred = torch.sparse.mm(ind, tags_f[k][:, c_k]) > 0  # m c_k
            tp[k, c_k] += (pred & truth[:, c_k]).sum(dim=0).float()
            pred_pos[k, c_k] += pred.sum(dim=0).float()
    return ReconstructionCounts(t, tags, mx, tp, pred_pos, test_lab.sum(dim=0))


def reconstruction(
    label_acts: Float[Tensor, "n f"],
    label_labels: Bool[Tensor, "n c"],
    test_acts: Float[Tensor, "m f"],
    test_labels: Bool[Tensor, "m c"],
    thresholds=None,
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    chunk: int = 2048,
) -> SweepResult:
    """Reconstruction micro-F1 (range 0..1): tag on the label split, predict on the test split.

    The max activation of each feature is taken on the label split and used on both splits.
    ``per_concept`` holds the per-concept F1 on the test split at the best threshold.
    """
    t = _thresholds(thresholds)
    n_c = label_labels.shape[1]
    if label_acts.shape[1] == 0 or n_c == 0:
        return SweepResult(0.0, float(t[0]), torch.zeros(n_c), torch.zeros(len(t)))
    rc = reconstruction_counts(
        label_acts, label_labels, test_acts, test_labels, t, min_precision, min_true_positives, chunk
    )
    micro = rc.micro_f1()
    i = int(micro.argmax())
    return SweepResult(float(micro[i]), float(t[i]), rc.per_concept_f1()[i], micro)
