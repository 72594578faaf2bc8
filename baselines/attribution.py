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

**Agreement** (``-M agreement=true``, default): every result records the Spearman rank correlation of
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
against the Wang et al. circuit on ``gpt2-small``).

Supervision ``objective``: it needs the behaviour metric's gradient, not labels, and calls no objective.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from deeprobe_bench.api import Behaviour, DiscoveryContext, FeatureSet, Method, UserError

# --------------------------------------------------------------------------- plumbing shared with ``exact``


def hook_layer(hook_name: str) -> int | None:
    """``L`` of a hook inside block ``L`` (``blocks.L.…``), else None."""
    m = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(m.group(1)) if m else None


def resume_layer(hook_name: str, n_layers: int) -> int | None:
    """The ``start_at_layer`` that takes the activation at ``hook_name`` as input (residual hooks only)."""
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook_name)
    if not m:
        return None
    layer = int(m.group(1)) + (m.group(2) == "post")
    return layer if layer < n_layers else None


@dataclass
class Counter:
    """Batched forward and backward passes a computation spent, and its wall time.

    ``sequences`` counts the prompts pushed through those forward passes (a batched patch of ``B``
    latents over ``b`` prompts is one pass of ``B * b`` sequences), the unit compute scales with.
    """

    forward_passes: int = 0
    backward_passes: int = 0
    wall_s: float = 0.0
    sequences: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"forward_passes": self.forward_passes, "backward_passes": self.backward_passes,
                "sequences": self.sequences, "wall_s": round(self.wall_s, 4)}  # fmt: skip


def capture(model, tokens, hook_names: list[str], counter: Counter) -> dict[str, Any]:
    """Activations at ``hook_names`` of one no-grad forward pass, stopped after the last block needed."""
    import torch

    layers = [hook_layer(h) for h in hook_names]
    stop = None if any(la is None for la in layers) else min(max(layers) + 1, model.cfg.n_layers)
    stop = None if stop == model.cfg.n_layers else stop
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hook_names, stop_at_layer=stop)
    counter.forward_passes += 1
    counter.sequences += int(tokens.shape[0])
    return {h: cache[h].detach() for h in hook_names}


def run_hooked(model, tokens, fwd_hooks):
    """``model(tokens)`` with ``fwd_hooks`` attached, through ``model.__call__`` (unlike ``run_with_hooks``,
    which calls ``forward`` directly), so that ``Subject.forward_passes`` counts it."""
    with model.hooks(fwd_hooks=fwd_hooks):
        return model(tokens)


def forward_with(model, tokens, hook_name: str, act, counter: Counter):
    """Logits of the model with the activation at ``hook_name`` replaced by ``act`` (same shape).

    Starts at the hook (``start_at_layer``) when it is a residual hook, else runs the whole model with a
    replacing hook. Gradients flow into ``act``.
    """
    counter.forward_passes += 1
    counter.sequences += int(act.shape[0])
    start = resume_layer(hook_name, model.cfg.n_layers)
    if start is not None:
        return model(act, start_at_layer=start)
    return run_hooked(model, tokens, [(hook_name, lambda _a, hook: act)])


def decoder_directions(sae, chunk: int = 4096):
    """``Float[Tensor, "d_sae d_in"]``: row i = ``decode(e_i) - decode(0)``, the direction latent i writes.

    ``sae.decode`` is affine in the latents for the SAEs of sae_lens (a TopK SAE with
    ``rescale_acts_by_decoder_norm`` divides by the decoder norm, so the raw ``W_dec`` row is not it).
    When ``decode(f) - decode(0) = f @ W_dec`` holds for a Gaussian random ``f`` (for an affine decode
    whose matrix differs from ``W_dec`` this fails with probability 1), the rows are ``W_dec`` itself:
    ``O(d_sae d_in)``. Otherwise ``decode`` runs on the identity in chunks: ``O(d_sae^2 d_in)``, 460
    GFLOP at 24,576 latents x 768.
    """
    import torch

    d_sae = sae.cfg.d_sae
    with torch.no_grad():
        zero = sae.decode(torch.zeros(1, d_sae))
        w_dec = sae.W_dec.detach().float()
        f = torch.randn(2, d_sae, generator=torch.Generator().manual_seed(0))
        linear = f @ w_dec
        if float((sae.decode(f) - zero - linear).norm()) <= 1e-4 * float(linear.norm()):
            return w_dec.clone()
        rows = [sae.decode(torch.eye(d_sae)[i : i + chunk]) - zero for i in range(0, d_sae, chunk)]
    return torch.cat(rows).float()


def batches(behaviour: Behaviour):
    """``rows: Int[Tensor, "b"]`` of each batch of the behaviour's examples."""
    import torch

    n = len(behaviour)
    for i in range(0, n, behaviour.batch_size):
        yield torch.arange(i, min(i + behaviour.batch_size, n))


def at_positions(act, pos):
    """``act[b, pos[b, j]]``: ``Float[Tensor, "b pos d"]``, ``Int[Tensor, "b k"]`` -> ``"b k d"``."""
    import torch

    rows = torch.arange(act.shape[0]).unsqueeze(1).expand_as(pos)
    return act[rows, pos]


def add_at_positions(act, pos, delta):
    """A copy of ``act`` with ``delta`` (``"b k d"``) added at the positions ``pos`` (``"b k"``)."""
    import torch

    rows = torch.arange(act.shape[0]).unsqueeze(1).expand_as(pos)
    out = act.clone()
    out[rows, pos] = out[rows, pos] + delta
    return out


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


# --------------------------------------------------------------------------- attribution


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
    rows_iter = list(batches(behaviour))
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
                    mj = behaviour.metric(forward_with(model, clean, hook_name, x, cnt), rows)
                    (grad,) = torch.autograd.grad(mj.sum(), x)
                cnt.backward_passes += 1
                g += at_positions(grad, pos).double() / steps
            with torch.no_grad():
                m = behaviour.metric(forward_with(model, clean, hook_name, x_clean, cnt), rows)
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
    return [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]


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
    rows_iter = list(batches(behaviour))
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
    """``Float[Tensor, "n_layers*n_heads d_model"]``: each head's mean output difference ``(z_clean - z_cf)
    W_O`` at the task positions, the direction it writes into the residual stream there."""
    import torch

    cnt = Counter()
    hooks = _z_hooks(model)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model)
    for rows in batches(behaviour):
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
    """The FeatureSet of the ``n`` nodes of largest ``|effect|``, scored by ``|effect|``, ``k`` chosen."""
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
    """The SAE for ``latents`` (UserError if none), None for ``heads`` (UserError without attention heads)."""
    if target == "latents":
        return ctx.require_sae(method)
    if not getattr(ctx.subject.model.cfg, "n_heads", 0):
        raise UserError(f"method {method} -M target=heads needs a model with attention heads")
    return None


# --------------------------------------------------------------------------- the method


@dataclass
class AttributionConfig:
    """Options of ``attribution``.

    Attributes:
        target: ``latents`` (SAE latents at the task hook, plus the error term) or ``heads`` (hook_z).
        variant: ``atp`` (gradient at the clean run) or ``ig`` (integrated gradients).
        steps: interpolation points of ``ig`` (Sparse Feature Circuits: 10; EAP-IG: 5 to 30).
        n: nodes returned (ranked by |effect|).
        k: the chosen set: the ``k`` nodes of largest |effect|.
        agreement: also run exact patching on the common sample and record Spearman / top-k recall.
        agreement_sample: at most this many latents in the common sample (drawn with the seed); 0 = all.
    """

    target: Literal["latents", "heads"] = "latents"
    variant: Literal["atp", "ig"] = "atp"
    steps: int = 10
    n: int = 50
    k: int = 10
    agreement: bool = True
    agreement_sample: int = 2048

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n < 1 or self.k < 1:
            raise ValueError("steps, n and k must be >= 1")
        if self.agreement_sample < 0:
            raise ValueError("agreement_sample must be >= 0")


def run_attribution(ctx: DiscoveryContext, method: str, target: str, variant: str, steps: int) -> NodeEffects:
    """Attribution of every node of ``target`` on the task's behaviour (``ctx.behaviour``)."""
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


class Attribution(Method):
    name = "attribution"
    description = (
        "attribution patching (or IG) over SAE latents + error term, or attention heads, ranked by absolute effect"
    )
    supervision = "objective"
    Config = AttributionConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.baselines import exact
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
            ref = exact.run_exact(ctx, self.name, cfg.target, sample.tolist(), patch_batch=8)
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
                full, full_cost = exact.full_patch_effect(ctx.subject.model, ctx.hook_name, ctx.behaviour)
                agree.update(error_effect_exact=ref.error_effect, full_patch_exact=full,
                             sum_of_attributions=float(nodes.effects.double().sum()) + nodes.error_effect,
                             full_patch_cost=full_cost.to_dict())  # fmt: skip
            meta["agreement"] = agree
        return effects_result(ctx, self.name, nodes, cfg.n, cfg.k, sae, meta)
