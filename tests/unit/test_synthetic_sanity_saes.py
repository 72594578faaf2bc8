"""Sanity-baseline SAEs (Korznikov et al. 2026): the cone projection and what each baseline keeps frozen."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench.sanity_saes import SANITY_ARCHS, constrained, project_to_cone, train_sanity_sae


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_project_to_cone_moves_only_rows_outside_onto_the_boundary():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(200, 16, generator=gen)
    w = torch.randn(200, 16, generator=gen) * 3
    w[:5] = w0[:5] * 2  # inside (cos 1)
    w[5] = -w0[5]  # antiparallel: no orthogonal component
    out = project_to_cone(w, w0, 0.8)
    cos_in = torch.nn.functional.cosine_similarity(w, w0, dim=-1)
    cos_out = torch.nn.functional.cosine_similarity(out, w0, dim=-1)
    inside = cos_in >= 0.8
    assert torch.equal(out[inside], w[inside])
    outside = (~inside).nonzero().flatten().tolist()
    for i in outside:
        if i == 5:  # no orthogonal component: the initial direction itself
            assert torch.allclose(_unit(out[5]), _unit(w0[5]), atol=1e-5)
        else:
            assert abs(float(cos_out[i]) - 0.8) < 1e-5
    assert torch.allclose(out.norm(dim=-1), w.norm(dim=-1), rtol=1e-5)
    # the projection is the nearest direction on the cone: it stays in the plane of w and w0
    i = next(j for j in outside if j != 5)
    plane = torch.linalg.qr(torch.stack([w0[i], w[i]]).T).Q
    assert torch.allclose(plane @ (plane.T @ out[i]), out[i], atol=1e-4)


def test_project_to_cone_rejects_bad_input():
    with pytest.raises(ValueError):
        project_to_cone(torch.zeros(2, 3), torch.zeros(3, 3), 0.8)
    with pytest.raises(ValueError):
        project_to_cone(torch.ones(2, 3), torch.ones(2, 3), 1.5)
    with pytest.raises(ValueError):
        constrained("thawed")


def _planted(n=4096, d=16, f=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v = _unit(torch.randn(f, d, generator=gen))
    a = (torch.rand(n, f, generator=gen) < 0.1).float() * (1 + torch.rand(n, f, generator=gen))
    return a @ v


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x = _planted()
    common = dict(batch=256, k=4, lr=3e-3)
    out = {}
    for variant in SANITY_ARCHS:
        out[variant] = {s: train_sanity_sae(x, "hook_hidden", variant, 32, 7, steps=s, **common) for s in (5, 60)}
    from deeprobe_bench.sae_training import train_sae

    out["topk"] = {s: train_sae(x, "hook_hidden", "topk", 32, 7, steps=s, **common) for s in (5, 60)}
    return out


def _dir_cos(a, b, dim=-1):
    return torch.nn.functional.cosine_similarity(a.detach().float(), b.detach().float(), dim=dim)


def test_frozen_decoder_keeps_its_random_directions(trained):
    short, long = trained["frozen-decoder"][5], trained["frozen-decoder"][60]
    assert _dir_cos(short.W_dec, long.W_dec).min() > 1 - 1e-5  # same random init, never moved
    assert _dir_cos(short.W_enc, long.W_enc, dim=0).min() < 0.99  # the encoder trained
    assert long.training_record["decoder_cos_to_init_min"] > 1 - 1e-5
    # the unconstrained SAE from the same seed starts at the same decoder and moves away from it
    assert _dir_cos(trained["topk"][60].W_dec, long.W_dec).min() < 0.99


def test_frozen_encoder_keeps_its_random_projection(trained):
    short, long = trained["frozen-encoder"][5], trained["frozen-encoder"][60]
    assert _dir_cos(short.W_enc, long.W_enc, dim=0).min() > 1 - 1e-5
    assert _dir_cos(short.W_dec, long.W_dec).min() < 0.99
    assert long.training_record["encoder_cos_to_init_mean"] > 1 - 1e-5


def test_soft_frozen_decoder_stays_in_its_cone_and_moves(trained):
    rec = trained["soft-frozen-decoder"][60].training_record
    assert rec["decoder_cos_to_init_min"] >= 0.8 - 1e-5
    assert rec["decoder_cos_to_init_mean"] < 0.999  # it did train
    # measured on the saved SAE too (the inference weights keep the directions)
    start = trained["frozen-decoder"][5].W_dec  # the shared random init (same seed)
    assert _dir_cos(trained["soft-frozen-decoder"][60].W_dec, start).min() >= 0.8 - 1e-4
