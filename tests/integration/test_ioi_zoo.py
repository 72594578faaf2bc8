"""The zoo model ioi-mini: the shipped checkpoint meets its quality bar, and its recipe runs end to end."""

from __future__ import annotations

import json

import pytest
import torch

from deeprobe_bench.subject import load_zoo_dir
from deeprobe_bench.tasks.ioi import data
from deeprobe_bench.tasks.ioi.recipe import BAR, eval_batch, evaluate, train
from deeprobe_bench.tasks.ioi.zoo import IOI_MINI


@pytest.fixture(scope="module")
def shipped():
    return IOI_MINI.load()


def test_shipped_ioi_mini_meets_bar(shipped):
    card = shipped.card
    q = card["quality"]
    assert q["bar_met"] is True
    assert q["heldout_accuracy"] >= BAR["heldout_accuracy"]
    assert q["heldout_logit_diff"] >= BAR["heldout_logit_diff"]
    hook = card["task"]["hook_name"]
    assert hook in shipped.saes and shipped.saes[hook].cfg.metadata.hook_name == hook
    # do not trust the card: re-measure on fresh held-out prompts (a seed the card's figures did not use)
    fresh = data.make_split("test", 200, seed=12345)
    assert set(fresh["io"]) <= set(data.HELDOUT_NAMES)
    m = evaluate(shipped.model, eval_batch(shipped.model, fresh))
    assert m["accuracy"] >= BAR["heldout_accuracy"], m
    assert m["logit_diff"] >= BAR["heldout_logit_diff"], m


def test_shipped_ioi_mini_is_small(shipped):
    files = [p for p in IOI_MINI.path().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    import os

    a, b = tmp_path_factory.mktemp("tiny_a"), tmp_path_factory.mktemp("tiny_b")
    runs, saved = [], os.environ.get("DEEPROBE_CACHE")
    try:  # each run with its own cache: the second trains from scratch instead of resuming the first's checkpoint
        for out in (a, b):
            os.environ["DEEPROBE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
            runs.append((out, train(out, seed=0, tiny=True)))
    finally:
        os.environ.pop("DEEPROBE_CACHE") if saved is None else os.environ.__setitem__("DEEPROBE_CACHE", saved)
    return tuple(runs)


def test_tiny_recipe_writes_loadable_zoo_dir(tiny_runs):
    (path, card), _ = tiny_runs
    assert json.loads((path / "card.json").read_text()) == card
    subject = load_zoo_dir(path)
    assert subject.card["quality"]["bar_met"] is False or subject.card["quality"]["heldout_accuracy"] >= 0.95
    hook = subject.card["task"]["hook_name"]
    sae = subject.sae_for(hook)
    assert sae is not None and sae.cfg.metadata.hook_name == hook
    d_model, k = subject.model.cfg.d_model, card["sae"]["k"]
    x = torch.randn(10, d_model)
    with torch.no_grad():
        codes = sae.encode(x)
    assert codes.shape == (10, card["sae"]["d_sae"])
    assert int((codes != 0).sum(-1).max()) <= k
    # the loaded model runs on IOI prompts and the cache has the hook
    tokens, _ = subject.to_tokens([data.make_split("test", 2, seed=0)[0]["prompt"]])
    _, cache = subject.model.run_with_cache(tokens, names_filter=hook)
    assert cache[hook].shape[-1] == d_model


def test_tiny_recipe_is_deterministic(tiny_runs):
    from safetensors.torch import load_file

    (a, _), (b, _) = tiny_runs
    for rel in ["model.safetensors", *[str(p.relative_to(a)) for p in a.glob("saes/*/*.safetensors")]]:
        wa, wb = load_file(str(a / rel)), load_file(str(b / rel))
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (rel, key)


def test_sanity_stage_adds_the_three_baselines_and_leaves_the_model_alone(tiny_runs, tmp_path):
    import shutil

    from deeprobe_bench.subject import zoo_file_digests
    from deeprobe_bench.tasks.ioi.recipe import sanity_saes

    (src, _), _ = tiny_runs
    path = tmp_path / "ioi-mini"
    shutil.copytree(src, path)
    before = zoo_file_digests(path)
    entry = sanity_saes(path, seed=0)
    after = zoo_file_digests(path)
    assert {k: after[k] for k in before} == before  # weights and the trained SAE untouched
    subject = load_zoo_dir(path)  # the card's sha256 map covers the new files
    hook = subject.card["task"]["hook_name"]
    assert set(subject.sae_variants(hook)) == {"default", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder"}
    assert subject.card["sanity_saes"] == entry and entry["base"] == "topk"
    # what each baseline keeps at its random initialisation, measured after training
    assert entry["frozen-decoder"]["decoder_cos_to_init_min"] > 0.9999
    assert entry["soft-frozen-decoder"]["decoder_cos_to_init_min"] >= 0.8 - 1e-5
    assert entry["frozen-encoder"]["encoder_cos_to_init_mean"] > 0.9999
    assert entry["frozen-encoder"]["decoder_cos_to_init_mean"] < 0.9999  # its decoder did train
    trained = subject.sae_for(hook)
    for variant in ("frozen-decoder", "soft-frozen-decoder", "frozen-encoder"):
        sae = subject.sae_for(hook, variant)
        assert sae.cfg.d_sae == trained.cfg.d_sae and sae.cfg.metadata.hook_name == hook
