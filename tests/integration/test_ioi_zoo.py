"""The zoo model ioi-mini: the shipped checkpoint meets its quality bar, and its recipe runs end to end."""

from __future__ import annotations

import json

import pytest
import torch

from deeprobe_bench.subject import load_zoo_dir
from deeprobe_bench.tasks.ioi import data
from deeprobe_bench.tasks.ioi.train import BAR, eval_batch, evaluate, train
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
