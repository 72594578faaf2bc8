"""Node effects shared by the patching methods: attribution patching and exact activation patching.

``attribution`` (:mod:`deeprobe_bench.baselines.attribution`), ``exact`` (:mod:`deeprobe_bench.baselines.exact`)
and the searches that choose their candidate pool by attribution (``mcts -M prior=attribution``, ``greedy -M
pool_by=attribution``) compute the same thing: the effect on the task's behaviour metric
(:class:`api.Behaviour`) of patching a node (an SAE latent at the task's hook, or an attention head's
``hook_z``) from its clean to its counterfactual value, estimated to first order (attribution patching,
Nanda 2023; integrated gradients, Sundararajan et al. 2017, as in Sparse Feature Circuits, Marks et al.
2024) or exactly (one node at a time, Wang et al. 2022). This module holds those computations and the
FeatureSet they return; the hook plumbing (capture, forward from a hook, positions, pass counting) is the
core's (:mod:`deeprobe_bench.hooks`). Definitions and costs: the modules of the two methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from deeprobe_bench.api import Behaviour, DiscoveryContext, FeatureSet, UserError
from deeprobe_bench.baselines.sae import decoder_directions
from deeprobe_bench.hooks import Counter, act_name, add_at_positions, at_positions, capture, replace_at_hook, run_hooked
from deeprobe_bench.metrics.ranking import PatchedBatch


@dataclass
class NodeEffects:
    """Effects of patching each node from clean to counterfactual, in units of the behaviour metric.

    Attributes:
        kind: ``latents`` or ``heads``.
        effects: ``Float[Tensor, "n_nodes"]`` mean over prompts of the (estimated or exact) change of the
            metric; heads are flattened ``layer * n_heads + head``.
        active: ``Bool[Tensor, "n_nodes"]`` nodes whose activation differs between the runs somewhere.
        error_effect: the SAE error term's effect (latents only).
        m_clean: the clean metric, mean over prompts.
        cost: passes and time spent.
        n_heads: heads per layer (heads only).
    """

    kind: str
    effects: Any
    active: Any
    error_effect: float | None = None
    m_clean: float | None = None
    cost: Counter = field(default_factory=Counter)
    n_heads: int | None = None


def _site_latents(sae, x, pos):
    """``(f, err)`` at the positions: latents ``"b k d_sae"`` and SAE error ``"b k d"``."""
    import torch

    with torch.no_grad():
        xs = at_positions(x, pos).float()
        f = sae.encode(xs)
        err = xs - sae.decode(f)
    return f, err


# --------------------------------------------------------------------------- attribution patching


def latent_attribution(model, sae, hook_name: str, behaviour: Behaviour, steps: int = 0, progress=None) -> NodeEffects:
    """Attribution patching (``steps=0``) or integrated gradients (``steps>=1``) of every SAE latent.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        sae: a sae_lens SAE reading ``hook_name``.
        hook_name: the hook point of the latents.
        behaviour: metric, clean / counterfactual tokens and the positions to attribute at.
        steps: 0 = gradient at the clean run (2 forward + 1 backward per batch); N = integrated gradients
            with N interpolation points (2 + N forward, N backward per batch).
        progress: optional ``progress(iterable, desc=..., total=...)``.

    Returns:
        :class:`NodeEffects` over the ``d_sae`` latents, with the error term's effect.
    """
    import torch

    t0 = time.perf_counter()
    cnt = Counter()
    dirs = decoder_directions(sae)
    d_sae = dirs.shape[0]
    total = torch.zeros(d_sae, dtype=torch.float64)
    active = torch.zeros(d_sae, dtype=torch.bool)
    err_total, m_total = 0.0, 0.0
    rows_iter = list(behaviour.batches())
    for rows in progress(rows_iter, desc="attribution", total=len(rows_iter)) if progress else rows_iter:
        clean, cf, pos = behaviour.clean[rows], behaviour.counterfactual[rows], behaviour.positions[rows]
        if steps == 0:
            store: dict[str, Any] = {}

            def grab(act, hook, store=store):
                if not act.requires_grad:
                    act = act.detach().requires_grad_(True)
                store["x"] = act
                return act

            with torch.enable_grad():
                cnt.forward_passes += 1
                cnt.sequences += len(rows)
                logits = run_hooked(model, clean, [(hook_name, grab)])
                m = behaviour.metric(logits, rows)
                (grad,) = torch.autograd.grad(m.sum(), store["x"])
            cnt.backward_passes += 1
            x_clean = store["x"].detach()
            x_cf = capture(model, cf, [hook_name], cnt)[hook_name]
            g = at_positions(grad, pos).double()  # b k d
        else:
            x_clean = capture(model, clean, [hook_name], cnt)[hook_name]
            x_cf = capture(model, cf, [hook_name], cnt)[hook_name]
            delta = at_positions(x_cf, pos) - at_positions(x_clean, pos)
            g = torch.zeros(delta.shape, dtype=torch.float64)
            m = None
            for j in range(steps):
                alpha = (j + 0.5) / steps
                with torch.enable_grad():
                    x = add_at_positions(x_clean, pos, alpha * delta).requires_grad_(True)
                    mj = behaviour.metric(replace_at_hook(model, clean, hook_name, x, cnt), rows)
                    (grad,) = torch.autograd.grad(mj.sum(), x)
                cnt.backward_passes += 1
                g += at_positions(grad, pos).double() / steps
            with torch.no_grad():
                m = behaviour.metric(replace_at_hook(model, clean, hook_name, x_clean, cnt), rows)
        f_clean, e_clean = _site_latents(sae, x_clean, pos)
        f_cf, e_cf = _site_latents(sae, x_cf, pos)
        df = (f_cf - f_clean).double()  # b k d_sae
        grad_f = g @ dirs.double().T  # b k d_sae: d metric / d f_i
        total += (df * grad_f).sum(dim=(0, 1))
        active |= (df != 0).any(dim=1).any(dim=0)
        err_total += float(((e_cf - e_clean).double() * g).sum())
        m_total += float(m.detach().sum())
    n = len(behaviour)
    cnt.wall_s = time.perf_counter() - t0
    return NodeEffects("latents", (total / n).float(), active, err_total / n, m_total / n, cnt)


def _z_hooks(model) -> list[str]:
    """Every block's attention ``hook_z`` (``blocks.L.attn.hook_z``)."""
    return [act_name("z", layer) for layer in range(model.cfg.n_layers)]


def head_attribution(model, behaviour: Behaviour, steps: int = 0, progress=None) -> NodeEffects:
    """Attribution patching (``steps=0``) or per-layer integrated gradients of every attention head.

    A head's node is its output ``hook_z[:, :, head]`` at every position; effects are summed over
    positions and averaged over prompts. Costs per batch: 2 forward + 1 backward (``steps=0``), or
    2 forward + ``n_layers * steps`` forward and backward (IG, one layer interpolated at a time).

    Returns:
        :class:`NodeEffects` over ``n_layers * n_heads`` heads (``layer * n_heads + head``).
    """
    import torch

    t0 = time.perf_counter()
    cnt = Counter()
    hooks = _z_hooks(model)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    active = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    m_total = 0.0
    rows_iter = list(behaviour.batches())
    for rows in progress(rows_iter, desc="attribution", total=len(rows_iter)) if progress else rows_iter:
        clean, cf = behaviour.clean[rows], behaviour.counterfactual[rows]
        z_cf = capture(model, cf, hooks, cnt)
        if steps == 0:
            store: dict[str, Any] = {}

            def grab(act, hook, store=store):
                if not act.requires_grad:
                    act = act.detach().requires_grad_(True)
                store[hook.name] = act
                return act

            with torch.enable_grad():
                cnt.forward_passes += 1
                logits = run_hooked(model, clean, [(h, grab) for h in hooks])
                m = behaviour.metric(logits, rows)
                grads = torch.autograd.grad(m.sum(), [store[h] for h in hooks])
            cnt.backward_passes += 1
            for layer, h in enumerate(hooks):
                dz = (z_cf[h] - store[h].detach()).double()  # b pos heads d_head
                total[layer] += (dz * grads[layer].double()).sum(dim=(0, 1, 3))
                active[layer] |= (dz != 0).flatten(0, 1).any(0).any(-1)
        else:
            z_clean = capture(model, clean, hooks, cnt)
            with torch.no_grad():
                cnt.forward_passes += 1
                m = behaviour.metric(model(clean), rows)
            for layer, h in enumerate(hooks):
                dz = z_cf[h] - z_clean[h]
                g = torch.zeros(dz.shape, dtype=torch.float64)
                for j in range(steps):
                    alpha = (j + 0.5) / steps
                    with torch.enable_grad():
                        z = (z_clean[h] + alpha * dz).requires_grad_(True)
                        cnt.forward_passes += 1
                        logits = run_hooked(model, clean, [(h, lambda _a, hook, z=z: z)])
                        (grad,) = torch.autograd.grad(behaviour.metric(logits, rows).sum(), z)
                    cnt.backward_passes += 1
                    g += grad.double() / steps
                total[layer] += (dz.double() * g).sum(dim=(0, 1, 3))
                active[layer] |= (dz != 0).flatten(0, 1).any(0).any(-1)
        m_total += float(m.detach().sum())
    n = len(behaviour)
    cnt.wall_s = time.perf_counter() - t0
    return NodeEffects("heads", (total / n).flatten().float(), active.flatten(), None, m_total / n, cnt, n_heads)


# --------------------------------------------------------------------------- results


def head_directions(model, behaviour: Behaviour):
    """Each head's mean output difference ``(z_clean - z_cf) W_O`` at the task positions, the direction it writes
    into the residual stream there.

    Args:
        model: a TransformerLens ``HookedTransformer`` with attention heads.
        behaviour: clean / counterfactual tokens and the positions (``Behaviour.positions``).

    Returns:
        ``(directions, cost)``: ``Float[Tensor, "n_layers*n_heads d_model"]`` (head ``layer * n_heads + head``)
        and the :class:`Counter` of the 2 forward passes per batch it spent.
    """
    import torch

    cnt = Counter()
    hooks = _z_hooks(model)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model)
    for rows in behaviour.batches():
        pos = behaviour.positions[rows]
        z = capture(model, behaviour.clean[rows], hooks, cnt)
        zc = capture(model, behaviour.counterfactual[rows], hooks, cnt)
        for layer, h in enumerate(hooks):
            dz = at_positions(z[h] - zc[h], pos)  # b k heads d_head
            with torch.no_grad():
                out[layer] += torch.einsum("bkhe,hem->hm", dz.float(), model.W_O[layer].float())
    return (out / (len(behaviour) * behaviour.positions.shape[1])).flatten(0, 1), cnt


def effects_result(
    ctx: DiscoveryContext,
    method: str,
    nodes: NodeEffects,
    n: int,
    k: int,
    sae=None,
    meta: dict[str, Any] | None = None,
) -> FeatureSet:
    """The FeatureSet of the ``n`` nodes of largest ``|effect|``, scored by ``|effect|``, ``k`` chosen.

    Args:
        ctx: the discovery context (its hook; for heads, its model and behaviour).
        method: the calling method's name.
        nodes: the effects (:class:`NodeEffects`, ``latents`` or ``heads``).
        n: nodes returned; ``k``: the chosen set (``FeatureSet.selected``).
        sae: the SAE of the latents (``latents`` only).
        meta: more result details, merged into ``FeatureSet.meta``.

    Returns:
        Latents: their decoder rows and ``sae.encode`` restricted to them (:func:`baselines.sae.latent_features`).
        Heads: their :func:`head_directions` at the task's hook, a projection encoder, and ``meta["heads"]`` /
        ``meta["ranked_heads"]`` (``[layer, head]``).
    """
    import torch

    from deeprobe_bench.baselines.sae import latent_features

    eff = nodes.effects
    order = sorted(range(len(eff)), key=lambda i: (-abs(float(eff[i])), i))[:n]
    scores = [abs(float(eff[i])) for i in order]
    base = {
        "target": nodes.kind,
        "effects": [float(eff[i]) for i in order],
        "metric_clean": nodes.m_clean,
        "cost": nodes.cost.to_dict(),
        **(meta or {}),
    }
    if nodes.kind == "latents":
        base["error_effect"] = nodes.error_effect
        return latent_features(sae, ctx.hook_name, order, scores=scores, selected=min(k, len(order)), meta=base)
    h = nodes.n_heads
    heads = [[i // h, i % h] for i in order]
    dirs, cnt = head_directions(ctx.subject.model, ctx.behaviour)
    base["cost_head_directions"] = cnt.to_dict()
    d = dirs[torch.tensor(order, dtype=torch.long)]
    return FeatureSet(
        ctx.hook_name,
        directions=d,
        encoder=lambda x: x.float() @ d.T,
        scores=torch.tensor(scores),
        selected=min(k, len(order)),
        meta={"heads": heads[:k], "ranked_heads": heads, **base},
    )


def check_target(ctx: DiscoveryContext, method: str, target: str):
    """The SAE at the task's hook for ``target="latents"``, None for ``heads``.

    Raises:
        UserError: no SAE at the hook (``latents``), or a model without attention heads (``heads``).
    """
    if target == "latents":
        return ctx.require_sae(method)
    if not getattr(ctx.subject.model.cfg, "n_heads", 0):
        raise UserError(f"method {method} -M target=heads needs a model with attention heads")
    return None


def run_attribution(ctx: DiscoveryContext, method: str, target: str, variant: str, steps: int) -> NodeEffects:
    """Attribution of every node of ``target`` on the task's behaviour (``ctx.behaviour``).

    Args:
        ctx: the discovery context (its model, hook, SAE, behaviour and progress).
        method: the calling method's name, for errors.
        target: ``latents`` or ``heads``; variant: ``atp`` or ``ig`` (with ``steps`` points).

    Returns:
        :class:`NodeEffects` of every node (:func:`latent_attribution` / :func:`head_attribution`).

    Raises:
        UserError: the task gives no behaviour, or the target does not exist (:func:`check_target`).
    """
    behaviour = ctx.require_behaviour(method)
    sae = check_target(ctx, method, target)
    s = steps if variant == "ig" else 0
    model = ctx.subject.model
    if target == "latents":
        return latent_attribution(model, sae, ctx.hook_name, behaviour, s, ctx.progress)
    return head_attribution(model, behaviour, s, ctx.progress)


def attribution_pool(ctx: DiscoveryContext, method: str, size: int, tie_order: list[int] | None = None):
    """The ``size`` SAE latents of largest |attribution patching| effect on the task's behaviour.

    Costs 2 forward + 1 backward passes per batch of the behaviour's prompts (``ceil(n_prompts /
    batch_size)`` batches) and no objective call.

    Args:
        ctx: the discovery context (needs ``ctx.behaviour`` and the SAE at the hook).
        method: the calling method's name, for error messages.
        size: how many latents (all of them when ``size >= d_sae``).
        tie_order: latents in the order that breaks ties of |effect| (e.g. by activation frequency);
            latents not in it come after, by index.

    Returns:
        ``(pool, nodes)``: ``list[int]`` latents, largest |effect| first, and the :class:`NodeEffects`.

    Raises:
        UserError: the task gives no behaviour metric, or the subject has no SAE at the hook.
    """
    import numpy as np

    nodes = run_attribution(ctx, method, "latents", "atp", 0)
    eff = nodes.effects.abs().double().numpy()
    tie = np.full(len(eff), len(tie_order or []))
    if tie_order:
        tie[np.asarray(tie_order, dtype=np.int64)] = np.arange(len(tie_order))
    order = np.lexsort((np.arange(len(eff)), tie, -eff))  # by -|effect|, then tie rank, then index
    return [int(i) for i in order[:size]], nodes


# --------------------------------------------------------------------------- exact patching


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
    rows_list = list(behaviour.batches())
    for rows in progress(rows_list, desc="exact", total=len(rows_list)) if progress else rows_list:
        pb = PatchedBatch(model, hook_name, behaviour, rows, cnt)
        f_clean, e_clean = _site_latents(sae, pb.x, pb.pos)
        f_cf, e_cf = _site_latents(sae, pb.x_cf, pb.pos)
        df = f_cf - f_clean  # b k d_sae
        differs = (df != 0).any(dim=1).any(dim=0)
        active |= differs
        m_total += float(pb.m0.sum())
        with torch.no_grad():
            run = todo[differs[todo]] if skip_inactive else todo
            for i in range(0, len(run), patch_batch):
                idx = run[i : i + patch_batch]
                delta = df[:, :, idx].permute(2, 0, 1).unsqueeze(-1) * dirs[idx][:, None, None, :]  # B b k d
                total[idx] += pb.effects(delta)
            err_total += float(pb.effects((e_cf - e_clean).unsqueeze(0))[0])
    n = len(behaviour)
    cnt.wall_s = time.perf_counter() - t0
    return NodeEffects("latents", (total / n).float(), active, err_total / n, m_total / n, cnt)


def head_patching(model, behaviour: Behaviour, heads: list[int] | None = None, progress=None) -> NodeEffects:
    """Exact effect of patching each head's ``hook_z`` (every position) alone.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        behaviour: metric and clean / counterfactual tokens.
        heads: heads to patch (``layer * n_heads + head``; default all); the others get effect 0.
        progress: optional ``progress(iterable, desc=..., total=...)``.

    Returns:
        :class:`NodeEffects` over ``n_layers * n_heads`` heads. Cost per batch: 2 + ``len(heads)`` forward passes.
    """
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
    rows_list = list(behaviour.batches())
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
    """Exact effect of patching the whole activation at ``hook_name`` at the task positions (clean ->
    counterfactual): the value the attributions of all latents plus the error term approximate (completeness).

    Returns:
        ``(effect, cost)``: the mean change of the behaviour metric over prompts, and 4 forward passes per batch.
    """

    t0 = time.perf_counter()
    cnt = Counter()
    total = 0.0
    for rows in behaviour.batches():
        pb = PatchedBatch(model, hook_name, behaviour, rows, cnt)
        delta = at_positions(pb.x_cf, pb.pos) - at_positions(pb.x, pb.pos)
        total += float(pb.effects(delta.unsqueeze(0))[0])
    cnt.wall_s = time.perf_counter() - t0
    return total / len(behaviour), cnt


def run_exact(ctx: DiscoveryContext, method: str, target: str, nodes: list[int] | None = None,
              skip_inactive: bool = True, patch_batch: int = 1) -> NodeEffects:  # fmt: skip
    """Exact patching of ``nodes`` (default all) of ``target`` on the task's behaviour (``ctx.behaviour``).

    Returns:
        :class:`NodeEffects` (:func:`latent_patching` / :func:`head_patching`).

    Raises:
        UserError: the task gives no behaviour, or the target does not exist (:func:`check_target`).
    """
    behaviour = ctx.require_behaviour(method)
    sae = check_target(ctx, method, target)
    model = ctx.subject.model
    if target == "latents":
        return latent_patching(model, sae, ctx.hook_name, behaviour, nodes, skip_inactive, ctx.progress, patch_batch)
    return head_patching(model, behaviour, nodes, ctx.progress)
