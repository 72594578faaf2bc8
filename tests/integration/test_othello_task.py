"""The othello task on the shipped zoo models (loaded, never trained here), with tiny splits."""

from __future__ import annotations

import pytest

from deeprobe_bench import runner
from deeprobe_bench.subject import load_subject

TINY = {"n_train": "60", "n_label": "80", "n_test": "80", "objective_games": "40", "n_causal": "60"}


@pytest.fixture(scope="module")
def subjects():
    return {name: load_subject(name) for name in ("othello-mini", "othello-mini-random")}


@pytest.fixture(scope="module")
def results(subjects, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    cells = runner.run_grid("othello", "othello-mini", ["probe", "random", "neurons", "sae"], [0], task_options=TINY,
                            results_dir=str(out), progress=False, subject_loader=subjects.__getitem__)  # fmt: skip
    rnd = runner.run_grid("othello", "othello-mini-random", ["probe", "sae"], [0], task_options=TINY,
                          results_dir=str(out), progress=False, subject_loader=subjects.__getitem__)  # fmt: skip
    by = {r.method_label: r for r in cells}
    by.update({f"random-init {r.method_label}": r for r in rnd})
    for r in by.values():
        assert r.ok, (r.method_label, r.error, (r.details or {}).get("traceback"))
    return by


def _m(result, name):
    return result.metrics[name]["value"]


def test_zoo_model_predicts_legal_moves_and_random_init_does_not(subjects):
    from deeprobe_bench.tasks.othello import train

    size = subjects["othello-mini"].card["task"]["board_size"]
    ev = train.eval_games(100, size, seed=424242)
    assert train.legal_top1(subjects["othello-mini"].model, ev) >= 0.95
    assert train.legal_top1(subjects["othello-mini-random"].model, ev) < 0.6
    assert set(subjects["othello-mini"].sae_variants(subjects["othello-mini"].card["task"]["hook_name"])) == {
        "standard", "topk", "panneal"}  # fmt: skip
    assert "standard" in subjects["othello-mini-random"].sae_variants(
        subjects["othello-mini"].card["task"]["hook_name"]
    )


def test_probe_reconstructs_the_board_and_random_directions_do_not(results):
    probe, rnd = results["probe"], results["random"]
    assert _m(probe, "reconstruction") > 0.5
    assert _m(rnd, "reconstruction") < 0.2
    assert _m(probe, "coverage") > _m(rnd, "coverage")
    assert 0 <= _m(probe, "coverage_raw") <= 2 / 3 + 1e-6
    per_bsp = probe.details["board"]["per_bsp"]
    assert set(per_bsp) == {"mine", "theirs", "empty", "legal"}


def test_trained_model_beats_its_random_init_for_the_probe(results):
    assert _m(results["probe"], "reconstruction") > _m(results["random-init probe"], "reconstruction") + 0.2


def test_causal_metric_separates_probe_from_random(results):
    probe, rnd = results["probe"], results["random"]
    assert _m(probe, "causal_success") > _m(rnd, "causal_success")
    causal = probe.details["causal"]
    assert causal["n"] > 0 and causal["clean"] > causal["null"]


def test_neurons_are_read_at_the_mlp_hook_and_ranked(results):
    neurons = results["neurons"]
    assert neurons.details["features"]["hook_name"].endswith("mlp.hook_post")
    assert "reconstruction_cpr" in neurons.metrics and "causal_success" in neurons.metrics


def test_curve_is_normalised_by_the_whole_set(results):
    curve = results["sae"].details["reconstruction_curve"]  # sae returns 50 latents: k = 50 is the whole set
    assert curve["k"][-1] == 50 and curve["normalised"][-1] == pytest.approx(1.0)
    # |1 - v| >= 1 - v pointwise, so CMD >= 1 - CPR
    assert _m(results["sae"], "reconstruction_cmd") >= 1 - _m(results["sae"], "reconstruction_cpr") - 1e-9
