"""Ranking agreement (Spearman, top-k recall) on rankings whose agreement is known by construction."""

import math

import pytest
import torch

from deeprobe_bench.metrics.ranking import agreement, spearman, top_k, topk_recall


def test_spearman_of_the_same_and_the_reversed_order():
    a = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a + 100, absolute=False) == pytest.approx(-1.0)


def test_spearman_ranks_absolute_effects_by_default():
    # the same magnitudes with flipped signs: the same |effect| ranking, the opposite signed one
    a = [3.0, -2.0, 1.0]
    b = [-3.0, 2.0, -1.0]
    assert spearman(a, b) == pytest.approx(1.0)
    assert spearman(a, b, absolute=False) == pytest.approx(-1.0)


def test_spearman_is_nan_without_a_ranking_and_rejects_different_lengths():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman([1.0], [2.0]))
    with pytest.raises(ValueError):
        spearman([1.0, 2.0], [1.0])


def test_top_k_recall_counts_the_overlap_of_the_top_sets():
    exact = [10.0, 9.0, 8.0, 1.0, 0.5, 0.1]
    approx = [10.0, 0.0, 8.0, 9.5, 0.4, 0.2]  # finds 0 and 2 of the exact top-3 {0, 1, 2}
    assert top_k(exact, 3) == [0, 1, 2]
    assert topk_recall(approx, exact, 3) == pytest.approx(2 / 3)
    assert topk_recall(approx, exact, 1) == 1.0
    assert topk_recall(approx, exact, 100) == 1.0  # k >= n: everything is in both top sets
    with pytest.raises(ValueError):
        topk_recall(approx, exact, 0)


def test_random_order_recall_is_about_k_over_n():
    gen = torch.Generator().manual_seed(0)
    n, k = 1000, 50
    exact = torch.rand(n, generator=gen)
    recalls = [topk_recall(torch.rand(n, generator=gen), exact, k) for _ in range(40)]
    assert sum(recalls) / len(recalls) == pytest.approx(k / n, abs=0.02)


def test_agreement_reports_every_figure():
    a = torch.arange(60.0)
    out = agreement(a, a)
    assert out["spearman"] == pytest.approx(1.0) and out["recall@10"] == 1.0 and out["recall@50"] == 1.0
    assert out["n"] == 60


def test_agreement_of_a_constant_ranking_is_undefined():
    """Tied scores rank nothing: no Spearman, and no top-k recall by index order."""
    import math

    out = agreement(torch.ones(30), torch.arange(30.0))
    assert all(math.isnan(out[k]) for k in ("spearman", "recall@10", "recall@50"))
