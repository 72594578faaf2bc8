"""``probe``: one logistic-regression probe per concept, the supervised upper bound.

For each concept of the task's label columns (``ctx.concepts``) with at least two positive and two
negative train rows, a scikit-learn ``LogisticRegression`` (L2, ``C``, balanced class weights, so a rare
concept is not fitted as "never") is fit on the train activations. Its weight vector is the feature's
direction. Its activation is the *calibrated* probability ``sigmoid(w . x + b + log(pi / (1 - pi)))``, with
``pi`` the concept's train base rate: balanced weights fit the model as if both classes had prior 1/2, and
adding the log prior odds to the logit restores the true prior (the prior correction of King & Zeng 2001,
"Logistic Regression in Rare Events Data"). Without it a rare concept's probability is inflated, and the
board-game tagging rule (precision >= 0.95 at a threshold of the activation) rejects the probe.
Features are ranked by their F1 on the train rows at probability 0.5 of the balanced fit.
Supervision ``labels``: it sees the train split's concept labels, never the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, UserError


@dataclass
class ProbeConfig:
    """Options of ``probe``.

    Attributes:
        C: inverse L2 regularisation strength of the logistic regressions.
        max_iter: solver iterations.
    """

    C: float = 1.0
    max_iter: int = 1000

    def __post_init__(self) -> None:
        if self.C <= 0:
            raise ValueError("C must be > 0")


class Probe(Method):
    name = "probe"
    version = "2"  # 2: calibrated activation (prior correction)
    description = "logistic-regression probe per concept (scikit-learn); the supervised upper bound"
    supervision = "labels"
    Config = ProbeConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import numpy as np
        import torch
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score

        x = ctx.train_acts.float().numpy()
        y_all = ctx.labels.numpy()
        weights, biases, names, scores = [], [], [], []
        for j, concept in enumerate(ctx.progress(ctx.concepts, desc="probes", total=len(ctx.concepts))):
            y = y_all[:, j]
            if y.sum() < 2 or (~y).sum() < 2:
                continue
            clf = LogisticRegression(
                C=self.config.C, max_iter=self.config.max_iter, class_weight="balanced", random_state=ctx.seed
            )
            clf.fit(x, y)
            prior = float(y.mean())
            weights.append(clf.coef_[0])
            biases.append(clf.intercept_[0] + np.log(prior / (1 - prior)))
            names.append(concept)
            scores.append(f1_score(y, clf.predict(x)))
        if not names:
            raise UserError("probe: no concept has two positive and two negative train examples")
        w = torch.tensor(np.stack(weights), dtype=torch.float32)
        b = torch.tensor(biases, dtype=torch.float32)
        return FeatureSet(
            ctx.hook_name,
            directions=w,
            encoder=lambda a: torch.sigmoid(a.float() @ w.T + b),
            labels=names,
            scores=torch.tensor(scores, dtype=torch.float32),
            meta={"n_concepts": len(ctx.concepts), "n_probes": len(names)},
        )
