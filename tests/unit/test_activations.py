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


def test_half_precision_entries_are_memory_mapped_rounded_and_kept_apart(subject, tmp_path, monkeypatch):
    """DEEPROBE_CACHE_DTYPE=float16 stores half-precision entries beside the float32 ones; a hit returns
    the float32 of the stored halves, as the miss did; a bad dtype is a user error."""
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    tokens, _ = subject.to_tokens(["Then , Mary and John went to the store", "Mary gave a ring to"])
    hook = "blocks.0.hook_resid_post"
    full = activations.get(subject.model, tokens, hook)
    monkeypatch.setenv("DEEPROBE_CACHE_DTYPE", "float16")
    half_miss = activations.get(subject.model, tokens, hook)
    passes = subject.forward_passes
    half_hit = activations.get(subject.model, tokens, hook)
    assert subject.forward_passes == passes  # the half entry was hit
    assert half_hit.dtype == torch.float32 and torch.equal(half_hit, half_miss)
    assert torch.equal(half_hit, full.half().float()) and not torch.equal(half_hit, full)
    entries = sorted(p.name for p in (tmp_path / "cache" / "activations").glob("*.pt"))
    assert len(entries) == 2 and sum(name.endswith(".float16.pt") for name in entries) == 1
    half_file = next(p for p in (tmp_path / "cache" / "activations").glob("*.float16.pt"))
    assert torch.load(half_file, weights_only=True).dtype == torch.float16
    monkeypatch.setenv("DEEPROBE_CACHE_DTYPE", "float32")
    mapped = activations.get(subject.model, tokens, hook)  # a float32 hit is the memory-mapped entry itself
    assert torch.equal(mapped, full)
    mapped.add_(1.0)  # copy-on-write mapping: the entry is untouched
    assert torch.equal(activations.get(subject.model, tokens, hook), full)
    monkeypatch.setenv("DEEPROBE_CACHE_DTYPE", "float8")
    with pytest.raises(UserError, match="DEEPROBE_CACHE_DTYPE"):
        activations.get(subject.model, tokens, hook)
