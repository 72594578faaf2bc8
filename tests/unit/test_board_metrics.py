"""Board-game coverage and reconstruction (deeprobe_bench.metrics.board.board_metrics) on constructed cases."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench.metrics.board import board_metrics


def _board(n: int, squares: int, seed: int) -> torch.Tensor:
    """One-hot (mine, theirs, empty) per square: ``Bool[n, 3*squares]`` in column order mine|theirs|empty."""
    state = torch.randint(0, 3, (n, squares), generator=torch.Generator().manual_seed(seed))
    return torch.cat([state == 0, state == 1, state == 2], dim=1)


SQ = 4
GROUPS = {"mine": list(range(0, SQ)), "theirs": list(range(SQ, 2 * SQ)), "empty": list(range(2 * SQ, 3 * SQ))}
SCORED, MASKED = GROUPS["mine"] + GROUPS["theirs"], GROUPS["empty"]
PAPER = (SCORED, 3 * SQ)  # Othello's paper coverage: mine and theirs over the 3 channels of every square


def test_perfect_features_score_one_and_the_paper_figure_is_capped_by_the_blank_channel():
    lab, test = _board(400, SQ, 0), _board(400, SQ, 1)
    res = board_metrics(lab.float(), lab, test.float(), test, GROUPS, SCORED, PAPER)
    assert res.reconstruction == 1.0 and res.reconstruction_paper == 1.0
    assert res.coverage == pytest.approx(1.0)
    assert res.coverage_n_scored == len(SCORED)
    assert res.coverage_paper == pytest.approx(2 / 3)  # the perfect empty features count as 0
    assert res.per_group["empty"]["coverage"] == pytest.approx(1.0)  # ... but are reported per BSP
    assert all(g["reconstruction"] == 1.0 for g in res.per_group.values())
    assert res.n_tagged_features == len(SCORED)
    assert res.tags[:, : 3 * SQ].equal(torch.eye(3 * SQ, dtype=torch.bool))


def test_always_on_feature_is_at_chance_though_the_paper_figure_rewards_it():
    lab, test = _board(600, SQ, 2), _board(600, SQ, 3)
    on = torch.ones(600, 1)
    res = board_metrics(on, lab, on, test, GROUPS, SCORED, PAPER)
    p = test.float().mean(0)
    expected = (2 * p / (1 + p))[SCORED].sum() / (3 * SQ)
    assert res.coverage_paper == pytest.approx(float(expected), abs=1e-6)
    assert res.coverage == 0.0
    # precision = base rate (about 1/3) < 0.95: never tagged, nothing predicted
    assert res.reconstruction == 0.0 and res.n_tagged_features == 0


def test_masked_channel_features_do_not_count_in_headline_metrics():
    lab, test = _board(400, SQ, 4), _board(400, SQ, 5)
    empty_only = lab[:, MASKED].float(), test[:, MASKED].float()
    res = board_metrics(empty_only[0], lab, empty_only[1], test, GROUPS, SCORED, PAPER)
    assert res.reconstruction == 0.0  # tags only on masked columns: nothing scored is predicted
    assert res.per_group["empty"]["reconstruction"] == 1.0
    assert res.coverage < 0.6


def test_half_the_features_reconstruct_half_the_board():
    lab, test = _board(800, SQ, 6), _board(800, SQ, 7)
    keep = GROUPS["mine"]  # perfect features for the mine channel only
    res = board_metrics(lab[:, keep].float(), lab, test[:, keep].float(), test, GROUPS, SCORED, PAPER)
    tp = test[:, keep].sum()
    pos = test[:, SCORED].sum()
    assert res.reconstruction == pytest.approx(float(2 * tp / (tp + pos)), abs=1e-6)
    assert res.per_group["mine"]["reconstruction"] == 1.0 and res.per_group["theirs"]["reconstruction"] == 0.0
    assert res.per_group["mine"]["coverage"] == pytest.approx(1.0)


def test_rare_feature_below_ten_true_positives_is_not_tagged():
    lab, test = _board(400, SQ, 8), _board(400, SQ, 9)
    feat = torch.zeros(400, 1)
    rows = torch.nonzero(lab[:, 0]).flatten()[:9]  # on at 9 true positives, precision 1
    feat[rows] = 1.0
    res = board_metrics(feat, lab, feat, test, GROUPS, SCORED, PAPER)
    assert res.n_tagged_features == 0
    res10 = board_metrics(feat, lab, feat, test, GROUPS, SCORED, PAPER, min_true_positives=9)
    assert res10.n_tagged_features == 1


def test_a_linear_readout_scores_the_same_as_its_saturated_probability():
    """Thresholds at label-split quantiles: a strictly increasing re-scaling changes no calibrated figure."""
    lab, test = _board(1500, SQ, 11), _board(1500, SQ, 12)
    gen = torch.Generator().manual_seed(13)
    a = lab.float() * 3 + torch.randn(lab.shape, generator=gen)
    b = test.float() * 3 + torch.randn(test.shape, generator=gen)
    lin = board_metrics(a, lab, b, test, GROUPS, SCORED, PAPER)
    prob = board_metrics(torch.sigmoid(a), lab, torch.sigmoid(b), test, GROUPS, SCORED, PAPER)
    assert lin.reconstruction == pytest.approx(prob.reconstruction, abs=1e-6)
    assert lin.coverage == pytest.approx(prob.coverage, abs=1e-6)
    assert 0.3 < lin.reconstruction < 1.0


def test_sparse_level_counts_equal_the_dense_definition():
    from deeprobe_bench.metrics import threshold_sweep as ts

    gen = torch.Generator().manual_seed(10)
    acts = torch.randn(900, 20, generator=gen).clamp(min=0) * (torch.rand(900, 20, generator=gen) < 0.3)
    acts[:, 3] = -1.0  # a dead feature is never on
    labels = torch.rand(900, 6, generator=gen) < 0.3
    labels[:, 0] = acts[:, 0] > 0.5
    t = torch.tensor(ts.THRESHOLDS)
    fast = ts.sweep_counts(acts, labels, chunk=250)
    dense = ts.sweep_counts(acts, labels, thresholds=t.flip(0), chunk=250)  # descending: the dense path
    assert torch.equal(fast.tp, dense.tp.flip(0)) and torch.equal(fast.on, dense.on.flip(0))
    # brute force at one threshold
    on = acts > 0.3 * acts.max(0).values
    on[:, 3] = False
    assert torch.equal(fast.tp[3], on.float().T @ labels.float())
    a = ts.reconstruction_counts(
        acts[:450], labels[:450], acts[450:], labels[450:], min_precision=0.5, min_true_positives=3
    )
    b = ts.reconstruction_counts(acts[:450], labels[:450], acts[450:], labels[450:], thresholds=t.flip(0),
                                 min_precision=0.5, min_true_positives=3)  # fmt: skip
    assert a.tags.any() and torch.equal(a.tp, b.tp.flip(0)) and torch.equal(a.pred, b.pred.flip(0))
