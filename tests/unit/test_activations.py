"""The activation cache: computed once per (model, tokens, hook), reused, robust to bad entries."""

import pytest
import torch
from helpers import tiny_ioi_subject

from deeprobe_bench import activations
from deeprobe_bench.api import UserError


@pytest.fixture
def subject(tmp_path):
    return tiny_ioi_subject(tmp_path / "tok")


def test_cache_hit_returns_the_same_activations(subject, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    tokens, _ = subject.to_tokens(["Then , Mary and John went to the store", "Mary gave a ring to"])
    hook = "blocks.0.hook_resid_post"
    hits, misses = activations.STATS["hits"], activations.STATS["misses"]
    a = activations.get(subject.model, tokens, hook)
    passes = subject.forward_passes
    b = activations.get(subject.model, tokens, hook)
    assert torch.equal(a, b) and a.shape == (*tokens.shape, 32)
    assert activations.STATS["hits"] == hits + 1 and activations.STATS["misses"] == misses + 1
    assert subject.forward_passes == passes, "a cache hit must not run the model"
    _, cache = subject.model.run_with_cache(tokens, names_filter=hook)
    assert torch.allclose(a, cache[hook], atol=1e-5)
    # Other tokens or another hook miss.
    c = activations.get(subject.model, tokens[:1], hook)
    assert activations.STATS["misses"] == misses + 2 and torch.allclose(c, a[:1], atol=1e-5)


def test_corrupted_entry_is_recomputed_not_fatal(subject, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    tokens, _ = subject.to_tokens(["Mary gave a ring to"])
    hook = "blocks.1.hook_resid_post"
    a = activations.get(subject.model, tokens, hook)
    (entry,) = (tmp_path / "cache" / "activations").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:20])  # truncated, as by a killed writer without atomic rename
    b = activations.get(subject.model, tokens, hook)
    assert torch.equal(a, b)
    assert not list((tmp_path / "cache" / "activations").glob("*.tmp"))


def test_nan_activations_are_a_user_error(subject, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", "off")
    with torch.no_grad():
        subject.model.embed.W_E.fill_(float("nan"))
    tokens, _ = subject.to_tokens(["Mary gave a ring to"])
    with pytest.raises(UserError, match="NaN"):
        activations.get(subject.model, tokens, "blocks.0.hook_resid_post")


def test_single_token_names_and_errors(subject):
    assert subject.single_token("Mary") != subject.single_token("John")
    with pytest.raises(UserError, match="single token"):
        subject.single_token("Zorblax")
