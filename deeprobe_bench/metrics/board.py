"""Board-state metrics of one feature set: board reconstruction and coverage, calibrated and as the paper
computes them, overall and per BSP family (Karvonen et al. 2024, arXiv 2408.00113; code
adamkarvonen/SAE_BoardGameEval).

A game's ground truth is one-hot *board-state properties* (BSPs) per measured position; a feature is read
as a binary classifier of a BSP (:mod:`deeprobe_bench.metrics.concepts` for the calibrated figures,
:mod:`deeprobe_bench.metrics.threshold_sweep` for the paper's). The board-game tasks
(:mod:`deeprobe_bench.kits.boardgame`) call :func:`board_metrics` on their label and test splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class BoardMetrics:
    """Coverage and reconstruction of one feature set, overall and per BSP family (see :func:`board_metrics`)."""

    reconstruction: float
    reconstruction_rate: float
    reconstruction_paper: float
    reconstruction_paper_threshold: float
    coverage: float
    coverage_n_scored: int
    coverage_paper: float
    coverage_paper_threshold: float
    per_group: dict[str, dict[str, float | None]]
    tags: Any  # Bool[Tensor, "f c"] at the chosen reconstruction level
    n_tagged_features: int


def board_metrics(
    label_acts: Any,
    label_labels: Any,
    test_acts: Any,
    test_labels: Any,
    groups: dict[str, list[int]],
    scored: list[int],
    paper_coverage: tuple[list[int], int],
    min_precision: float = 0.95,
    min_true_positives: int = 10,
    min_positives: int = 10,
    coverage: bool = True,
    levels: tuple[Any, Any] | None = None,
    label_counts: Any = None,
) -> BoardMetrics:
    """Board reconstruction and coverage, calibrated and as the paper computes them, per BSP family.

    Args:
        label_acts: ``Float[Tensor, "n f"]`` feature activations on the label split (choices, tags).
        label_labels: ``Bool[Tensor, "n c"]`` BSPs of the label split.
        test_acts: ``Float[Tensor, "m f"]`` feature activations on the test split.
        test_labels: ``Bool[Tensor, "m c"]`` BSPs of the test split.
        groups: ``{bsp name: columns}`` for the per-BSP breakdown.
        scored: columns of the headline metrics.
        paper_coverage: ``(columns, denominator)`` of the paper's coverage: the sum of the best F1 over
            ``columns`` divided by ``denominator`` (the masked elements the paper counts as 0).
        min_positives: a column enters ``coverage`` with this many positives and negatives in both splits.
        coverage: also compute coverage (skipped for the reconstruction curve).
        levels: ``concepts.split_levels(label_acts, test_acts)`` when the caller has them already.
        label_counts: ``concepts.label_counts`` of those levels, likewise.

    Returns:
        ``reconstruction`` (0..1): micro-F1 over ``scored`` on the test split, features tagged on the label
        split at the quantile level chosen on the label split
        (:func:`deeprobe_bench.metrics.concepts.reconstruction`); ``coverage`` (0 = chance, 1 = perfect):
        chance-corrected best-feature F1 averaged over the ``coverage_n_scored`` scored columns
        (:func:`deeprobe_bench.metrics.concepts.coverage`); ``reconstruction_paper`` /
        ``coverage_paper``: the paper's figures (``t x max`` thresholds, best ``t`` on the test split).
        ``per_group[name]``: the same calibrated figures over the family's columns (None where none is scored).
    """
    from deeprobe_bench.metrics import concepts
    from deeprobe_bench.metrics.threshold_sweep import best_f1, reconstruction_counts

    lv_label, lv_test = concepts.split_levels(label_acts, test_acts) if levels is None else levels
    rec = concepts.reconstruction_from_levels(lv_label, label_labels, lv_test, test_labels, scored, min_precision,
                                              min_true_positives, counts=label_counts)  # fmt: skip
    per_group: dict[str, dict[str, float | None]] = {n: {"reconstruction": rec.micro_f1(c)} for n, c in groups.items()}
    cov = cov_paper = rec_paper = 0.0
    cov_t = rec_t = 0.0
    n_scored = 0
    if coverage:
        cv = concepts.coverage_from_levels(lv_label, label_labels, lv_test, test_labels, min_positives,
                                           counts=label_counts)  # fmt: skip
        idx = torch_index(scored)
        sel = cv.scored[idx]
        n_scored = int(sel.sum())
        cov = float(cv.per_concept[idx][sel].mean()) if n_scored else 0.0
        for name, cols in groups.items():
            per_group[name]["coverage"] = cv.mean_over(cols)
        paper_cols, denom = paper_coverage
        f1 = best_f1(test_acts, test_labels)  # T c, the paper's t x max grid on the test split
        per_t = f1[:, torch_index(paper_cols)].sum(1) / max(1, denom)
        j = int(per_t.argmax())
        cov_paper, cov_t = float(per_t[j]), round(0.1 * j, 1)
        rc = reconstruction_counts(label_acts, label_labels, test_acts, test_labels,
                                   min_precision=min_precision, min_true_positives=min_true_positives)  # fmt: skip
        micro = rc.micro_f1(scored)
        i = int(micro.argmax())
        rec_paper, rec_t = float(micro[i]), float(rc.thresholds[i])
    tags = rec.tags
    return BoardMetrics(
        reconstruction=rec.value, reconstruction_rate=rec.rate, reconstruction_paper=rec_paper,
        reconstruction_paper_threshold=rec_t, coverage=cov, coverage_n_scored=n_scored, coverage_paper=cov_paper,
        coverage_paper_threshold=cov_t, per_group=per_group, tags=tags,
        n_tagged_features=int(tags[:, scored].any(1).sum()) if tags.numel() else 0,
    )  # fmt: skip


def torch_index(columns: list[int]) -> Any:
    import torch

    return torch.as_tensor(list(columns), dtype=torch.long)
