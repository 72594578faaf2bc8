"""The ``neurons`` method on a tiny random-init HookedTransformer (no training)."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench import api
from deeprobe_bench.baselines.neurons import Neurons, NeuronsConfig


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import quiet_hooked_transformer

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=20, n_ctx=8,
                                  act_fn="relu", seed=0, device="cpu")  # fmt: skip
    m = quiet_hooked_transformer(cfg)
    m.eval()
    return m


class _Subject:
    name = "tiny"

    def __init__(self, model):
        self.model = model


def _ctx(model, hook, fields=None):
    return api.DiscoveryContext(subject=_Subject(model), hook_name=hook, train_acts=torch.zeros(4, 16), sae=None,
                                seed=0, supervision="none", budget=api.Budget(None), progress=lambda x, **k: x,
                                **(fields or {}))  # fmt: skip


def test_neurons_of_the_hook_layer_with_w_out_rows(model):
    fs = Neurons().discover(_ctx(model, "blocks.1.hook_resid_post"))
    assert fs.hook_name == "blocks.1.mlp.hook_post" and len(fs) == 32
    assert torch.equal(fs.directions, model.blocks[1].mlp.W_out.detach())
    x = torch.randn(5, 32)
    assert torch.equal(fs.encoder(x), x)  # feature i is coordinate i of the hook's activation
    assert fs.coordinates == fs.meta["hook_coordinates"] == list(range(32)) and fs.scores is None
    assert fs.top(3).coordinates == [0, 1, 2] and fs.subset([5, 2]).coordinates == [5, 2]


def test_neurons_ranked_by_how_often_they_fire(model, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path))
    tokens = torch.randint(0, 20, (6, 8), generator=torch.Generator().manual_seed(0))
    measured = torch.ones(6, 8, dtype=torch.bool)
    fs = Neurons(NeuronsConfig(n=5)).discover(
        _ctx(model, "blocks.0.hook_resid_post", {"train_tokens": tokens, "train_measured": measured})
    )
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
    freq = (cache["blocks.0.mlp.hook_post"].reshape(-1, 32) > 0).float().mean(0)
    assert len(fs) == 5 and torch.allclose(fs.scores, freq[fs.meta["hook_coordinates"]])
    assert fs.scores.tolist() == sorted(freq.tolist(), reverse=True)[:5]


def test_neurons_need_a_block_hook(model):
    with pytest.raises(api.UserError):
        Neurons().discover(_ctx(model, "hook_embed"))
