"""``diffmean``: the mean difference of activations per concept (CAA; AxBench's DiffMean).

Contrastive Activation Addition (Panickssery et al. 2023, nrimsky/CAA) steers with the mean difference of
the activations at the answer position between behaviour-matching and non-matching answers; AxBench (Wu
et al. 2025, arXiv 2501.17148) calls the same vector DiffMean and scores concept detection with the
projection onto it (AUROC 0.942, the best of its methods).

For each concept ``c`` of the task's label columns (``ctx.concepts``), the direction is

    mean(train rows labelled c) - mean(train rows labelled c')

where ``c'`` is the opposite pole when the task says the concept has one (``ctx.poles``, e.g. the persona
task's ``agreeableness+`` / ``agreeableness-``), else every row not labelled ``c``. The encoder is the projection ``x . v``.
Features are ranked by the separation of their projection on the train rows (Cohen's d: difference of
the two class means of the projection over their pooled standard deviation).
Supervision ``labels``: it sees the train split's concept labels, never the test split.
"""

from __future__ import annotations

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, UserError


def counterpart(concept: str, concepts: list[str], poles: dict[str, str] | None) -> str | None:
    """The opposite pole of ``concept`` by the task's ``poles`` (``{positive: negative}``, either way round) when it
    is among ``concepts``, else None."""
    if not poles:
        return None
    other = poles.get(concept) or next((pos for pos, neg in poles.items() if neg == concept), None)
    return other if other in concepts else None


def contrast_rows(labels, concepts: list[str], j: int, poles: dict[str, str] | None = None):
    """``(positive, negative)`` boolean row masks of concept ``j`` (``labels: Bool[Tensor, "n n_concepts"]`` ->
    two ``Bool[Tensor, "n"]``): its rows, and its counterpart's rows by ``poles`` (or every other row when it has
    no counterpart)."""
    pos = labels[:, j].bool()
    other = counterpart(concepts[j], concepts, poles)
    neg = labels[:, concepts.index(other)].bool() if other is not None else ~pos
    return pos, neg & ~pos


class DiffMean(Method):
    """DiffMean / CAA (Panickssery et al. 2023; Wu et al. 2025): per concept, mean(rows labelled c) minus
    mean(rows of its opposite pole, else the rest), with the projection ``x . v`` as encoder.

    Returns one direction per concept with two or more rows on each side (``Float[Tensor, "concepts
    d_model"]``), scores = the standardised separation of the projection on the train rows.
    """

    name = "diffmean"
    description = "mean difference of activations per concept (CAA, AxBench DiffMean); projection encoder"
    supervision = "labels"

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        x = ctx.train_acts.float()
        dirs, names, scores = [], [], []
        for j, concept in enumerate(ctx.concepts):
            pos, neg = contrast_rows(ctx.labels, ctx.concepts, j, ctx.poles)
            if pos.sum() < 1 or neg.sum() < 1:
                continue
            v = x[pos].mean(0) - x[neg].mean(0)
            proj_pos, proj_neg = x[pos] @ v, x[neg] @ v
            pooled = torch.cat([proj_pos - proj_pos.mean(), proj_neg - proj_neg.mean()]).std()
            dirs.append(v)
            names.append(concept)
            scores.append(float((proj_pos.mean() - proj_neg.mean()) / pooled.clamp_min(1e-12)))
        if not names:
            raise UserError("diffmean: no concept has train rows on both sides")
        w = torch.stack(dirs)
        return FeatureSet(
            ctx.hook_name,
            directions=w,
            encoder=lambda a: a.float() @ w.T,
            labels=names,
            scores=torch.tensor(scores, dtype=torch.float32),
            meta={"contrast": {c: counterpart(c, ctx.concepts, ctx.poles) or "rest" for c in names}},
        )
