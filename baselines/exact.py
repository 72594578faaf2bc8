"""``exact``: activation patching one node at a time, the reference attribution patching approximates.

For each node, the clean run is re-run with that node alone patched to its counterfactual value, and its
effect is the change of the behaviour metric, mean over prompts (Wang et al. 2022; Sparse Feature
Circuits, Marks et al. 2024; REFERENCE.md section 3: "exact patching is the reference"). The metric and
the clean / counterfactual inputs are the task's (:class:`api.Behaviour`; IOI: logit difference, ABC
prompts).

- ``-M target=latents`` (default): latent ``i`` of the SAE at the task hook is patched at the task's
  positions, ``x' = x_clean + (f_i(x_cf) - f_i(x_clean)) d_i`` with ``d_i`` its effective decoder row;
  every other latent and the SAE error term keep their clean values. The error term is patched the same
  way as one more node (``meta["error_effect"]``). The forward passes start at the hook when it is a
  residual hook (``start_at_layer``), and for a behaviour that reads only the last token (IOI's logit
  difference at END) they push only the positions from the first patched one on (S2), against the clean
  keys and values of the tokens before it (:class:`deeprobe_bench.metrics.ranking.PatchedBatch`). A latent whose activation is the same in both runs at every task
  position has effect exactly 0 and is not run (``-M skip_inactive=false`` runs it anyway).
  *Candidate pool* (``-M pool=P``, default 512): only the ``P`` latents of largest |attribution patching|
  effect (:func:`baselines._patching.attribution_pool`) are patched, the others get effect 0; ``-M
  pool=0`` (or a pool at least the SAE's size, as on every zoo SAE of 512 latents) patches every latent
  and runs no attribution. *Batched patches* (``-M patch_batch=B``, default 8): ``B`` latents are patched
  side by side in one forward pass over ``B x`` the prompt batch, the same effects as one latent a pass.
- ``-M target=heads``: head ``(L, h)``'s ``hook_z`` is patched at every position; one forward pass per
  head and batch.

Cost, with ``n`` prompts in batches of ``b`` (the task's ``Behaviour.batch_size``; IOI: its 128
objective prompts, one batch), ``P`` latents patched (the pool, or every latent; with ``skip_inactive``
only those whose activation differs in that batch) and ``B = patch_batch``:

- pool choice (when ``0 < P < d_sae``): ``2 ceil(n / b)`` forward + ``ceil(n / b)`` backward passes;
- patching: ``ceil(n / b) (4 + ceil(P / B))`` forward passes, ``n (4 + P)`` sequences through them
  (each from the hook on); no backward pass, no objective call. ``target=heads``: ``ceil(n / b) (2 +
  n_layers n_heads)`` forward passes.

Result: the ``n`` nodes of largest ``|effect|`` scored by ``|effect|``, the ``k`` best chosen (as
``attribution``). Supervision ``objective``: it needs the task's behaviour metric, not labels, and calls no
objective; its forward passes are in the result's ``forward_passes``, ``meta["cost"]`` (patching) and
``meta["pool_cost"]`` (the attribution that chose the pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method


class PatchingMethod(Method):
    """Base of the methods that rank nodes by their patching effect on the task's behaviour metric
    (``attribution``, ``exact``; here because this module is light to import): both need the task's
    :class:`api.Behaviour` (clean and counterfactual prompts, the metric), so the objective supervises
    them, and both take ``-M target=latents|heads``."""

    supervision = "objective"
    needs = ("behaviour",)


@dataclass
class ExactConfig:
    """Options of ``exact``.

    Attributes:
        target: ``latents`` (SAE latents at the task hook) or ``heads`` (hook_z).
        n: nodes returned (ranked by |effect|).
        k: the chosen set: the ``k`` nodes of largest |effect|.
        skip_inactive: skip latents that do not differ between the runs (their effect is exactly 0).
        pool: latents patched: the ``pool`` of largest |attribution patching| effect (chosen by
            :func:`baselines._patching.attribution_pool`); 0, or a pool at least the SAE's size,
            patches every latent (the reference) and runs no attribution.
        patch_batch: latents patched side by side in one forward pass (memory grows with it: the
            pass holds ``patch_batch x`` the task's prompt batch).
    """

    target: Literal["latents", "heads"] = "latents"
    n: int = 50
    k: int = 10
    skip_inactive: bool = True
    pool: int = 512
    patch_batch: int = 8

    def __post_init__(self) -> None:
        if self.n < 1 or self.k < 1:
            raise ValueError("n and k must be >= 1")
        if self.pool < 0 or self.patch_batch < 1:
            raise ValueError("pool must be >= 0 and patch_batch >= 1")


class ExactPatching(PatchingMethod):
    """Exact activation patching (Wang et al. 2022; Marks et al. 2024), one node at a time: the reference
    that attribution patching approximates, and the ranking agreement is measured against.

    Returns the pool's nodes ordered by absolute effect, scores = the mean change of the task metric when
    that node alone takes its counterfactual value (IOI: logit difference). Needs the task's behaviour.
    """

    name = "exact"
    description = (
        "exact activation patching, one SAE latent (or head) at a time, ranked by absolute effect (the reference)"
    )
    Config = ExactConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        from deeprobe_bench.baselines._patching import attribution_pool, check_target, effects_result, run_exact

        cfg = self.config
        sae = check_target(ctx, self.name, cfg.target)
        meta: dict = {}
        latents = None
        if cfg.target == "latents" and 0 < cfg.pool < sae.cfg.d_sae:
            latents, pool_nodes = attribution_pool(ctx, self.name, cfg.pool)
            meta.update(pool=cfg.pool, pool_by="attribution", pool_cost=pool_nodes.cost.to_dict())
        nodes = run_exact(ctx, self.name, cfg.target, latents, cfg.skip_inactive, cfg.patch_batch)
        candidates = len(nodes.effects) if latents is None else len(latents)
        active = int(nodes.active[latents].sum()) if latents is not None else int(nodes.active.sum())
        meta.update(behaviour=ctx.behaviour.name, n_prompts=len(ctx.behaviour),
                    nodes_patched=active if cfg.skip_inactive and cfg.target == "latents" else candidates)  # fmt: skip
        return effects_result(ctx, self.name, nodes, cfg.n, cfg.k, sae, meta)
