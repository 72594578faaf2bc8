"""Attribution vs exact patching on a toy model whose answer is known by construction.

A one-layer attention-only HookedTransformer without layer norms: its logits are a linear function of
``blocks.0.hook_resid_post``. The behaviour metric is ``logit[END, A] - logit[END, B]`` with
``W_U[:, A] - W_U[:, B] = 3 e_0``, so it reads the activation along ``e_0`` only, and the SAE's latent
``J`` is the only one whose decoder row has an ``e_0`` component. So the metric is a linear readout of
latent J (plus the SAE error term): attribution patching is exact (the metric is linear in the patched
activation), both methods give the same effect to every latent and rank J first.
"""

import pytest
import torch
from helpers import ProgressBar

from deeprobe_bench.api import Behaviour, Budget, DiscoveryContext
from deeprobe_bench.baselines._patching import latent_attribution, latent_patching
from deeprobe_bench.baselines.attribution import Attribution, AttributionConfig
from deeprobe_bench.baselines.exact import ExactConfig, ExactPatching
from deeprobe_bench.baselines.sae import latent_features
from deeprobe_bench.hooks import resume_layer
from deeprobe_bench.metrics.ranking import feature_patching

D, D_SAE, VOCAB, POS, J, A, B = 8, 16, 12, 6, 5, 3, 7
HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def toy():
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import Subject, quiet_hooked_transformer

    gen = torch.Generator().manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=1, d_model=D, n_heads=2, d_head=4, n_ctx=POS, d_vocab=VOCAB,
                                  attn_only=True, normalization_type=None, seed=0)  # fmt: skip
    model = quiet_hooked_transformer(cfg)
    model.eval()
    with torch.no_grad():
        w_u = torch.randn(D, VOCAB, generator=gen)
        w_u[:, A] = w_u[:, B] + 3 * torch.eye(D)[0]
        model.unembed.W_U.copy_(w_u)
        sae = StandardSAE(StandardSAEConfig(d_in=D, d_sae=D_SAE))
        w_dec = torch.randn(D_SAE, D, generator=gen)
        w_dec[:, 0] = 0.0
        w_dec[J] = torch.eye(D)[0]
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(torch.randn(D, D_SAE, generator=gen))
        sae.W_enc[:, J] = 2 * torch.eye(D)[0]
        sae.b_enc.copy_(torch.full((D_SAE,), 0.5))
        sae.b_dec.copy_(0.1 * torch.randn(D, generator=gen))
    sae.eval()
    clean = torch.randint(0, VOCAB, (10, POS), generator=gen)
    cf = torch.randint(0, VOCAB, (10, POS), generator=gen)
    end = torch.full((10,), POS - 1)

    def metric(logits, rows):
        at_end = logits[torch.arange(len(rows)), end[rows]]
        return at_end[:, A] - at_end[:, B]

    # Attribute at two positions (summed), in batches of 4 (3 batches, the last one short).
    positions = torch.stack([end - 2, end], dim=1)
    behaviour = Behaviour(clean, cf, positions, metric, name="toy readout", batch_size=4)
    subject = Subject("toy-linear", model, {HOOK: sae})
    return subject, sae, behaviour


def test_the_hook_is_not_resumable_so_the_hooked_forward_path_is_used():
    assert resume_layer(HOOK, 1) is None and resume_layer("blocks.0.hook_resid_post", 3) == 1
    assert resume_layer("blocks.2.hook_resid_pre", 3) == 2 and resume_layer("blocks.0.attn.hook_z", 3) is None


def test_attribution_equals_exact_patching_on_a_linear_readout_and_both_rank_the_latent_first(toy):
    subject, sae, behaviour = toy
    before = subject.forward_passes
    atp = latent_attribution(subject.model, sae, HOOK, behaviour)
    assert subject.forward_passes - before == atp.cost.forward_passes  # the result's counter sees every pass
    ig = latent_attribution(subject.model, sae, HOOK, behaviour, steps=3)
    ex = latent_patching(subject.model, sae, HOOK, behaviour)
    assert ex.effects[J] != 0 and ex.active[J]
    torch.testing.assert_close(atp.effects, ex.effects, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ig.effects, ex.effects, atol=1e-5, rtol=1e-5)
    assert atp.error_effect == pytest.approx(ex.error_effect, abs=1e-5)
    assert int(atp.effects.abs().argmax()) == int(ex.effects.abs().argmax()) == J
    others = torch.cat([ex.effects[:J], ex.effects[J + 1 :]])
    assert others.abs().max() < 1e-5  # no other latent's decoder row has an e_0 component
    # the costs the method promises: 2 forward + 1 backward per batch (3 batches of 4, 4, 2 prompts)
    assert (atp.cost.forward_passes, atp.cost.backward_passes) == (6, 3)


def test_the_methods_return_the_latent_first_and_record_agreement(toy):
    subject, sae, behaviour = toy

    def ctx():
        return DiscoveryContext(subject, HOOK, torch.zeros(4, D), sae, 0, "objective", Budget(None),
                                lambda it=None, **kw: it, behaviour=behaviour)  # fmt: skip

    fs = Attribution(AttributionConfig(n=5, k=2, agreement=True)).discover(ctx())
    assert fs.meta["latents"][0] == J and len(fs) == 5 and fs.selected == 2
    assert fs.ranking()[0] == 0 and float(fs.scores[0]) == pytest.approx(abs(fs.meta["effects"][0]))
    agree = fs.meta["agreement"]
    # the common sample is every latent that differs between the runs (the others are 0 in both)
    assert agree["n"] == int(latent_patching(subject.model, sae, HOOK, behaviour).active.sum())
    # completeness holds exactly for a linear readout: latents + error term = patching the whole activation
    assert agree["sum_of_attributions"] == pytest.approx(agree["full_patch_exact"], abs=1e-4)
    ex = ExactPatching(ExactConfig(n=5, k=2)).discover(ctx())
    assert ex.meta["latents"][0] == J
    torch.testing.assert_close(fs.directions[0], sae.W_dec.detach()[J])


def test_exact_patching_of_inactive_latents_is_zero_whether_run_or_skipped(toy):
    subject, sae, behaviour = toy
    skipped = latent_patching(subject.model, sae, HOOK, behaviour, skip_inactive=True)
    run_all = latent_patching(subject.model, sae, HOOK, behaviour, skip_inactive=False)
    torch.testing.assert_close(skipped.effects, run_all.effects, atol=1e-6, rtol=0)
    assert run_all.cost.forward_passes > skipped.cost.forward_passes or bool(skipped.active.all())


def test_methods_without_a_behaviour_raise_a_user_error(toy):
    from deeprobe_bench.api import UserError

    subject, sae, _ = toy
    ctx = DiscoveryContext(subject, HOOK, torch.zeros(4, D), sae, 0, "objective", Budget(None), lambda it=None, **kw: it)
    for method in (Attribution(), ExactPatching()):
        with pytest.raises(UserError, match="behaviour"):
            method.discover(ctx)


def test_mcts_with_the_attribution_prior_puts_the_read_out_latent_first_in_pool_and_prior(toy):
    from deeprobe_bench.baselines.mcts import MCTS, MCTSConfig

    subject, sae, behaviour = toy
    budget = Budget(30)

    def objective(fs):  # the planted answer: the set {J}
        budget.charge()
        s = set(fs.meta["latents"])
        return float(J in s) - 0.05 * len(s)

    ctx = DiscoveryContext(subject, HOOK, torch.randn(16, D, generator=torch.Generator().manual_seed(1)), sae, 0,
                           "objective", budget, lambda it=None, **kw: ProgressBar(it), objective=objective,
                           behaviour=behaviour)  # fmt: skip
    before = subject.forward_passes
    fs = MCTS(MCTSConfig(budget=30, pool=6, prior="attribution")).discover(ctx)
    meta = fs.meta
    assert meta["pool"][0] == J and meta["policy"] == "puct" and meta["prior"] == "attribution"
    assert meta["attribution_cost"] == {**meta["attribution_cost"], "forward_passes": 6, "backward_passes": 3}
    assert subject.forward_passes - before == 6  # the prior's passes; the toy objective runs no model
    assert meta["prior_max"] > 1 / 6 > meta["prior_min"]  # J's |attribution| dominates the softmax
    assert fs.meta["latents"][: fs.selected] == [J]
    assert budget.objective_calls <= 30




def test_batched_patches_give_the_effects_of_one_latent_a_pass_in_fewer_passes(toy):
    subject, sae, behaviour = toy
    one = latent_patching(subject.model, sae, HOOK, behaviour, skip_inactive=False, patch_batch=1)
    five = latent_patching(subject.model, sae, HOOK, behaviour, skip_inactive=False, patch_batch=5)
    torch.testing.assert_close(five.effects, one.effects, atol=1e-6, rtol=1e-6)
    assert five.error_effect == pytest.approx(one.error_effect, abs=1e-6)
    # per batch of prompts (3 batches): 3 + 1 (error term) passes plus one per latent, or per 5 latents
    assert one.cost.forward_passes == 3 * (4 + D_SAE)
    assert five.cost.forward_passes == 3 * (4 + -(-D_SAE // 5))
    assert five.cost.sequences == one.cost.sequences == len(behaviour) * (4 + D_SAE)


def test_exact_on_an_attribution_pool_patches_only_the_pool_and_finds_the_read_out_latent(toy):
    subject, sae, behaviour = toy

    def ctx():
        return DiscoveryContext(subject, HOOK, torch.zeros(4, D), sae, 0, "objective", Budget(None),
                                lambda it=None, **kw: it, behaviour=behaviour)  # fmt: skip

    full = ExactPatching(ExactConfig(n=5, k=1, pool=0, patch_batch=4)).discover(ctx())
    pooled = ExactPatching(ExactConfig(n=5, k=1, pool=3, patch_batch=4)).discover(ctx())
    assert "pool_cost" not in full.meta and pooled.meta["pool"] == 3
    assert pooled.meta["latents"][0] == full.meta["latents"][0] == J
    assert pooled.meta["effects"][0] == pytest.approx(full.meta["effects"][0], abs=1e-6)
    # the pool's attribution: 2 forward + 1 backward per batch; patching: 3 batches x (4 + ceil(3 / 4)) passes
    assert pooled.meta["pool_cost"]["forward_passes"] == 6 and pooled.meta["pool_cost"]["backward_passes"] == 3
    assert pooled.meta["cost"]["forward_passes"] <= 3 * 5 < full.meta["cost"]["forward_passes"]
    assert pooled.meta["nodes_patched"] <= 3
    assert sum(e != 0 for e in pooled.meta["effects"]) <= 3  # latents outside the pool are not patched


def test_greedy_over_an_attribution_pool_finds_the_read_out_latent(toy):
    from deeprobe_bench.baselines.greedy import Greedy, GreedyConfig

    subject, sae, behaviour = toy
    budget = Budget(20)

    def objective(fs):  # the planted answer: the set {J}
        budget.charge()
        s = set(fs.meta["latents"])
        return float(J in s) - 0.05 * len(s)

    x = torch.randn(16, D, generator=torch.Generator().manual_seed(1))
    x[:, 0] = -10.0  # J (reads e_0 with weight 2, bias 0.5) never fires on these rows: last by frequency
    ctx = DiscoveryContext(subject, HOOK, x, sae, 0, "objective", budget, lambda it=None, **kw: ProgressBar(it),
                           objective=objective, behaviour=behaviour)  # fmt: skip
    by_freq = Greedy(GreedyConfig(budget=20, pool=3)).discover(ctx)
    assert J not in by_freq.meta["pool"]  # the frequency pool misses it
    budget.objective_calls = 0
    fs = Greedy(GreedyConfig(budget=20, pool=3, pool_by="attribution")).discover(ctx)
    assert fs.meta["pool"][0] == J and fs.meta["pool_by"] == "attribution"
    assert fs.meta["latents"][: fs.selected] == [J]
    assert fs.meta["pool_cost"]["forward_passes"] == 6 and fs.meta["pool_cost"]["backward_passes"] == 3


def test_decoder_directions_take_the_decoder_rows_only_when_decode_is_them(toy):
    """A plain SAE's directions are its W_dec rows (the fast path); an SAE whose decode rescales each
    latent (as TopK with rescale_acts_by_decoder_norm does) gets decode(e_i) - decode(0)."""
    from deeprobe_bench.baselines.sae import decoder_directions

    _, sae, _ = toy
    torch.testing.assert_close(decoder_directions(sae), sae.W_dec.detach().float())
    scale = torch.linspace(0.5, 2.0, D_SAE)

    class Rescaled:
        cfg = sae.cfg
        W_dec = sae.W_dec

        @staticmethod
        def decode(f):
            return sae.decode(f * scale)

    dirs = decoder_directions(Rescaled)
    torch.testing.assert_close(dirs, sae.W_dec.detach().float() * scale[:, None], rtol=1e-5, atol=1e-5)


def test_the_evaluators_feature_patching_equals_exact_latent_patching(toy):
    """The agreement reference a task computes for any feature set (patch a feature along its direction by
    its encoder's change) is exact latent patching when the features are SAE latents."""
    subject, sae, behaviour = toy
    latents = [J, 0, 3, 11]
    fs = latent_features(sae, HOOK, latents)
    ex = latent_patching(subject.model, sae, HOOK, behaviour, latents=latents, skip_inactive=False)
    torch.testing.assert_close(feature_patching(subject.model, HOOK, behaviour, fs, patch_batch=3),
                               ex.effects[latents], atol=1e-5, rtol=1e-5)  # fmt: skip
    # a direction the readout ignores (no e_0 component) has no effect, whatever its encoder does
    off = torch.eye(D)[1:2]
    fs2 = type(fs)(HOOK, off, encoder=lambda x: x[..., 1:2] * 5)
    assert float(feature_patching(subject.model, HOOK, behaviour, fs2).abs().max()) < 1e-5


def test_patching_from_the_first_patched_position_gives_the_whole_pass_s_effects():
    """A behaviour that reads only the last token (``last_token_metric``) is patched on the suffix from the first
    patched position (a SuffixRun): the same effects and pass counts as whole passes from the hook."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.baselines._patching import full_patch_effect

    gen = torch.Generator().manual_seed(1)
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, n_heads=2, d_head=4, n_ctx=POS, d_vocab=VOCAB, d_mlp=16,
                                  act_fn="gelu", seed=1)  # fmt: skip
    from deeprobe_bench.subject import quiet_hooked_transformer

    model = quiet_hooked_transformer(cfg).eval()
    sae = StandardSAE(StandardSAEConfig(d_in=D, d_sae=D_SAE))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(D_SAE, D, generator=gen))
        sae.W_enc.copy_(torch.randn(D, D_SAE, generator=gen))
    sae.eval()
    lengths = torch.tensor([6, 5, 6, 4, 6, 5, 4, 6, 6, 5])
    clean = torch.randint(0, VOCAB, (10, POS), generator=gen)
    cf = torch.randint(0, VOCAB, (10, POS), generator=gen)
    end = lengths - 1

    def metric(logits, rows):
        return last(logits[torch.arange(len(rows)), end[rows]], rows)

    def last(at_end, rows):
        return at_end[:, A] - at_end[:, B]

    positions = torch.stack([end - 2, end], dim=1)
    whole = Behaviour(clean, cf, positions, metric, batch_size=4)
    suffix = Behaviour(clean, cf, positions, metric, batch_size=4, last_token_metric=last, lengths=lengths)
    a = latent_patching(model, sae, "blocks.0.hook_resid_post", whole, skip_inactive=False, patch_batch=3)
    b = latent_patching(model, sae, "blocks.0.hook_resid_post", suffix, skip_inactive=False, patch_batch=3)
    assert float(a.effects.abs().max()) > 1e-3  # the patches move the metric
    torch.testing.assert_close(b.effects, a.effects, atol=1e-5, rtol=1e-4)
    assert b.error_effect == pytest.approx(a.error_effect, abs=1e-5) and b.m_clean == pytest.approx(a.m_clean, abs=1e-5)
    assert b.cost.forward_passes == a.cost.forward_passes
    assert full_patch_effect(model, "blocks.0.hook_resid_post", suffix)[0] == pytest.approx(
        full_patch_effect(model, "blocks.0.hook_resid_post", whole)[0], abs=1e-5)
    fs = latent_features(sae, "blocks.0.hook_resid_post", list(range(D_SAE)))
    torch.testing.assert_close(feature_patching(model, "blocks.0.hook_resid_post", suffix, fs),
                               feature_patching(model, "blocks.0.hook_resid_post", whole, fs), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="needs lengths"):
        Behaviour(clean, cf, positions, metric, last_token_metric=last)
