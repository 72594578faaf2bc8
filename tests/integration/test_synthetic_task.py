"""The ``synthetic`` task on a tiny world built by its own recipe: calibration (oracle 1, random 0), the
methods it serves, the frozen SAE baselines, and refusals."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench import api, runner

TINY = {"n_train": 2048, "n_label": 2048, "n_test": 2048, "n_concepts": 16, "objective_rows": 1024}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from deeprobe_bench.tasks.synthetic.recipe import train

    out = tmp_path_factory.mktemp("synth-tiny")
    card = train(out, seed=0, name="synth-tiny", variants=("topk", "frozen-decoder", "frozen-encoder"))
    return out, card


@pytest.fixture(scope="module")
def subject(world_dir):
    from deeprobe_bench.tasks.synthetic.subject import load_world_dir

    return load_world_dir(world_dir[0], name="synth-tiny")


def run(tmp_path, subject, methods, method_options=None, seeds=(0,)):
    return runner.run_grid(
        "synthetic", "synth-tiny", list(methods), list(seeds), task_options={k: str(v) for k, v in TINY.items()},
        method_options=method_options, results_dir=str(tmp_path), progress=False,
        subject_loader=lambda name: subject,
    )  # fmt: skip


def values(result):
    assert result.ok, result.error
    return {k: v["value"] for k, v in result.metrics.items()}


def test_recipe_card_and_saes(world_dir, subject):
    out, card = world_dir
    assert set(subject.sae_variants("hook_hidden")) == {"topk", "frozen-decoder", "frozen-encoder"}
    q = card["quality"]["saes"]
    # the frozen decoder's directions are its random init: exactly what the constraint promises
    assert q["frozen-decoder"]["constraint"]["decoder_cos_to_init_min"] > 1 - 1e-5
    assert q["frozen-encoder"]["constraint"]["encoder_cos_to_init_mean"] > 1 - 1e-5
    assert (out / "world" / "synthetic_model.safetensors").is_file()


def test_oracle_is_perfect_and_random_recovers_nothing(tmp_path, subject):
    oracle, random = run(tmp_path, subject, ["oracle", "random"])
    o, r = values(oracle), values(random)
    for key in ("recovered", "recovery", "precision", "mcc_directions", "mcc_activations", "coverage",
                "coverage_paper", "explained_variance"):  # fmt: skip
        assert o[key] == pytest.approx(1.0, abs=1e-5), key
    # reconstruction tags every feature with precision >= 0.95 on the label split, so a planted feature
    # correlated with a concept (not the concept's own) is tagged too and costs a few test false positives
    assert o["reconstruction"] > 0.95
    assert o["coverage_n_scored"] >= 8
    # random unit directions in 32-d: a cosine above 0.9 with a planted direction has probability ~1e-12
    assert r["recovered"] == 0.0
    assert r["recovery"] < 0.8 and r["mcc_activations"] < 0.6 and r["coverage"] < o["coverage"]


def test_null_sits_at_chance(tmp_path, subject):
    (null,) = run(tmp_path, subject, ["null"])
    v = values(null)
    assert v["coverage"] == pytest.approx(0.0, abs=0.05) and v["recovered"] == 0.0


def test_frozen_decoder_recovers_nothing_and_trained_topk_does_better(tmp_path, subject):
    d_sae = subject.sae_for("hook_hidden", "topk").cfg.d_sae
    results = {
        arch: values(run(tmp_path, subject, ["sae"], {"arch": arch, "n": str(d_sae)})[0])
        for arch in ("topk", "frozen-decoder", "frozen-encoder")
    }
    # decoder rows of the frozen-decoder SAE are random unit directions: none within cos 0.9 of a planted one
    assert results["frozen-decoder"]["recovered"] == 0.0
    assert results["topk"]["recovery"] > results["frozen-decoder"]["recovery"]
    for v in results.values():
        assert 0 < v["l0"] <= 4 + 1e-6  # TopK k = 4
        assert v["explained_variance"] <= 1.0


def test_supervised_and_search_methods_run(tmp_path, subject):
    res = run(tmp_path, subject, ["probe", "diffmean"]) + run(tmp_path, subject, ["greedy"], {"budget": "20"})
    for r in res:
        v = values(r)
        assert 0 <= v["coverage"] <= 1 and "recovered" in v
    assert 0 < res[2].objective_calls <= 20


def test_refusals(tmp_path, subject):
    with pytest.raises(api.UserError, match="no block|MLP"):
        run(tmp_path, subject, ["neurons"])
    from deeprobe_bench.tasks.synthetic.task import SyntheticTask

    with pytest.raises(api.UserError, match="synthetic world"):
        SyntheticTask().prepare(object(), 0)


def test_splits_are_seeded(subject):
    from deeprobe_bench.tasks.synthetic.task import SyntheticConfig, SyntheticTask

    task = SyntheticTask(SyntheticConfig(**TINY))
    a, b, c = (
        task.prepare(subject, 0, limit=256),
        task.prepare(subject, 0, limit=256),
        task.prepare(subject, 1, limit=256),
    )
    assert torch.equal(a.train_acts, b.train_acts) and not torch.equal(a.train_acts, c.train_acts)
    assert a.concepts == c.concepts  # the scored planted features do not depend on the cell seed
    s = a.extra["splits"]["test"]
    assert torch.equal(s.fires(a.extra["columns"]), s.dense_features()[:, a.extra["columns"]] > 0)
