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
  residual hook (``start_at_layer``). A latent whose activation is the same in both runs at every task
  position has effect exactly 0 and is not run (``-M skip_inactive=false`` runs it anyway).
  *Candidate pool* (``-M pool=P``, default 512): only the ``P`` latents of largest |attribution patching|
  effect (:func:`baselines.attribution.attribution_pool`) are patched, the others get effect 0; ``-M
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

import time
from dataclasses import dataclass
from typing import Literal

from deeprobe_bench.api import Behaviour, DiscoveryContext, FeatureSet, Method
from deeprobe_bench.baselines.attribution import (
    Counter,
    NodeEffects,
    _site_latents,
    _z_hooks,
    add_at_positions,
    at_positions,
    batches,
    capture,
    check_target,
    decoder_directions,
    effects_result,
    forward_with,
    run_hooked,
)


def latent_patching(
    model, sae, hook_name: str, behaviour: Behaviour, latents: list[int] | None = None, skip_inactive: bool = True,
    progress=None, patch_batch: int = 1,
) -> NodeEffects:  # fmt: skip
    """Exact effect of patching each of ``latents`` (default: all) alone, and of the SAE error term.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        sae: a sae_lens SAE reading ``hook_name``.
        hook_name: the hook point of the latents.
        behaviour: metric, clean / counterfactual tokens, positions to patch at.
        latents: latent indices to patch; the others get effect 0 (NaN is not used, so that the vector
            can be compared as it is on any sample that includes the patched ones).
        skip_inactive: do not run latents whose activation is the same in both runs at every position of
            a batch (their effect there is exactly 0).
        progress: optional ``progress(iterable, desc=..., total=...)``.
        patch_batch: latents patched side by side in one forward pass (``patch_batch x`` the prompt
            batch as one batch); the same effects as one latent a pass, fewer and larger passes.

    Returns:
        :class:`NodeEffects` over all ``d_sae`` latents (``active`` marks the ones that differ). Cost per
        batch of prompts: 3 forward passes (clean and counterfactual activations, clean metric), one per
        ``patch_batch`` patched latents, one for the error term; no backward pass.
    """
    import torch

    t0 = time.perf_counter()
    cnt = Counter()
    dirs = decoder_directions(sae)
    d_sae = dirs.shape[0]
    todo = (
        torch.arange(d_sae) if latents is None else torch.tensor(sorted(set(int(i) for i in latents)), dtype=torch.long)
    )
    total = torch.zeros(d_sae, dtype=torch.float64)
    active = torch.zeros(d_sae, dtype=torch.bool)
    err_total, m_total = 0.0, 0.0
    rows_list = list(batches(behaviour))
    for rows in progress(rows_list, desc="exact", total=len(rows_list)) if progress else rows_list:
        clean, pos = behaviour.clean[rows], behaviour.positions[rows]
        acts = capture(model, clean, [hook_name], cnt)[hook_name]
        x_cf = capture(model, behaviour.counterfactual[rows], [hook_name], cnt)[hook_name]
        f_clean, e_clean = _site_latents(sae, acts, pos)
        f_cf, e_cf = _site_latents(sae, x_cf, pos)
        df = f_cf - f_clean  # b k d_sae
        differs = (df != 0).any(dim=1).any(dim=0)
        active |= differs
        with torch.no_grad():
            m0 = behaviour.metric(forward_with(model, clean, hook_name, acts, cnt), rows).double()
            m_total += float(m0.sum())

            def effects(delta, acts=acts, pos=pos, clean=clean, rows=rows, m0=m0):
                """Summed metric change of each of the ``B`` patches ``delta`` (``"B b k d"``), one pass."""
                n_patch, b = delta.shape[0], acts.shape[0]
                patched = add_at_positions(
                    acts.repeat(n_patch, 1, 1), pos.repeat(n_patch, 1), delta.reshape(n_patch * b, *delta.shape[2:]).to(acts.dtype)
                )  # fmt: skip
                logits = forward_with(model, clean.repeat(n_patch, 1), hook_name, patched, cnt)
                m1 = behaviour.metric(logits, rows.repeat(n_patch)).double().view(n_patch, b)
                return (m1 - m0).sum(1)

            run = todo[differs[todo]] if skip_inactive else todo
            for i in range(0, len(run), patch_batch):
                idx = run[i : i + patch_batch]
                delta = df[:, :, idx].permute(2, 0, 1).unsqueeze(-1) * dirs[idx][:, None, None, :]  # B b k d
                total[idx] += effects(delta)
            err_total += float(effects((e_cf - e_clean).unsqueeze(0))[0])
    n = len(behaviour)
    cnt.wall_s = time.perf_counter() - t0
    return NodeEffects("latents", (total / n).float(), active, err_total / n, m_total / n, cnt)


def head_patching(model, behaviour: Behaviour, heads: list[int] | None = None, progress=None) -> NodeEffects:
    """Exact effect of patching each head's ``hook_z`` (every position) alone; heads as ``layer * n_heads + head``."""
    import torch

    t0 = time.perf_counter()
    cnt = Counter()
    hooks = _z_hooks(model)
    n_heads = model.cfg.n_heads
    n = model.cfg.n_layers * n_heads
    todo = list(range(n)) if heads is None else sorted(set(int(i) for i in heads))
    total = torch.zeros(n, dtype=torch.float64)
    active = torch.zeros(n, dtype=torch.bool)
    m_total = 0.0
    rows_list = list(batches(behaviour))
    for rows in progress(rows_list, desc="exact", total=len(rows_list)) if progress else rows_list:
        clean = behaviour.clean[rows]
        z_cf = capture(model, behaviour.counterfactual[rows], hooks, cnt)
        with torch.no_grad():
            cnt.forward_passes += 1
            cnt.sequences += len(rows)
            m0 = behaviour.metric(model(clean), rows).double()
            m_total += float(m0.sum())
            for i in todo:
                layer, h = divmod(i, n_heads)

                def patch(z, hook, h=h, src=z_cf[hooks[layer]]):
                    z = z.clone()
                    z[:, :, h] = src[:, :, h]
                    return z

                cnt.forward_passes += 1
                cnt.sequences += len(rows)
                logits = run_hooked(model, clean, [(hooks[layer], patch)])
                total[i] += float((behaviour.metric(logits, rows).double() - m0).sum())
                active[i] = True
    cnt.wall_s = time.perf_counter() - t0
    return NodeEffects("heads", (total / len(behaviour)).float(), active, None, m_total / len(behaviour), cnt, n_heads)


def full_patch_effect(model, hook_name: str, behaviour: Behaviour) -> tuple[float, Counter]:
    """Exact effect of patching the whole activation at the task positions (clean -> counterfactual)."""
    import torch

    t0 = time.perf_counter()
    cnt = Counter()
    total = 0.0
    for rows in batches(behaviour):
        clean, pos = behaviour.clean[rows], behaviour.positions[rows]
        x = capture(model, clean, [hook_name], cnt)[hook_name]
        x_cf = capture(model, behaviour.counterfactual[rows], [hook_name], cnt)[hook_name]
        with torch.no_grad():
            m0 = behaviour.metric(forward_with(model, clean, hook_name, x, cnt), rows).double()
            delta = at_positions(x_cf, pos) - at_positions(x, pos)
            m1 = behaviour.metric(forward_with(model, clean, hook_name, add_at_positions(x, pos, delta), cnt), rows)
            total += float((m1.double() - m0).sum())
    cnt.wall_s = time.perf_counter() - t0
    return total / len(behaviour), cnt


def run_exact(ctx: DiscoveryContext, method: str, target: str, nodes: list[int] | None = None,
              skip_inactive: bool = True, patch_batch: int = 1) -> NodeEffects:  # fmt: skip
    """Exact patching of ``nodes`` (default all) of ``target`` on the task's behaviour (``ctx.behaviour``)."""
    behaviour = ctx.require_behaviour(method)
    sae = check_target(ctx, method, target)
    model = ctx.subject.model
    if target == "latents":
        return latent_patching(model, sae, ctx.hook_name, behaviour, nodes, skip_inactive, ctx.progress, patch_batch)
    return head_patching(model, behaviour, nodes, ctx.progress)


@dataclass
class ExactConfig:
    """Options of ``exact``.

    Attributes:
        target: ``latents`` (SAE latents at the task hook) or ``heads`` (hook_z).
        n: nodes returned (ranked by |effect|).
        k: the chosen set: the ``k`` nodes of largest |effect|.
        skip_inactive: skip latents that do not differ between the runs (their effect is exactly 0).
        pool: latents patched: the ``pool`` of largest |attribution patching| effect (chosen by
            :func:`baselines.attribution.attribution_pool`); 0, or a pool at least the SAE's size,
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


class ExactPatching(Method):
    name = "exact"
    description = (
        "exact activation patching, one SAE latent (or head) at a time, ranked by absolute effect (the reference)"
    )
    supervision = "objective"
    Config = ExactConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        from deeprobe_bench.baselines.attribution import attribution_pool

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
