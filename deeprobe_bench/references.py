"""The reference methods every task can run: the ceiling (``oracle``) and floor (``null``) of its metrics.

A metric is valid only when a feature set whose answer is known scores as it should: a *perfect* set near
1 and an *uninformative* one at chance (DESIGN.md, "Calibration"; REFERENCE.md section 9). These two
methods are those sets. They register through the same entry points as every method, so every task runs
them, ``deeprobe-bench calibrate`` runs both, and every leaderboard shows them as reference rows (their
supervisions ``oracle`` and ``null`` are shown, never ranked).

- ``oracle`` (supervision ``oracle``): the task's own ground-truth feature set on every split it scores,
  :meth:`deeprobe_bench.api.Task.oracle_features`. For tasks whose truth is concept labels the default is
  :func:`label_lookup_features`: one feature per concept whose activation *is* the concept's label on
  each registered row, and whose direction is the concept's class-conditional mean difference.
- ``null`` (supervision ``null``, given no more than ``none``): two features that carry no information
  about the input: a **constant** feature (1 everywhere) and a **noise** feature (i.i.d. standard normal
  values drawn from the cell's seed, independent of the input), each with a seeded random unit direction.
  The constant feature is the always-on classifier, F1 = 2p / (1 + p) on a concept of base rate p, which
  chance-corrected metrics put at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, TaskData, UserError


class Oracle(Method):
    """The task's ground truth as a feature set: the ceiling of every metric (``calibrate``)."""

    name = "oracle"
    description = "reference ceiling: features that read the task's own ground truth (never ranked)"
    supervision = "oracle"

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        if ctx.oracle is None:  # pragma: no cover - the runner always sets it for supervision "oracle"
            raise UserError("method oracle needs the task's ground truth (supervision 'oracle')")
        return ctx.oracle()


@dataclass
class NullConfig:
    """Options of ``null``.

    Attributes:
        features: which uninformative features to return: ``both`` (constant, then noise),
            ``constant`` or ``noise``.
    """

    features: str = "both"

    def __post_init__(self) -> None:
        if self.features not in ("both", "constant", "noise"):
            raise ValueError(f"features={self.features!r}: expected both, constant or noise")


class Null(Method):
    """A constant and a noise feature: the chance level of every metric (``calibrate``)."""

    name = "null"
    description = "reference floor: a constant feature and a seeded noise feature (never ranked)"
    supervision = "null"
    Config = NullConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        d = int(ctx.train_acts.shape[-1])
        gen = torch.Generator().manual_seed(10_007 * ctx.seed + 1)
        directions = torch.randn(2, d, generator=gen)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        noise_gen = torch.Generator().manual_seed(10_007 * ctx.seed + 2)

        def encoder(x: Any) -> Any:
            const = torch.ones(*x.shape[:-1], 1, dtype=torch.float32)
            noise = torch.randn(*x.shape[:-1], 1, generator=noise_gen)
            return torch.cat([const, noise], dim=-1)

        fs = FeatureSet(
            hook_name=ctx.hook_name,
            directions=directions,
            encoder=encoder,
            meta={"reference": "null", "features": ["constant", "noise"]},
        )
        keep = {"both": [0, 1], "constant": [0], "noise": [1]}[self.config.features]
        if keep == [0, 1]:
            return fs
        sub = fs.subset(keep)
        sub.meta = {"reference": "null", "features": [fs.meta["features"][i] for i in keep]}
        return sub


def label_lookup_features(data: TaskData, seed: int) -> FeatureSet:
    """The default oracle: one feature per concept that reads the concept's label on the task's rows.

    The encoder maps an activation row to the labels registered for that exact row
    (:meth:`TaskData.add_reference_rows`, matched by the bytes of the row; a row matching none
    is matched to its nearest registered row when that lies within a relative distance of 1e-4, so
    activations recomputed in another batch still match) and to 0 for rows it does not know. Each
    feature's direction is its concept's class-conditional mean difference over the registered rows
    (DiffMean), so interventions along it are meaningful too.

    Returns:
        A FeatureSet at the task's hook with ``n_concepts`` features, ``labels`` = the concept names,
        encoder ``Float[Tensor, "... d_model"] -> Float[Tensor, "... n_concepts"]`` with values in {0, 1}.

    Raises:
        UserError: the task registered no labelled rows (it has no concept labels and no oracle of its own).
    """
    import torch

    rows = [(a, lab) for hook, a, lab in data.reference_rows if hook == data.hook_name]
    if not rows or data.concepts is None:
        raise UserError(
            "this task has no oracle: it registers no labelled rows (TaskData.add_reference_rows) "
            "and does not override Task.oracle_features"
        )
    acts = torch.cat([a.float() for a, _ in rows])
    labels = torch.cat([lab.float() for _, lab in rows])
    index: dict[bytes, int] = {}
    for i, r in enumerate(acts.numpy()):
        index.setdefault(r.tobytes(), i)
    pos = labels.sum(0)
    neg = len(labels) - pos
    mean_pos = labels.T @ acts / pos.clamp(min=1).unsqueeze(1)
    mean_neg = (1 - labels).T @ acts / neg.clamp(min=1).unsqueeze(1)
    directions = mean_pos - mean_neg
    scale = acts.norm(dim=1).mean().clamp(min=1e-12)

    def encoder(x: Any) -> Any:
        flat = x.detach().float().reshape(-1, x.shape[-1])
        out = torch.zeros(flat.shape[0], labels.shape[1])
        found = torch.full((flat.shape[0],), -1, dtype=torch.long)
        for j, r in enumerate(flat.numpy()):
            found[j] = index.get(r.tobytes(), -1)
        miss = (found < 0).nonzero().flatten()
        for start in range(0, len(miss), 1024):
            m = miss[start : start + 1024]
            dist = torch.cdist(flat[m], acts)
            best = dist.min(dim=1)
            ok = best.values <= 1e-4 * scale
            found[m[ok]] = best.indices[ok]
        hit = found >= 0
        out[hit] = labels[found[hit]]
        return out.reshape(*x.shape[:-1], labels.shape[1])

    return FeatureSet(
        hook_name=data.hook_name,
        directions=directions,
        encoder=encoder,
        labels=list(data.concepts),
        meta={"reference": "oracle", "oracle": "concept labels of the task's rows (label lookup)",
              "n_rows": int(len(acts))},
    )  # fmt: skip
