"""``contrastive``: contrastive steering with clustered SAE latents (the "Contrastive Steering with Clustered
Sparse Autoencoder Features" pipeline of the Mech Interp Hackathon project of J. Lim, S. ..., K. ..., D. ...,
``shared/seeds/004``; close to FGAA: CAA difference -> SAE -> selected latents -> steering vector).

For each concept ``c`` (the positive pole of each pair of opposite poles the task names in ``ctx.poles``, else
every concept) the pipeline runs these stages, each a function of this module tested on a constructed case:

1. **Contrast pairs and deltas** (:func:`pair_deltas`): the task pairs train prompts (``ctx.pairs``:
   the row of each prompt's partner; per-token activations from ``ctx.token_acts`` / ``ctx.lengths`` when
   the task gives them, else the train rows); a pair is (a row labelled ``c``, its partner labelled the opposite
   pole). The delta is ``act(positive) - act(negative)`` at every token position (offsets counted from the
   last token).
2. **Important positions** (:func:`important_positions`): per pair, the positions whose delta norm is at
   least ``position_frac`` x that pair's largest (no alignment across prompts of different lengths needed).
3. **SAE encoding** (:func:`code_deltas`): ``encode(positive) - encode(negative)`` at those positions, one
   row per (pair, position).
4. **Latent selection** (:func:`select_latents`): latents *consistently active in the deltas* (non-zero
   with the sign of their mean code delta in at least ``min_consistency`` of the rows) and *sparse*
   (active on at most ``max_density`` of all train tokens); at most ``max_latents``, by consistency x
   |mean code delta|. If none passes, the single best latent by that score is kept (``meta``).
5. **Clustering** (:func:`cluster_latents`): scikit-learn ``AgglomerativeClustering`` (cosine, average
   linkage) of the selected latents by their code-delta profiles over the rows, ``n_clusters`` clusters
   (latents that move together across prompts).
6. **Least squares** (:func:`least_squares_weights`): weights ``w`` of the selected latents' decoder rows
   minimising ``sum_i |delta_i - sum_j w_j d_j|^2`` over the rows (per row, then averaged, which is the
   same solution), for all selected latents jointly and for each cluster alone.
7. **Steering vector**: ``sum_j w_j d_j``. The FeatureSet holds, per concept, the joint vector (label
   ``c``, ranked first) and each cluster's vector (label ``c/cluster<k>``), ranked by the share of the
   mean delta they explain (R^2). A feature's activation is ``sum_j w_j f_j(x)``, ``f`` the SAE latents.

The hackathon write-up found the clustering useful and the least-squares weights weak ("we have not found
strong evidence of steer-ability of persona using the linear regression part"); the leaderboard shows
where it lands here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, UserError

if TYPE_CHECKING:  # `deeprobe-bench ls` must not import torch
    from jaxtyping import Float, Int
    from torch import Tensor


def pair_deltas(
    token_acts: Float[Tensor, "n pos d"], lengths: Int[Tensor, " n"], pos_rows: Int[Tensor, " p"],
    neg_rows: Int[Tensor, " p"],
) -> tuple[Float[Tensor, "p k d"], Int[Tensor, "p k 2"]]:  # fmt: skip
    """``act(pos) - act(neg)`` per pair at the offsets ``0 .. k-1`` from each prompt's last token (``k`` =
    the longest pair's non-BOS length; offsets beyond a pair's own length are zero).

    Returns:
        ``(deltas, index)``: the deltas and, per pair and offset, the token index in the positive and the
        negative prompt (``-1`` where the pair has no such token).
    """
    import torch

    n = torch.minimum(lengths[pos_rows], lengths[neg_rows]) - 1  # non-BOS tokens of each pair
    k = int(n.max())
    offs = torch.arange(k)
    valid = offs[None, :] < n[:, None]
    idx_pos = ((lengths[pos_rows] - 1)[:, None] - offs[None, :]).clamp(min=0)
    idx_neg = ((lengths[neg_rows] - 1)[:, None] - offs[None, :]).clamp(min=0)
    deltas = token_acts[pos_rows[:, None], idx_pos] - token_acts[neg_rows[:, None], idx_neg]
    deltas = deltas * valid[..., None]
    index = torch.stack([torch.where(valid, idx_pos, -1), torch.where(valid, idx_neg, -1)], -1)
    return deltas, index


def important_positions(deltas: Float[Tensor, "p k d"], frac: float) -> Tensor:
    """``Bool[Tensor, "p k"]``: per pair, the positions whose delta norm is at least ``frac`` x that pair's
    largest (and non-zero). Per pair, so prompts of different lengths need no alignment."""
    norms = deltas.norm(dim=-1)
    top = norms.max(dim=1, keepdim=True).values
    return (norms >= frac * top) & (norms > 0)


def code_deltas(encode, pos_acts: Float[Tensor, "m d"], neg_acts: Float[Tensor, "m d"]) -> Float[Tensor, "m d_sae"]:
    """``encode(pos) - encode(neg)``: how each latent's activation changes from negative to positive."""
    import torch

    with torch.no_grad():
        return encode(pos_acts.float()) - encode(neg_acts.float())


def select_latents(
    codes: Float[Tensor, "m d_sae"], density: Float[Tensor, " d_sae"], min_consistency: float,
    max_density: float, max_latents: int,
) -> tuple[list[int], Tensor, bool]:  # fmt: skip
    """Latents consistently active in the code deltas and sparse overall (stage 4 of the module docstring).

    Returns:
        ``(latents, consistency, relaxed)``: the selected latent indices (best first), every latent's
        consistency (``Float[Tensor, "d_sae"]``, in 0..1), and whether no latent passed and the best one
        was kept anyway.
    """
    import torch

    mean = codes.mean(0)
    sign = torch.sign(mean)
    consistency = ((torch.sign(codes) == sign[None, :]) & (codes != 0)).float().mean(0) * (sign != 0)
    score = consistency * mean.abs()
    ok = (consistency >= min_consistency) & (density <= max_density) & (sign != 0)
    idx = [int(i) for i in torch.argsort(score, descending=True, stable=True) if bool(ok[i])][:max_latents]
    if idx:
        return idx, consistency, False
    if float(score.max()) <= 0:
        return [], consistency, True
    return [int(score.argmax())], consistency, True


def cluster_latents(profiles: Float[Tensor, "m k"], n_clusters: int) -> list[int]:
    """Cluster labels of the ``k`` latents (columns) by their profiles over the rows: scikit-learn
    ``AgglomerativeClustering`` with cosine distance and average linkage; one cluster when ``k < 2``."""
    k = profiles.shape[1]
    if k < 2 or n_clusters < 2:
        return [0] * k
    from sklearn.cluster import AgglomerativeClustering

    x = profiles.T.double().numpy()
    model = AgglomerativeClustering(n_clusters=min(n_clusters, k), metric="cosine", linkage="average")
    return [int(c) for c in model.fit_predict(x)]


def least_squares_weights(decoder: Float[Tensor, "k d"], deltas: Float[Tensor, "m d"]) -> Float[Tensor, " k"]:
    """Weights ``w`` minimising ``sum_i |delta_i - w @ decoder|^2``: the least-squares fit of each row
    (``torch.linalg.lstsq``, minimum-norm for a rank-deficient decoder), averaged over the rows."""
    import torch

    sol = torch.linalg.lstsq(decoder.double().T, deltas.double().T).solution  # k m
    return sol.mean(1).to(decoder.dtype)


def explained(vector: Float[Tensor, " d"], deltas: Float[Tensor, "m d"]) -> float:
    """R^2 of ``vector`` for the mean delta: ``1 - |mean - v|^2 / |mean|^2``."""
    mean = deltas.mean(0)
    return float(1 - (mean - vector).pow(2).sum() / mean.pow(2).sum().clamp_min(1e-12))


@dataclass
class ContrastiveConfig:
    """Options of ``contrastive``.

    Attributes:
        position_frac: important positions have a mean delta norm >= this x the largest.
        min_consistency: a latent is kept if active with a consistent sign in >= this share of the deltas.
        max_density: ... and active on at most this share of all train tokens (sparse).
        max_latents: at most this many latents per concept.
        n_clusters: clusters of the selected latents (scikit-learn agglomerative).
        arch: which of the subject's SAEs at the hook (``Subject.sae_variants``); empty = the default.
    """

    position_frac: float = 0.5
    min_consistency: float = 0.6
    max_density: float = 0.25
    max_latents: int = 32
    n_clusters: int = 4
    arch: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.position_frac <= 1 or not 0 <= self.min_consistency <= 1 or not 0 < self.max_density <= 1:
            raise ValueError("position_frac and max_density must be in (0, 1], min_consistency in [0, 1]")
        if self.max_latents < 1 or self.n_clusters < 1:
            raise ValueError("max_latents and n_clusters must be >= 1")


class Contrastive(Method):
    """Contrastive steering with clustered SAE latents (seed 004; close to FGAA): per concept, the latents
    consistently active in contrast-pair deltas, clustered, and a least-squares steering vector over them.

    Returns, per concept, the vector over all its selected latents (score 1 + R^2 of the deltas it
    explains) and one per cluster when there are several (score R^2): ``Float[Tensor, "n d_model"]``; the
    encoder is the SAE activations of those latents with the vector's weights. Needs ``ctx.pairs``.
    """

    name = "contrastive"
    description = "contrastive clustering of SAE latents in activation deltas; least-squares steering vector"
    supervision = "labels"
    Config = ContrastiveConfig
    needs = ("pairs",)

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.baselines.diffmean import counterpart

        cfg = self.config
        sae = ctx.require_sae(self.name, cfg.arch or None)
        if ctx.pairs is None:
            raise UserError(f"method {self.name} needs contrast pairs (ctx.pairs); this task gives none")
        pair = ctx.pairs
        token_acts = ctx.token_acts
        if token_acts is None:  # one position per row (the train activations), after a dummy BOS
            token_acts = torch.stack([torch.zeros_like(ctx.train_acts), ctx.train_acts], 1)
            lengths_ = torch.full((len(ctx.train_acts),), 2, dtype=torch.long)
        else:
            lengths_ = ctx.lengths
        ar = torch.arange(token_acts.shape[1])[None, :]
        tokens = token_acts[(ar > 0) & (ar < lengths_[:, None])]

        def encode(x):
            return sae.encode(x.float())

        with torch.no_grad():
            density = torch.zeros(sae.cfg.d_sae)
            for i in range(0, len(tokens), 4096):
                density += (encode(tokens[i : i + 4096]) > 0).float().sum(0)
            density /= max(len(tokens), 1)
        decoder = sae.W_dec.detach().float()
        labels, concepts = ctx.labels.bool(), list(ctx.concepts)
        poles = ctx.poles or {}
        targets = [c for c in concepts if c in poles and counterpart(c, concepts, poles)] or concepts

        dirs, names, scores, weights_cols, info = [], [], [], [], {}
        for c in targets:
            j = concepts.index(c)
            other = counterpart(c, concepts, poles)
            pos_rows = labels[:, j].nonzero().flatten()
            neg_rows = pair[pos_rows]
            ok = labels[neg_rows, concepts.index(other)] if other else ~labels[neg_rows, j]
            pos_rows, neg_rows = pos_rows[ok], neg_rows[ok]
            if len(pos_rows) == 0:
                continue
            deltas_all, index = pair_deltas(token_acts, lengths_, pos_rows, neg_rows)
            keep = important_positions(deltas_all, cfg.position_frac)
            if not bool(keep.any()):
                continue
            p_idx = torch.arange(len(pos_rows))[:, None].expand_as(keep)[keep]
            pos_acts = token_acts[pos_rows[p_idx], index[..., 0][keep]]
            neg_acts = token_acts[neg_rows[p_idx], index[..., 1][keep]]
            deltas = pos_acts.float() - neg_acts.float()
            offs, counts = torch.nonzero(keep)[:, 1].unique(return_counts=True)
            offsets = {int(o): int(c) for o, c in sorted(zip(offs.tolist(), counts.tolist(), strict=True),
                                                         key=lambda oc: -oc[1])[:10]}  # fmt: skip
            codes = code_deltas(encode, pos_acts, neg_acts)
            latents, consistency, relaxed = select_latents(
                codes, density, cfg.min_consistency, cfg.max_density, cfg.max_latents
            )
            if not latents:
                continue
            clusters = cluster_latents(codes[:, latents], cfg.n_clusters)
            groups = [("", latents)] + [
                (f"/cluster{k}", [a for a, g in zip(latents, clusters, strict=True) if g == k])
                for k in sorted(set(clusters)) if len(set(clusters)) > 1
            ]  # fmt: skip
            info[c] = {"pairs": len(pos_rows), "offsets": offsets, "rows": len(deltas), "latents": latents, "relaxed": relaxed,
                       "consistency": [round(float(consistency[a]), 4) for a in latents],
                       "density": [round(float(density[a]), 4) for a in latents], "clusters": {}}  # fmt: skip
            for suffix, group in groups:
                w = least_squares_weights(decoder[group], deltas)
                v = w @ decoder[group]
                r2 = explained(v, deltas)
                col = torch.zeros(sae.cfg.d_sae)
                col[torch.tensor(group)] = w
                dirs.append(v)
                names.append(c + suffix)
                scores.append((1.0 if not suffix else 0.0) + r2)
                weights_cols.append(col)
                entry = {"latents": group, "weights": [round(float(x), 5) for x in w], "r2": round(r2, 4)}
                if suffix:
                    info[c]["clusters"][suffix[1:]] = entry
                else:
                    info[c].update({"weights": entry["weights"], "r2": entry["r2"]})
        if not names:
            raise UserError(f"method {self.name}: no concept has contrast pairs with a consistent SAE latent")
        weights = torch.stack(weights_cols, 1)  # d_sae n

        def encoder(x):
            with torch.no_grad():
                return encode(x) @ weights

        return FeatureSet(
            ctx.hook_name,
            directions=torch.stack(dirs),
            encoder=encoder,
            labels=names,
            scores=torch.tensor(scores, dtype=torch.float32),
            meta={"concepts": info, "sae": {"arch": cfg.arch or "default", "d_sae": int(sae.cfg.d_sae)}},
        )
