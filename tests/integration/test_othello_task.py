"""The othello task on the shipped zoo models (loaded, never trained here), with tiny splits."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench import runner
from deeprobe_bench.api import FeatureSet
from deeprobe_bench.subject import load_subject

SANITY = {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}  # the sanity baselines (zoo sanity)

TINY = {"n_train": "40", "n_label": "60", "n_test": "60", "objective_games": "20", "n_causal": "60"}


@pytest.fixture(scope="module")
def subjects():
    return {name: load_subject(name) for name in ("othello-mini", "othello-mini-random")}


def _run(subjects, tmp_path, model, methods, **kw):
    cells = runner.run_grid("othello", model, methods, [0], task_options=TINY, results_dir=str(tmp_path),
                            progress=False, subject_loader=subjects.__getitem__, **kw)  # fmt: skip
    for r in cells:
        assert r.ok, (r.method_label, r.error, (r.details or {}).get("traceback"))
    return {r.method_label: r for r in cells}


def _m(result, name):
    return result.metrics[name]["value"]


def test_zoo_model_predicts_legal_moves_and_random_init_does_not(subjects):
    from deeprobe_bench.tasks.othello import recipe

    card = subjects["othello-mini"].card
    ev = recipe.heldout(100, card["task"]["board_size"], seed=424242)
    assert recipe.legal_top1(subjects["othello-mini"].model, ev) >= 0.95
    assert recipe.legal_top1(subjects["othello-mini-random"].model, ev) < 0.6
    hook = card["task"]["hook_name"]
    assert set(subjects["othello-mini"].sae_variants(hook)) == {"standard", "topk", "panneal", *SANITY}
    assert "standard" in subjects["othello-mini-random"].sae_variants(hook)


def test_methods_run_and_metrics_have_their_ranges(subjects, tmp_path):
    res = _run(subjects, tmp_path, "othello-mini", ["random", "neurons", "sae"])
    for r in res.values():
        assert 0 <= _m(r, "reconstruction") <= 1 and 0 <= _m(r, "coverage") <= 1
        assert _m(r, "coverage_paper") <= 2 / 3 + 1e-6  # the paper's masked blank channel caps its coverage
        assert 0 < r.details["board"]["coverage_n_scored"] <= r.details["board"]["coverage_n_columns"]
        assert set(r.details["board"]["per_bsp"]) == {"mine", "theirs", "empty", "legal"}
        assert r.details["causal"]["n"] > 0 and 0 <= _m(r, "causal_success") <= 1
    assert res["neurons"].details["features"]["hook_name"].endswith("mlp.hook_post")
    curve = res["sae"].details["reconstruction_curve"]
    # sae hands over every latent of the shipped SAE (the card's d_sae): the curve's points are the top
    # 1 .. 50 of them, against the whole set
    assert curve["k"] == [1, 2, 5, 10, 20, 50] and len(curve["normalised"]) == 6
    d_sae = subjects["othello-mini"].card["recipe"]["d_sae"]
    assert res["sae"].details["features"]["n"] == d_sae and 0 <= _m(res["sae"], "reconstruction_cpr")
    res_rand = _run(subjects, tmp_path, "othello-mini-random", ["sae"], method_options={"arch": "standard"})
    assert res_rand["sae[arch=standard]"].ok


def test_features_that_never_fire_score_zero_everywhere(subjects):
    from deeprobe_bench.tasks.othello.task import OthelloConfig, OthelloTask

    task = OthelloTask(OthelloConfig(n_train=20, n_label=40, n_test=40, objective_games=10, n_causal=40))
    data = task.prepare(subjects["othello-mini"], seed=0)
    d = data.train_acts.shape[1]
    dead = FeatureSet(data.hook_name, torch.eye(d)[:4], encoder=lambda x: torch.zeros(*x.shape[:-1], 4))
    out = task.evaluate(data, dead)
    assert out["reconstruction"].value == 0 and out["coverage"].value == 0
    # no feature is tagged for any square: every edit is a no-op, which fails by definition
    assert out["causal_success"].value == 0 and out["_details"]["causal"]["squares_with_features"] == 0
    assert task.objective(data, dead) == 0


@pytest.mark.slow
def test_probe_beats_random_directions_and_the_random_init_model(subjects, tmp_path):
    trained = _run(subjects, tmp_path, "othello-mini", ["probe", "random"])
    rnd_init = _run(subjects, tmp_path, "othello-mini-random", ["probe"])
    assert _m(trained["probe"], "coverage") > _m(trained["random"], "coverage") + 0.1
    assert _m(trained["probe"], "coverage") > _m(rnd_init["probe"], "coverage") + 0.05


def test_the_cards_probe_figures_do_not_depend_on_how_many_squares_are_fitted_at_once():
    from deeprobe_bench.tasks.othello import recipe

    model = recipe.build_model(recipe.model_config(recipe.TINY), recipe.TINY.size)
    hooks = ["blocks.0.hook_resid_post"]
    one = recipe.probe_report(model, 40, 20, recipe.TINY.size, 0, hooks)
    assert recipe.probe_report(model, 40, 20, recipe.TINY.size, 0, hooks, n_jobs=2) == one
    assert all(0 < v <= 1 for v in one[hooks[0]].values())


def test_a_checkpoint_is_probed_as_the_card_probes_the_model_that_wrote_it(tmp_path, monkeypatch, capsys):
    import json

    from deeprobe_bench.tasks.othello import recipe
    from deeprobe_bench.zoo import lm

    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path))
    model, _ = recipe.train_lm(recipe.TINY, 0)
    checkpoint = lm.work_dir(recipe.NAME, recipe.run_key(recipe.TINY, 0)) / lm.CHECKPOINT
    recipe.main(["--tiny", "--probe-checkpoint", str(checkpoint), "--probe-train-games", "40"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == recipe.probe_report(model, 40, recipe.PROBE_TEST_GAMES, recipe.TINY.size, 0)
    assert list(printed) == [f"blocks.{i}.hook_resid_post" for i in range(recipe.TINY.n_layers)]
