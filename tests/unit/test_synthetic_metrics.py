"""Feature-recovery metrics and world sampling of the ``synthetic`` task, on cases known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeprobe_bench.tasks.synthetic.metrics import correlations, mcc_activations, recovery


def test_recovery_of_the_planted_dictionary_up_to_order_sign_and_scale():
    gen = torch.Generator().manual_seed(0)
    planted = torch.randn(40, 16, generator=gen)
    planted = planted / planted.norm(dim=1, keepdim=True)
    perm = torch.randperm(40, generator=gen)
    found = planted[perm] * torch.where(torch.arange(40) % 2 == 0, 3.0, -0.5).unsqueeze(1)
    r = recovery(found, planted)
    assert r == pytest.approx({"recovery": 1.0, "recovered": 1.0, "precision": 1.0, "mcc_directions": 1.0}, abs=1e-5)


def test_recovery_of_orthogonal_directions_is_zero_and_counts_exact_matches():
    eye = torch.eye(8)
    planted, others = eye[:4], eye[4:]
    r = recovery(others, planted)
    assert (
        r["recovery"] == pytest.approx(0.0, abs=1e-6)
        and r["recovered"] == 0.0
        and r["precision"] == pytest.approx(0.0, abs=1e-6)
    )
    one = torch.cat([planted[:1], others])  # one exact match among orthogonal directions
    r = recovery(one, planted)
    assert r["recovered"] == pytest.approx(0.25) and r["recovery"] == pytest.approx(0.25, abs=1e-6)
    assert r["precision"] == pytest.approx(1 / 5, abs=1e-6)
    # 0.9 is the threshold: a direction at cosine 0.89 does not count, 0.91 does
    for c, expect in ((0.89, 0.0), (0.91, 0.25)):
        d = c * planted[0] + (1 - c**2) ** 0.5 * others[0]
        assert recovery(d.unsqueeze(0), planted)["recovered"] == pytest.approx(expect)
    with pytest.raises(ValueError):
        recovery(torch.zeros(3, 5), planted)


def _sparse(dense):
    return dense.to_sparse_coo().coalesce()


def test_correlations_match_numpy():
    gen = torch.Generator().manual_seed(1)
    planted = (torch.rand(500, 6, generator=gen) < 0.2).float() * torch.rand(500, 6, generator=gen)
    found = torch.randn(500, 4, generator=gen) + planted[:, :4]
    got = correlations(found, _sparse(planted))
    want = np.corrcoef(np.concatenate([planted.numpy(), found.numpy()], axis=1).T)[:6, 6:]
    assert np.allclose(got.numpy(), want, atol=1e-5)


def test_mcc_of_matched_activations():
    gen = torch.Generator().manual_seed(2)
    planted = (torch.rand(400, 10, generator=gen) < 0.3).float() * (1 + torch.rand(400, 10, generator=gen))
    perm = torch.randperm(10, generator=gen)
    assert mcc_activations(planted[:, perm] * 2.5 + 1, _sparse(planted)) == pytest.approx(1.0, abs=1e-5)
    assert mcc_activations(torch.ones(400, 3), _sparse(planted)) == 0.0  # constant features correlate 0
    # a subset is matched one-to-one: 3 exact copies -> 1.0 over the min(n, F) = 3 pairs
    assert mcc_activations(planted[:, :3], _sparse(planted)) == pytest.approx(1.0, abs=1e-5)


def test_world_samples_are_seeded_and_sparse_labels_match():
    from sae_lens.synthetic import SyntheticModel

    from deeprobe_bench.tasks.synthetic import data, worlds
    from deeprobe_bench.tasks.synthetic.task import concept_columns

    world = SyntheticModel(worlds.world_config("synth-tiny"))
    state = torch.get_rng_state()
    a, b, c = data.sample(world, 700, 5), data.sample(world, 700, 5), data.sample(world, 700, 6)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert torch.equal(a.acts, b.acts) and not torch.equal(a.acts, c.acts)
    dense = a.dense_features()
    v = world.feature_dict.feature_vectors.detach()
    assert torch.allclose(dense @ v + world.feature_dict.bias.detach(), a.acts, atol=1e-4)  # x = a V + b
    cols = [0, 5, 77, 255]
    assert torch.equal(a.fires(cols), dense[:, cols] > 0)
    picked = concept_columns(world, 16, 0.02)
    assert picked == sorted(picked) and len(picked) == 16 and picked == concept_columns(world, 16, 0.02)
    p = world.activation_generator.firing_probabilities
    assert bool((p[picked] >= 0.02).all())
