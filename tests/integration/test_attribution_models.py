"""Attribution and exact patching on real models: the shipped ioi-mini (latents) and the tiny GPT-2 of
test_pretrained.py loaded through the real ``gpt2-small`` path (heads).

Known by construction: integrated gradients are *complete* (Sundararajan et al. 2017): the IG
attributions of every node of one layer sum to the exact effect of patching that whole layer, up to the
quadrature error of the interpolation, whatever the model.
"""

import json

import pytest
import torch
from test_pretrained import _make_cache, offline_hub  # noqa: F401  (offline_hub is a fixture)

from deeprobe_bench import cli
from deeprobe_bench.api import Behaviour, Budget, DiscoveryContext, parse_config
from deeprobe_bench.baselines._patching import head_attribution, head_patching
from deeprobe_bench.baselines.attribution import Attribution, AttributionConfig
from deeprobe_bench.tasks.ioi import IOITask
from deeprobe_bench.tasks.ioi import metrics as ioi_metrics
from deeprobe_bench.tasks.ioi.zoo import IOI_MINI

SMALL = {"n_train": "64", "n_val": "64", "n_test": "32", "objective_batch": "16"}


def _ctx(subject, hook, behaviour, sae=None):
    return DiscoveryContext(subject, hook, torch.zeros(2, subject.model.cfg.d_model), sae, 0, "objective",
                            Budget(None), lambda it=None, **kw: it, behaviour=behaviour)  # fmt: skip


@pytest.fixture(scope="module")
def ioi_mini(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
    subject = IOI_MINI.load()
    task = IOITask(parse_config(IOITask.Config, SMALL))
    return subject, task, task.prepare(subject, seed=0)


def test_ioi_gives_its_behaviour_on_the_objective_prompts(ioi_mini):
    subject, _, data = ioi_mini
    b = data.behaviour
    split = data.extra["objective_split"]
    assert len(b) == 16 and torch.equal(b.clean, split.tokens) and torch.equal(b.positions, split.site)
    # the metric on the clean logits is the task's own logit difference
    with torch.no_grad():
        ld = b.metric(subject.model(b.clean), torch.arange(len(b)))
    torch.testing.assert_close(ld, ioi_metrics.logit_diffs(subject, split, data.hook_name, None), atol=1e-4, rtol=1e-4)
    # the counterfactual is the ABC prompt: same length, the same template, other names
    assert b.counterfactual.shape == b.clean.shape and not torch.equal(b.counterfactual, b.clean)


def test_ig_over_latents_is_complete_on_ioi_mini(ioi_mini):
    subject, _, data = ioi_mini
    sae = subject.sae_for(data.hook_name)
    fs = Attribution(AttributionConfig(variant="ig", steps=10, agreement=True)).discover(_ctx(subject, data.hook_name, data.behaviour, sae))
    agree = fs.meta["agreement"]
    full = agree["full_patch_exact"]
    assert abs(full) > 1.0  # patching the hook to the ABC prompts destroys the behaviour
    assert agree["sum_of_attributions"] == pytest.approx(full, rel=0.02)
    assert fs.meta["cost"]["backward_passes"] == 10 and 0 < agree["n"] <= sae.cfg.d_sae
    assert -1 <= agree["spearman"] <= 1 and 0 <= agree["recall@10"] <= 1


def test_the_task_scores_ranking_agreement_for_every_method_with_scores(tmp_path):
    """IOI computes agreement with exact patching on its test prompts for any set with scores (attribution's
    |effect|, the SAE baseline's activation frequency); a set without scores has no ranking to compare."""
    out = tmp_path / "results"
    argv = ["-q", "run", "--task", "ioi", "--method", "attribution,sae,random", "--limit", "16",
            "-T", "objective_batch=8", "-T", "agreement_features=12", "--results-dir", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    results = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in out.rglob("*.json")}
    for name in ("attribution", "sae"):
        r = results[name]
        assert r["status"] == "ok"
        agree = r["details"]["agreement"]
        assert agree["n"] == 12 and len(agree["exact_effects"]) == 12 and agree["finite"]
        assert -1 <= r["metrics"]["agreement_spearman"]["value"] <= 1
        assert 0 <= r["metrics"]["agreement_top10_recall"]["value"] <= 1
    assert "agreement_spearman" not in results["random"]["metrics"]
    r = results["attribution"]
    assert r["supervision"] == "objective" and r["objective_calls"] == 0
    assert r["details"]["faithfulness_curve"]["f"][-1] == 1.0  # the 100% endpoint keeps the whole stream
    meta = r["details"]["features"]["meta"]
    assert meta["cost"]["forward_passes"] == 2 and meta["cost"]["backward_passes"] == 1  # one batch
    assert "agreement" not in meta  # the method's own study is opt-in (-M agreement=true)
    # attribution ranks by an estimate of the very effect the reference measures
    assert r["metrics"]["agreement_spearman"]["value"] > 0.2


def test_head_attribution_on_the_gpt2_small_path_offline(tmp_path, offline_hub):  # noqa: F811
    from deeprobe_bench.subject import GPT2_SMALL

    offline_hub(_make_cache(tmp_path))
    subject = GPT2_SMALL.load()
    model = subject.model
    # Byte-level tokens: four-letter names keep the IOI and ABC prompts position-aligned.
    prompts = ["When Mary and John went to the store, John gave a drink to",
               "When Lisa and Paul went to the park, Paul gave a ring to"]  # fmt: skip
    abc = ["When Kate and Anna went to the store, Mark gave a drink to",
           "When Ruth and Carl went to the park, Jack gave a ring to"]  # fmt: skip
    clean, lengths = subject.to_tokens(prompts)
    cf, cf_lengths = subject.to_tokens(abc)
    assert torch.equal(lengths, cf_lengths)
    end = lengths - 1
    io = torch.tensor([subject.tokenizer.convert_tokens_to_ids(p.split()[1][0]) for p in prompts])
    s = torch.tensor([subject.tokenizer.convert_tokens_to_ids(p.split()[3][0]) for p in prompts])

    def metric(logits, rows):
        at_end = logits[torch.arange(len(rows)), end[rows]]
        return at_end.gather(1, io[rows, None]).squeeze(1) - at_end.gather(1, s[rows, None]).squeeze(1)

    behaviour = Behaviour(clean, cf, end.unsqueeze(1), metric, name="logit difference (bytes)")
    fs = Attribution(AttributionConfig(target="heads", k=5, agreement=True)).discover(_ctx(subject, "blocks.6.hook_resid_pre", behaviour))
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    assert len(fs) == n_heads and len(fs.meta["heads"]) == 5 and fs.meta["agreement"]["n"] == n_heads
    assert all(0 <= la < model.cfg.n_layers and 0 <= h < model.cfg.n_heads for la, h in fs.meta["ranked_heads"])
    p, r = ioi_metrics.head_precision_recall(fs.meta["heads"])
    assert 0 <= p <= 1 and 0 <= r <= 1

    # IG completeness per layer: the heads of a layer sum to the exact effect of patching the whole layer.
    ig = head_attribution(model, behaviour, steps=8).effects.view(model.cfg.n_layers, model.cfg.n_heads)
    rows = torch.arange(len(behaviour))
    with torch.no_grad():
        m0 = metric(model(clean), rows)
        _, cache = model.run_with_cache(cf)
        for layer in (0, 4, 8):
            hook = f"blocks.{layer}.attn.hook_z"
            patched = model.run_with_hooks(clean, fwd_hooks=[(hook, lambda z, hook: cache[hook.name])])
            whole = float((metric(patched, rows) - m0).mean())
            assert float(ig[layer].sum()) == pytest.approx(whole, rel=0.02, abs=1e-4)
    # exact patching of one head (the agreement's reference): only that head's output is replaced
    ref = head_patching(model, behaviour, heads=[1]).effects
    assert bool((ref[torch.arange(len(ref)) != 1] == 0).all())

    def patch_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = cache[hook.name][:, :, 1]
        return z

    with torch.no_grad():
        one = model.run_with_hooks(clean, fwd_hooks=[("blocks.0.attn.hook_z", patch_head_1)])
    assert float(ref[1]) == pytest.approx(float((metric(one, rows) - m0).mean()), abs=1e-5)
