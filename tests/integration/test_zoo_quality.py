"""Slow: the shipped othello-mini's card figures are re-measured from its weights (the card states them,
this checks them), with the recipe's own probe and SAE code on the same held-out games. ``DEEPROBE_ZOO``
points it at a user-trained copy instead (loading prefers it)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_othello_mini_card_figures_are_reproduced():
    from deeprobe_bench.tasks.othello import recipe
    from deeprobe_bench.tasks.othello.zoo import OTHELLO_MINI
    from deeprobe_bench.zoo.sae import sae_quality

    subject = OTHELLO_MINI.load()
    card, q = subject.card, subject.card["quality"]
    size, seed, hook = card["task"]["board_size"], card["seed"], card["task"]["hook_name"]
    if "mine_theirs_occupied" in q:  # recipe v2: the card's probe games and figures
        games = q["probe_games"]
        report = recipe.probe_report(subject.model, games["train"], games["test"], size, seed, [hook])
        assert report[hook]["mine_theirs_occupied"] == pytest.approx(q["mine_theirs_occupied"], abs=0.005)
        assert report[hook]["three_way"] == pytest.approx(q["three_way"], abs=0.005)
        assert q["bar_met"] == (q["mine_theirs_occupied"] >= recipe.BAR["mine_theirs_occupied"] and
                                q["legal_top1"] >= recipe.BAR["legal_top1"])  # fmt: skip
    else:  # recipe v1: mine/theirs/empty probe on 500 train / 300 test games
        report = recipe.probe_report(subject.model, 500, 300, size, seed, [hook])
        assert report[hook]["three_way"] == pytest.approx(q["probe_accuracy"], abs=0.005)
    ev = recipe.heldout(q.get("legal_top1_games", 1000), size, recipe.EVAL_SEED_BASE + 50 + seed)
    assert recipe.legal_top1(subject.model, ev) == pytest.approx(q["legal_top1"], abs=0.02)
    measured = [arch for arch, sq in card["saes"].items() if "n_eval_rows" in sq]  # v1 cards do not say which rows
    rows = recipe.sae_eval_rows(subject.model, hook, card["recipe"]["d_sae"], size, seed) if measured else None
    for arch in measured:
        sq, got = card["saes"][arch], sae_quality(subject.saes[f"{hook}@{arch}"], rows)
        assert len(rows) == sq["n_eval_rows"]
        assert got["explained_variance"] == pytest.approx(sq["explained_variance"], abs=1e-3), arch
        assert got["l0"] == pytest.approx(sq["l0"], abs=0.05), arch
