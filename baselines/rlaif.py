"""``rlaif``: fine-tune SAE latents with a reward from an LLM judge plus a causal term (RLAIF-SAE).

The proposal (Léo Dana, "RLAIF-SAE", the project's seed 001): train SAE directions on
``L = MSE + lambda * sparsity + gamma * E[RLAIF reward]`` so that they become interpretable like probes
while staying unsupervised; first train the SAE normally, then fine-tune it with the judge's reward
"just like we do with LMs". No prior work trains SAE directions on a judge reward (REFERENCE.md
section 6); this is the benchmark's implementation of the idea.

**What is trained.** A copy of the subject's shipped SAE at the task's hook (never the shipped file). The
``n`` latents most often active at the task positions (the ``sae`` baseline's pool) are fine-tuned: each
latent's encoder column and decoder row. The other latents stay fixed.

**Reward per latent** ``R_j = w_judge * detection_j + w_simple * simplicity_j + w_causal * causal_j``:

- ``detection_j``: the judge's autointerp detection score of the latent on the task's *train* examples
  (``ctx.judge``, :mod:`deeprobe_bench.metrics.autointerp`: explanation from the top-activating examples,
  then balanced accuracy at picking activating examples out of a shuffled mix); 0.5 = chance.
- ``simplicity_j``: ``detection_j * min(1, 12 / words in the explanation)``: short explanations that
  still predict the activations.
- ``causal_j``: the task objective of the latent alone (``ctx.objective`` on a FeatureSet of that latent:
  its decoder row and its activation; on IOI, the faithfulness of keeping that one direction, minus the
  size penalty; on the board games, the board reconstruction its activation gives). Judge
  methods get the objective for this term (runner: supervision ``judge``), each call counted.

**Update.** The judge is not differentiable, so the reward's gradient is estimated by antithetic
evolution strategies (Salimans et al. 2017) over small perturbations: per step, ``population`` pairs
``theta +- sigma * ||row|| * U z / sqrt(r)`` with ``z ~ N(0, I_r)`` per latent, ``U`` the ``rank`` top
principal directions of the train activations at the task positions (a low-dimensional search space
keeps the estimate usable with few judge calls); each latent's own reward difference gives its own
gradient estimate. Reconstruction and sparsity stay in the loss with their exact gradients (autograd):
``MSE`` is the fraction of variance unexplained of the train activations at the task positions,
``sparsity`` the mean activation of the fine-tuned latents. One Adam step per ES step on
``grad(MSE + lambda * sparsity) - gamma * ES-estimate(grad E[R])``; decoder rows are kept at their norm.

**Output.** The fine-tuned latents: decoder rows as directions, the fine-tuned SAE's activations as
encoder, ranked by final reward. ``-M steps=0`` returns the same latents of the shipped SAE ranked by the
same reward: the *before* row of every table. ``meta`` holds the train-side before / after numbers
(mean reward and its parts, FVU) and the per-step history.

**Cost.** Each reward evaluation makes up to ``2n`` judge calls (latents with too few activating
examples are not judged) and ``n`` objective calls; a step makes ``2 * population + 1`` evaluations.
With the defaults (n 20, population 4, steps 6) an ioi-mini cell made 1,100 objective calls and 1,962 to
2,028 judge calls (about 0.5 M judge tokens) in 189 to 218 s on 2 shared CPU cores with the local judge
server. On a paid endpoint check ``judge_tokens`` of a short run (``-M steps=1``) first.

**Caution** (REFERENCE.md section 6, and ``tests/unit/test_rlaif_gaming.py``): a reward made only of judge
scores can be gamed by features that please the judge without any effect on the task; ``w_causal``
is what ties the reward to the model's computation.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import BudgetExhausted, DiscoveryContext, FeatureSet, Method, UserError

log = logging.getLogger(__name__)


@dataclass
class RLAIFConfig:
    """Options of ``rlaif``.

    Attributes:
        n: latents fine-tuned (the most frequent at the task positions) and returned.
        steps: ES steps; 0 returns the shipped SAE's latents (the "before" row).
        population: antithetic perturbation pairs per step.
        sigma: perturbation size, relative to each row's norm.
        lr: Adam step size, relative to the mean row norm per coordinate (``lr * norm / sqrt(d)``).
        rank: dimension of the perturbation subspace (top principal directions of the train activations).
        w_judge / w_simple / w_causal: weights of the reward's judge detection, simplicity and causal terms.
            The causal term is small in absolute terms (one IOI latent alone keeps about 0.02 of the logit
            difference), so its default weight 10 puts its variation on the scale of the judge terms';
            ``w_causal=0`` is the judge-only reward (gameable, see the module docstring).
        gamma: weight of the reward in the loss ``MSE + lam * sparsity - gamma * E[R]``.
        lam: sparsity coefficient.
        arch: which of the subject's SAEs at the hook (``Subject.sae_variants``); empty for the default.
        budget: objective calls allowed (None: unlimited); when spent, training stops at that step.
    """

    n: int = 20
    steps: int = 6
    population: int = 4
    sigma: float = 0.1
    lr: float = 0.05
    rank: int = 16
    w_judge: float = 1.0
    w_simple: float = 0.5
    w_causal: float = 10.0
    gamma: float = 1.0
    lam: float = 1e-3
    arch: str = ""
    budget: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1 or self.steps < 0 or self.population < 1 or self.rank < 1:
            raise ValueError("n, population and rank must be >= 1 and steps >= 0")
        if self.sigma <= 0 or self.lr < 0 or self.gamma < 0 or self.lam < 0:
            raise ValueError("sigma must be > 0; lr, gamma and lam >= 0")
        if min(self.w_judge, self.w_simple, self.w_causal) < 0:
            raise ValueError("reward weights must be >= 0")


@dataclass
class RewardWeights:
    """``R = judge * detection + simple * simplicity + causal * causal_term`` (see the module docstring)."""

    judge: float = 1.0
    simple: float = 0.5
    causal: float = 10.0


def combine(detection: Any, simplicity: Any, causal: Any, w: RewardWeights) -> Any:
    """The reward of each latent from its parts (tensors or floats of the same shape)."""
    return w.judge * detection + w.simple * simplicity + w.causal * causal


def feature_rewards(features: FeatureSet, scorer: Any, objective: Any, weights: RewardWeights) -> dict[str, Any]:
    """The rlaif reward of each feature of any FeatureSet, and its parts.

    Args:
        features: the features (their encoder on ``scorer.examples.acts``, their directions for the objective).
        scorer: a :class:`~deeprobe_bench.metrics.autointerp.JudgeScorer`.
        objective: ``objective(FeatureSet) -> float`` (the task objective on the train split); called on
            each feature alone. Not called when ``weights.causal == 0``.
        weights: the reward weights.

    Returns:
        ``{"reward", "detection", "simplicity", "causal"}``, each ``Float[Tensor, "n"]``, and ``"explanations"``.
    """
    import torch

    with torch.no_grad():
        acts = features.encoder(scorer.examples.acts_for(features.hook_name).float())
    scores = scorer.score_activations(acts)
    det = torch.tensor([s.score for s in scores])
    simp = torch.tensor([s.simplicity for s in scores])
    if weights.causal:
        causal = torch.tensor([float(objective(features.subset([j]))) for j in range(len(features))])
    else:
        causal = torch.zeros(len(features))
    return {
        "reward": combine(det, simp, causal, weights),
        "detection": det,
        "simplicity": simp,
        "causal": causal,
        "explanations": [s.explanation for s in scores],
    }


class RLAIF(Method):
    """RLAIF-SAE (seed 001): the ``n`` most active latents of a copy of the subject's SAE fine-tuned by
    evolution strategies on ``w_judge * detection + w_simple * simplicity + w_causal * causal effect``.

    Returns the fine-tuned latents (decoder rows as directions, their SAE encoder), scores = the final
    reward per latent. Needs a judge (the local one offline; see ``deeprobe_bench.judge``).
    """

    name = "rlaif"
    description = "SAE latents fine-tuned by ES on a judge (interpretability, simplicity) + causal reward (RLAIF-SAE)"
    supervision = "judge"
    Config = RLAIFConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.baselines.sae import latent_features, rank_latents

        cfg = self.config
        if ctx.judge is None or ctx.objective is None:
            raise UserError("method rlaif needs a judge and the task objective (supervision 'judge')")
        shipped = ctx.require_sae(self.name, cfg.arch or None)
        sae = copy.deepcopy(shipped)
        for p in sae.parameters():
            p.requires_grad_(False)
        order, _ = rank_latents(ctx, self.name, shipped)
        pool = [int(i) for i in order[: cfg.n]]
        idx = torch.tensor(pool)
        weights = RewardWeights(cfg.w_judge, cfg.w_simple, cfg.w_causal)
        x_fit = (ctx.site_acts if ctx.site_acts is not None else ctx.train_acts).float()
        examples = ctx.judge.examples
        keys = [f"latent{j}" for j in pool]
        gen = torch.Generator().manual_seed(ctx.seed)

        # Perturbation subspace: top principal directions of the activations the latents read.
        centred = x_fit - x_fit.mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        r = min(cfg.rank, vh.shape[0])
        basis = vh[:r].T.contiguous()  # d r
        d = basis.shape[0]

        enc = sae.W_enc.detach()[:, idx].T.clone()  # n d
        dec = sae.W_dec.detach()[idx].clone()  # n d
        enc_norm = enc.norm(dim=1, keepdim=True)
        dec_norm = dec.norm(dim=1, keepdim=True)

        def install(e: torch.Tensor, dd: torch.Tensor) -> None:
            with torch.no_grad():
                sae.W_enc[:, idx] = e.T
                sae.W_dec[idx] = dd

        def evaluate(e: torch.Tensor, dd: torch.Tensor) -> dict[str, Any]:
            install(e, dd)
            with torch.no_grad():
                acts = sae.encode(examples.acts.float())[:, idx]
            scores = ctx.judge.score_activations(acts, keys=keys)
            det = torch.tensor([s.score for s in scores])
            simp = torch.tensor([s.simplicity for s in scores])
            if cfg.w_causal:  # each latent alone; one encoding of the pool per evaluation (encode_shared)
                pool_set = latent_features(sae, ctx.hook_name, pool)
                causal = torch.tensor([float(ctx.objective(pool_set.subset([j]))) for j in range(len(pool))])
            else:
                causal = torch.zeros(len(pool))
            return {"reward": combine(det, simp, causal, weights), "detection": det, "simplicity": simp,
                    "causal": causal, "explanations": [s.explanation for s in scores]}  # fmt: skip

        def recon_loss(e: torch.Tensor, dd: torch.Tensor) -> tuple[torch.Tensor, float, float]:
            """``FVU + lam * sparsity`` with gradients for the pool rows; also (FVU, sparsity) as floats."""
            w_enc, w_dec = sae.W_enc.detach().clone(), sae.W_dec.detach().clone()
            w_enc[:, idx] = e.T
            w_dec[idx] = dd
            fvu, sparsity = _fvu_and_sparsity(sae, w_enc, w_dec, x_fit, idx)
            return fvu + cfg.lam * sparsity, float(fvu.detach()), float(sparsity.detach())

        before = evaluate(enc, dec)
        _, fvu0, sp0 = recon_loss(enc, dec)
        history = [_summary(0, before, fvu0, sp0)]
        e_param = enc.clone().requires_grad_(True)
        d_param = dec.clone().requires_grad_(True)
        lr = cfg.lr * float(torch.cat([enc_norm, dec_norm]).mean()) / d**0.5
        opt = torch.optim.Adam([e_param, d_param], lr=lr)
        current = before
        stopped = None
        for step in ctx.progress(range(cfg.steps), desc="rlaif", total=cfg.steps):
            e0, d0 = e_param.detach().clone(), d_param.detach().clone()
            z = torch.randn(cfg.population, len(pool), r, generator=gen)
            g_sub = torch.zeros(len(pool), r)
            try:
                for p in range(cfg.population):
                    noise = (z[p] @ basis.T) / r**0.5  # n d
                    plus = evaluate(e0 + cfg.sigma * enc_norm * noise, d0 + cfg.sigma * dec_norm * noise)
                    minus = evaluate(e0 - cfg.sigma * enc_norm * noise, d0 - cfg.sigma * dec_norm * noise)
                    g_sub += (plus["reward"] - minus["reward"]).unsqueeze(1) * z[p]
            except BudgetExhausted:
                stopped = f"objective budget spent at step {step}"
                break
            g_sub /= 2 * cfg.sigma * cfg.population
            g_full = (g_sub @ basis.T) / r**0.5  # ascent direction of E[R], per latent, n d
            opt.zero_grad()
            loss, _, _ = recon_loss(e_param, d_param)
            loss.backward()
            with torch.no_grad():
                e_param.grad -= cfg.gamma * g_full * enc_norm
                d_param.grad -= cfg.gamma * g_full * dec_norm
            opt.step()
            with torch.no_grad():  # decoder rows keep their norm (the SAE's convention)
                d_param.mul_(dec_norm / d_param.norm(dim=1, keepdim=True).clamp_min(1e-12))
            try:
                current = evaluate(e_param.detach(), d_param.detach())
            except BudgetExhausted:
                stopped = f"objective budget spent after step {step}"
                install(e0, d0)
                e_param.data.copy_(e0)
                d_param.data.copy_(d0)
                break
            _, fvu, sp = recon_loss(e_param.detach(), d_param.detach())
            history.append(_summary(step + 1, current, fvu, sp))
            log.debug("rlaif step %d: %s", step + 1, history[-1])

        enc_f, dec_f = e_param.detach(), d_param.detach()
        install(enc_f, dec_f)
        sae_final = sae

        def encoder(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return sae_final.encode(x.float())[..., idx]

        after = history[-1]
        meta = {
            "latents": pool,
            "sae": {"arch": cfg.arch or "default", "d_sae": int(sae.cfg.d_sae)},
            "reward": "w_judge * detection + w_simple * simplicity + w_causal * objective(latent alone)",
            "train_before": history[0],
            "train_after": after,
            "history": history,
            "stopped": stopped,
            "explanations": current["explanations"],
            "perturbation_rank": r,
        }
        return FeatureSet(
            hook_name=ctx.hook_name,
            directions=dec_f.float().clone(),
            encoder=encoder,
            scores=current["reward"].float(),
            meta=meta,
        )


def _fvu_and_sparsity(sae: Any, w_enc: Any, w_dec: Any, x: Any, idx: Any) -> tuple[Any, Any]:
    """Fraction of variance unexplained of ``x`` (``"n d"``) by the SAE with weights ``w_enc`` / ``w_dec``
    (differentiable in them, via ``torch.func.functional_call``), and the mean activation of the latents ``idx``."""
    import torch

    class _EncodeDecode(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.sae = inner

        def forward(self, v: Any) -> tuple[Any, Any]:
            a = self.sae.encode(v)
            return a, self.sae.decode(a)

    acts, recon = torch.func.functional_call(_EncodeDecode(sae), {"sae.W_enc": w_enc, "sae.W_dec": w_dec}, (x,))
    fvu = ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12)
    return fvu, acts[:, idx].abs().mean()


def _summary(step: int, ev: dict[str, Any], fvu: float, sparsity: float) -> dict[str, Any]:
    return {
        "step": step,
        "reward": round(float(ev["reward"].mean()), 6),
        "detection": round(float(ev["detection"].mean()), 6),
        "simplicity": round(float(ev["simplicity"].mean()), 6),
        "causal": round(float(ev["causal"].mean()), 6),
        "fvu": round(fvu, 6),
        "sparsity": round(sparsity, 6),
    }
