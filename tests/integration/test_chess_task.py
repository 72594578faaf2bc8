"""The chess task on the shipped zoo models (loaded, never trained here), with tiny splits."""

from __future__ import annotations

import pytest

from deeprobe_bench import runner
from deeprobe_bench.subject import load_subject

SANITY = {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}  # the sanity baselines (zoo sanity)

TINY = {"n_train": "40", "n_label": "60", "n_test": "60", "objective_games": "20"}


@pytest.fixture(scope="module")
def subjects():
    return {name: load_subject(name) for name in ("chess-mini", "chess-mini-random")}


def _run(subjects, out, model, methods):
    cells = runner.run_grid("chess", model, methods, [0], task_options=TINY, results_dir=str(out), progress=False,
                            subject_loader=subjects.__getitem__)  # fmt: skip
    for r in cells:
        assert r.ok, (r.method_label, r.error, (r.details or {}).get("traceback"))
    return {r.method_label: r for r in cells}


@pytest.fixture(scope="module")
def results(subjects, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    by = _run(subjects, out, "chess-mini", ["random", "sae"])
    by.update({f"random-init {k}": r for k, r in _run(subjects, out, "chess-mini-random", ["sae"]).items()})
    return by


@pytest.fixture(scope="module")
def probe_results(subjects, results, tmp_path_factory):
    """The probe cell (about 900 logistic regressions: minutes on a busy CPU), with the cheap cells."""
    return {**results, **_run(subjects, tmp_path_factory.mktemp("probe"), "chess-mini", ["probe"])}


def _m(result, name):
    return result.metrics[name]["value"]


def test_zoo_models_load_with_their_saes(subjects):
    from deeprobe_bench.tasks.chess import data

    mini, rnd = subjects["chess-mini"], subjects["chess-mini-random"]
    hook = mini.card["task"]["hook_name"]
    assert rnd.card["task"]["hook_name"] == hook
    assert set(mini.sae_variants(hook)) == {"standard", "topk", "panneal", *SANITY}
    assert mini.sae_for(hook) is mini.sae_variants(hook)["topk"]
    assert set(rnd.sae_variants(hook)) == {"standard"}
    assert mini.model.cfg.d_vocab == len(data.VOCAB) and mini.tokenizer.bos_token_id == data.BOS_ID
    # the card's quality figures were measured on held-out games; the trained model predicts them better
    assert mini.card["quality"]["heldout_loss"] < mini.card["quality"]["random_init_heldout_loss"]


def test_trained_model_predicts_text_better_than_random_init(subjects):
    import torch
    import torch.nn.functional as F

    from deeprobe_bench.tasks.chess import data

    n_ctx = subjects["chess-mini"].model.cfg.n_ctx
    games = data.generate_games(8, 777, "eval", n_ctx, cache=False)
    tokens, lengths = data.encode(list(games["text"]), n_ctx)
    target = tokens[:, 1:].clone()
    target[torch.arange(n_ctx - 1)[None, :] >= lengths[:, None] - 1] = -100  # past each game's text

    def loss(model):
        with torch.no_grad():
            logits = model(tokens)[:, :-1]
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100))

    # the shipped chess-mini (card version 1) reads characters: uniform over 32 of them is ln 32 = 3.47 nats
    assert loss(subjects["chess-mini"].model) < 1.5 < loss(subjects["chess-mini-random"].model)


@pytest.mark.slow
def test_probe_reconstructs_more_than_random_directions(probe_results):
    probe, rnd = probe_results["probe"], probe_results["random"]
    assert _m(probe, "reconstruction") > _m(rnd, "reconstruction")
    assert _m(rnd, "reconstruction") < 0.1
    assert _m(probe, "coverage") > _m(rnd, "coverage")
    assert 0 <= _m(probe, "coverage_paper") <= 1
    assert set(probe.details["board"]["per_bsp"]) == {"piece", "piece_initial", "check", "castling", "legal"}


def test_cells_run_on_both_models(results):
    rnd = results["random"]
    assert _m(rnd, "reconstruction") < 0.1  # random directions tag (almost) nothing at precision 0.95
    assert 0 <= _m(rnd, "coverage_paper") <= 1
    assert set(rnd.details["board"]["per_bsp"]) == {"piece", "piece_initial", "check", "castling", "legal"}
    hook = results["sae"].details["features"]["hook_name"]
    for label in ("sae", "random-init sae"):
        r = results[label]
        assert 0 <= _m(r, "reconstruction") <= 1 and 0 <= _m(r, "coverage") <= 1
        assert r.details["features"]["hook_name"] == hook == r.details["task_info"]["hook_name"]


def test_a_move_level_model_is_scored_at_its_own_positions(tmp_path):
    """A ``uci-moves`` model (chess-mini v3's format; random init here, built by the recipe) is measured at
    Black's moves, and the references bound it: the oracle reads the board, null and random do not."""
    from deeprobe_bench.subject import Subject
    from deeprobe_bench.tasks.chess import recipe

    model = recipe.random_model(recipe.TINY, 0)
    hook = "blocks.0.hook_resid_post"
    subject = Subject("chess-uci", model, {}, {"task": {"hook_name": hook, "format": "uci-moves"}})
    by = _run({"chess-uci": subject}, tmp_path, "chess-uci", ["oracle", "null", "random"])
    info = by["oracle"].details["task_info"]
    assert info["format"] == "uci-moves" and info["n_tokens"] == recipe.TINY.n_plies + 1 and "Black's" in info["positions"]
    assert _m(by["oracle"], "reconstruction") > 0.8
    assert _m(by["null"], "reconstruction") == 0.0 and _m(by["random"], "reconstruction") < 0.05


def test_a_model_of_neither_format_is_refused_with_one_line(tmp_path):
    from deeprobe_bench.api import UserError
    from deeprobe_bench.subject import Subject
    from deeprobe_bench.tasks.chess import recipe
    from deeprobe_bench.tasks.chess.task import ChessConfig, ChessTask

    model = recipe.random_model(recipe.TINY, 0)
    for card in ({"task": {"format": "pgn-chars"}}, {"task": {"format": "san"}}):
        with pytest.raises(UserError, match="reads neither"):
            ChessTask(ChessConfig()).prepare(Subject("x", model, {}, card), 0)
    with pytest.raises(UserError, match="n_chars applies to character models"):
        ChessTask(ChessConfig(n_chars=64)).prepare(Subject("x", model, {}, {}), 0)


def test_the_tiny_move_level_recipe_writes_zoo_models_the_task_reads(tmp_path, monkeypatch):
    """chess-mini v3's recipe end to end at its tiny size: LM, card figures, SAEs at the measured rows, the
    random-init twin at the same hook, the sanity baselines; the task scores the SAE latents it wrote."""
    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.tasks.chess import recipe

    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    card = recipe.train(tmp_path / "chess-mini", 0, tiny=True)
    rnd = recipe.train_random(tmp_path / "chess-mini-random", 0, tiny=True)
    assert card["task"]["format"] == rnd["task"]["format"] == "uci-moves"
    assert rnd["task"]["hook_name"] == card["task"]["hook_name"]  # the twin reads the trained card beside it
    q = card["quality"]
    assert 0 <= q["legal_top1"] <= 1 and q["probe"]["trained_best_layer"] == card["task"]["hook_name"]
    assert set(card["saes"]) == {"standard", "topk", "panneal"}
    assert card["recipe"]["step"] == recipe.TINY.steps
    entry = recipe.sanity_saes(tmp_path / "chess-mini", 0)
    assert {"frozen-decoder", "soft-frozen-decoder", "frozen-encoder"} <= set(entry)
    subjects = {n: load_zoo_dir(tmp_path / n) for n in ("chess-mini", "chess-mini-random")}
    by = _run(subjects, tmp_path / "results", "chess-mini", ["sae"])
    assert by["sae"].details["task_info"]["format"] == "uci-moves"


def test_the_v3_sanity_stage_refuses_the_shipped_character_model_in_one_line(tmp_path, capsys):
    import shutil
    from importlib.resources import files

    from deeprobe_bench import cli

    shutil.copytree(str(files("deeprobe_bench.tasks.chess") / "zoo" / "chess-mini"), tmp_path / "chess-mini")
    assert cli.main(["zoo", "sanity", "chess-mini", "--out", str(tmp_path / "chess-mini")]) == 2
    err = capsys.readouterr().err
    assert "another format (version 1)" in err and "Traceback" not in err  # the shipped card: version 1
