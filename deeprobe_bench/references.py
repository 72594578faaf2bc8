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
- ``null`` (supervision ``null``, given no more than ``none``): features that carry no information about
  the input: a **constant** feature (1 everywhere) and ``n_noise`` **noise** features (i.i.d. standard
  normal values, independent of every row's content), each with a seeded random unit direction. The
  constant feature is the always-on classifier, F1 = 2p / (1 + p) on a concept of base rate p, which
  chance-corrected metrics put at 0; the noise features put the judge at chance (0.5) with a spread a
  single feature cannot give (``judge_score`` is a mean over the judged features: one noise feature scored
  0.5, 0.6 and 0.9 on three seeds of the published othello table, 10 detection rows each).

  The noise is a function of the input *tensor* (drawn from a generator seeded by the cell's seed and a
  hash of the tensor's bytes): encoding the same activations twice gives the same values, as for any
  encoder, and two different tensors (the label and the test split, the judge's examples) get independent
  draws. It is not a function of each *row*: a hash of the row would give identical rows (the opening
  positions every game shares) identical values in every split, a lookup feature that the label split
  could select and the test split would reward.
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
        features: which uninformative features to return: ``both`` (the constant, then the noise features),
            ``constant`` or ``noise``.
        n_noise: how many noise features (9: with the constant, the judge's 10 best-ranked features).
    """

    features: str = "both"
    n_noise: int = 9

    def __post_init__(self) -> None:
        if self.features not in ("both", "constant", "noise"):
            raise ValueError(f"features={self.features!r}: expected both, constant or noise")
        if self.n_noise < 1:
            raise ValueError(f"n_noise must be >= 1, got {self.n_noise}")


def tensor_noise(x: Any, n: int, seed: int) -> Any:
    """Standard normal noise ``Float[Tensor, "... n"]`` for activations ``x`` (``"... d"``), drawn from a
    generator seeded by ``seed`` and the blake2b hash of ``x``'s shape and float32 bytes: the same for the
    same tensor, independent of its content otherwise."""
    import hashlib

    import torch

    flat = x.detach().float().contiguous()
    digest = hashlib.blake2b(repr(tuple(flat.shape)).encode() + flat.numpy().tobytes(), digest_size=8).digest()
    gen = torch.Generator().manual_seed((int.from_bytes(digest, "little") ^ (10_007 * seed + 2)) % 2**63)
    return torch.randn(*x.shape[:-1], n, generator=gen)


class Null(Method):
    """A constant and noise features: the chance level of every metric (``calibrate``)."""

    name = "null"
    description = "reference floor: a constant feature and seeded noise features (never ranked)"
    supervision = "null"
    version = "2"  # 2: n_noise noise features (was one), each drawn as a function of the input tensor
    Config = NullConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        cfg, seed = self.config, ctx.seed
        constant = cfg.features != "noise"
        n_noise = cfg.n_noise if cfg.features != "constant" else 0
        names = ["constant"] * constant + [f"noise{j}" for j in range(n_noise)]
        gen = torch.Generator().manual_seed(10_007 * seed + 1)
        directions = torch.randn(len(names), int(ctx.train_acts.shape[-1]), generator=gen)
        directions = directions / directions.norm(dim=-1, keepdim=True)

        def encoder(x: Any) -> Any:
            parts = [torch.ones(*x.shape[:-1], 1)] if constant else []
            if n_noise:
                parts.append(tensor_noise(x, n_noise, seed))
            return torch.cat(parts, dim=-1)

        return FeatureSet(hook_name=ctx.hook_name, directions=directions, encoder=encoder,
                          meta={"reference": "null", "features": names})  # fmt: skip


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
