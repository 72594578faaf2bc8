"""SAE training: the p-annealing schedule and penalty, and each architecture on a planted dictionary."""

from types import SimpleNamespace

import pytest
import torch

from deeprobe_bench.zoo.sae import _lp, _panneal_classes, p_anneal_schedule, sae_quality, train_sae


def test_schedule_holds_p_start_then_steps_linearly_to_p_end():
    p = p_anneal_schedule(1000, anneal_start=500)
    assert set(p[:500]) == {1.0}
    changes = [i for i in range(1, 1000) if p[i] != p[i - 1]]
    assert len(changes) == 9  # 10 values, the first equal to p_start
    assert changes[0] == 555 and changes[-1] == 999  # linspace(500, 999, 10) rounded down
    values = sorted(set(p), reverse=True)
    assert values == pytest.approx([1 - 0.8 * i / 9 for i in range(10)], abs=1e-6)
    assert p[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        p_anneal_schedule(100, anneal_start=100)


def test_lp_has_finite_gradients_at_zero():
    w = torch.tensor([[0.0, 0.5, 2.0]], requires_grad=True)
    loss = _lp(w, 0.2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.5**0.2 + 2.0**0.2)
    assert torch.isfinite(w.grad).all() and float(w.grad[0, 0]) == 0.0


def test_panneal_penalty_is_continuous_across_a_change_of_p():
    cfg_cls, sae_cls = _panneal_classes()
    sae = sae_cls(cfg_cls(d_in=4, d_sae=8, l1_coefficient=1.0, total_steps=20, anneal_start=5,
                          n_sparsity_updates=3, sparsity_queue_length=4))  # fmt: skip
    feats = torch.rand(16, 8) * 3
    losses = []
    for step in range(20):
        inp = SimpleNamespace(n_training_steps=step, coefficients={"l1": 1.0})
        losses.append(float(sae.calculate_aux_loss(inp, feats, None, None)["lp_loss"].detach()))
    # p = 1 until step 12, 0.6 until 19, then 0.2; with the same batch every step the penalty never jumps
    assert [h[1] for h in sae.history] == pytest.approx([0.6, 0.2])
    assert losses == pytest.approx([losses[0]] * 20, rel=1e-5)
    assert sae.alpha_scale != pytest.approx(1.0)


@pytest.fixture(scope="module")
def planted():
    """Rows = sparse non-negative combinations of 24 unit directions in 12 dims, scaled and shifted."""
    gen = torch.Generator().manual_seed(0)
    d, m, n = 12, 24, 12000
    dictionary = torch.nn.functional.normalize(torch.randn(m, d, generator=gen), dim=1)
    codes = (torch.rand(n, m, generator=gen) < 0.08).float() * (0.5 + torch.rand(n, m, generator=gen))
    return dictionary, codes @ dictionary * 5.0 + 0.3


@pytest.mark.parametrize("arch", ["standard", "topk", "panneal"])
def test_each_architecture_recovers_a_planted_dictionary_and_round_trips(arch, planted, tmp_path):
    dictionary, x = planted
    sae = train_sae(x[:10000], "blocks.0.hook_resid_post", arch, 48, seed=0, steps=300, batch=256, lr=3e-3, k=3, l1=2.0)
    q = sae_quality(sae, x[10000:])
    found = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)
    assert float((dictionary @ found.T).max(1).values.mean()) > 0.85
    assert q["explained_variance"] > 0.7 and q["l0"] < 8
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    sae.save_model(tmp_path / arch)
    from sae_lens import SAE

    again = SAE.load_from_disk(tmp_path / arch)
    assert torch.allclose(again.encode(x[:50]), sae.encode(x[:50]), atol=1e-5)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown SAE architecture"):
        train_sae(torch.zeros(10, 2), "h", "gated", 4, 0, steps=1, batch=2)


def test_the_sae_stage_reuses_an_sae_of_the_same_rows_only(tmp_path, monkeypatch):
    """A rerun on the same rows loads the stored SAE; rows of other weights (same count) train a new one."""
    from deeprobe_bench.zoo import sae as kit

    spec = kit.SAESpec(d_sae=8, steps=5, batch=32, archs=("topk",), k=2)
    gen = torch.Generator().manual_seed(0)
    acts, ev = torch.randn(64, 4, generator=gen), torch.randn(16, 4, generator=gen)
    first, _ = kit.sae_stage(acts, ev, "blocks.0.hook_resid_post", spec, 0, tmp_path)
    trained = []
    real = kit.train_sae
    monkeypatch.setattr(kit, "train_sae", lambda *a, **k: trained.append(1) or real(*a, **k))
    again, _ = kit.sae_stage(acts.clone(), ev, "blocks.0.hook_resid_post", spec, 0, tmp_path)
    assert trained == []
    assert torch.equal(again["blocks.0.hook_resid_post@topk"].W_dec, first["blocks.0.hook_resid_post@topk"].W_dec)
    kit.sae_stage(acts * 1.5, ev, "blocks.0.hook_resid_post", spec, 0, tmp_path)
    assert trained == [1]
    assert len(list((tmp_path / "sae").iterdir())) == 2
