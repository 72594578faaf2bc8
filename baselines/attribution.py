"""``attribution``: attribution patching over SAE latents (or attention heads), ranked by absolute effect.

Attribution patching (Nanda 2023, "Attribution patching: activation patching at industrial scale"; Syed
et al. 2023; REFERENCE.md section 3) estimates the effect of patching a node from its clean to its
counterfactual value by the first-order term

    effect(node) ~ (a_counterfactual - a_clean) . d metric / d a  (gradient at the clean run),

for every node at once from 2 forward passes (clean with gradient, counterfactual) and 1 backward pass
per batch. The metric and the clean / counterfactual inputs come from the task (:class:`api.Behaviour`;
on IOI the logit difference, with the ABC prompts as counterfactual).

Nodes (``-M target=``):

- ``latents`` (default): the latents of the subject's SAE at the task's hook, plus the SAE error term,
  as in Sparse Feature Circuits (Marks et al. 2024, saprmarks/feature-circuits). The activation is
  ``x = sum_i f_i d_i + b_dec + err`` with ``d_i`` the effective decoder row (``sae.decode`` is affine
  in the latents), so ``d metric / d f_i = d_i . d metric / d x``. Effects are summed over the task's
  positions (``Behaviour.positions``; IOI: END and S2) and averaged over prompts, in units of the metric.
- ``heads``: every attention head's output ``hook_z`` (``blocks.L.attn.hook_z``, one node per layer and
  head), summed over all token positions (head-level attribution patching, as in Kramar et al. 2024).

``-M variant=ig steps=N`` replaces the gradient at the clean run by its average over ``N`` points
``alpha = (j + 1/2) / N`` on the straight line from the clean to the counterfactual activation
(integrated gradients, Sundararajan et al. 2017, as used by Sparse Feature Circuits (per submodule, 10
steps) and EAP-IG (Hanna et al. 2024, 5 to 30 steps)); for heads each layer is interpolated on its own.
Its sum over all nodes of a layer tends to the exact effect of patching the whole layer (completeness).

**Agreement** is scored by the task, for every method that returns scores (IOI: ``agreement_spearman`` and
``agreement_top10_recall`` against exact patching of the returned features on the test prompts). With
``-M agreement=true`` (off by default) the method also records its own study on the train prompts: the
Spearman rank correlation of
``|attribution|`` with ``|exact patching effect|`` (:mod:`baselines.exact`, one node at a time) and the
top-10 / top-50 recall of the exact top-k, on a common sample of nodes: for latents, every latent whose
activation differs between the clean and counterfactual run at some task position of the prompts used
(a latent that does not differ has exact effect 0 and attribution 0, and would only inflate the
agreement), at most ``agreement_sample`` of them drawn with the seed; for heads, every head. The exact
patching passes are counted apart from attribution's own cost (``meta["cost"]`` vs
``meta["agreement"]["reference_cost"]``); the result's ``forward_passes`` holds both.

Result: the ``n`` nodes of largest ``|effect|``, scored by ``|effect|`` (the faithfulness curve's
order), the ``k`` best forming the chosen set. For latents, the directions are decoder rows; for heads
(which are not directions at the task's hook), each head's mean output difference ``(z_clean - z_cf)
W_O`` at the task positions, and ``meta["heads"]`` lists the chosen heads ``[layer, head]`` (scored
against the known IOI circuit of a model whose card names one: GPT-2 small, Wang et al. 2022).

Supervision ``objective``: it needs the behaviour metric's gradient, not labels, and calls no objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from deeprobe_bench.api import DiscoveryContext, FeatureSet
from deeprobe_bench.baselines.exact import PatchingMethod


@dataclass
class AttributionConfig:
    """Options of ``attribution``.

    Attributes:
        target: ``latents`` (SAE latents at the task hook, plus the error term) or ``heads`` (hook_z).
        variant: ``atp`` (gradient at the clean run) or ``ig`` (integrated gradients).
        steps: interpolation points of ``ig`` (Sparse Feature Circuits: 10; EAP-IG: 5 to 30).
        n: nodes returned (ranked by |effect|).
        k: the chosen set: the ``k`` nodes of largest |effect|.
        agreement: also run exact patching on the common sample of the train prompts and record Spearman /
            top-k recall and completeness in ``meta["agreement"]`` (the task scores agreement either way).
        agreement_sample: at most this many latents in the common sample (drawn with the seed); 0 = all.
    """

    target: Literal["latents", "heads"] = "latents"
    variant: Literal["atp", "ig"] = "atp"
    steps: int = 10
    n: int = 50
    k: int = 10
    agreement: bool = False
    agreement_sample: int = 2048

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n < 1 or self.k < 1:
            raise ValueError("steps, n and k must be >= 1")
        if self.agreement_sample < 0:
            raise ValueError("agreement_sample must be >= 0")


class Attribution(PatchingMethod):
    """Attribution patching (Nanda 2023; Syed et al. 2023): every node's first-order patching effect from
    one clean pass with gradient, one counterfactual pass and one backward pass per batch.

    Returns the nodes (SAE latents and the error term, or attention heads) ordered by absolute effect:
    directions ``Float[Tensor, "n d_model"]`` (decoder rows), scores = the signed effects in the task
    metric's units (IOI: logit difference). Needs the task's :class:`~deeprobe_bench.api.Behaviour`.
    """

    name = "attribution"
    description = (
        "attribution patching (or IG) over SAE latents + error term, or attention heads, ranked by absolute effect"
    )
    Config = AttributionConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.baselines._patching import (
            check_target,
            effects_result,
            full_patch_effect,
            run_attribution,
            run_exact,
        )
        from deeprobe_bench.metrics.ranking import agreement

        cfg = self.config
        nodes = run_attribution(ctx, self.name, cfg.target, cfg.variant, cfg.steps)
        sae = check_target(ctx, self.name, cfg.target)
        meta: dict[str, Any] = {"variant": cfg.variant, "steps": cfg.steps if cfg.variant == "ig" else None,
                                "behaviour": ctx.behaviour.name, "n_prompts": len(ctx.behaviour)}  # fmt: skip
        if cfg.agreement:
            sample = torch.nonzero(nodes.active).flatten()
            what = ("latents whose activation differs between clean and counterfactual at a task position"
                    if cfg.target == "latents" else "every head")  # fmt: skip
            if cfg.target == "latents" and cfg.agreement_sample and len(sample) > cfg.agreement_sample:
                gen = torch.Generator().manual_seed(ctx.seed)
                sample = sample[torch.randperm(len(sample), generator=gen)[: cfg.agreement_sample]].sort().values
                what += f", {cfg.agreement_sample} drawn with the seed"
            if cfg.target == "heads":
                sample = torch.arange(len(nodes.effects))
            ref = run_exact(ctx, self.name, cfg.target, sample.tolist(), patch_batch=8)
            a, r = nodes.effects[sample], ref.effects[sample]
            agree = agreement(a, r)
            agree.update(
                sample=what,
                reference="exact activation patching, one node at a time (baselines/exact.py)",
                reference_cost=ref.cost.to_dict(),
                speedup=(ref.cost.wall_s / nodes.cost.wall_s) if nodes.cost.wall_s > 0 else None,
            )
            if cfg.target == "latents":
                # Completeness: the attributions of all latents and the error term against the exact effect
                # of patching the whole activation at the task positions (IG tends to equality).
                full, full_cost = full_patch_effect(ctx.subject.model, ctx.hook_name, ctx.behaviour)
                agree.update(error_effect_exact=ref.error_effect, full_patch_exact=full,
                             sum_of_attributions=float(nodes.effects.double().sum()) + nodes.error_effect,
                             full_patch_cost=full_cost.to_dict())  # fmt: skip
            meta["agreement"] = agree
        return effects_result(ctx, self.name, nodes, cfg.n, cfg.k, sae, meta)
