"""The ``synthetic`` task: planted features of a SynthSAEBench world, with exact ground truth. Definitions: README.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import FeatureSet, Metric, Task, TaskData, UserError, check_task_config

logger = logging.getLogger(__name__)

#: seed offsets of the three splits (split seed = 10 * cell seed + offset; the SAE recipe uses >= 7e6)
SPLIT_SEEDS = {"train": 1, "label": 2, "test": 3}
#: seed of the choice of the planted features scored by per-feature detection (fixed: same for every cell)
CONCEPT_SEED = 0


@dataclass
class SyntheticConfig:
    """Options of the ``synthetic`` task (``-T key=value``).

    Attributes:
        n_train: samples of the train split (methods see their activations, and labels if supervised).
        n_label: samples of the label split (per-feature detection: feature and threshold chosen here).
        n_test: held-out samples (everything is scored here).
        n_concepts: planted features whose firing is a concept (labels for supervised methods, scored by
            per-feature detection): drawn with a fixed seed among the features expected to fire at least
            ``3 x min_positives`` times in the smaller of the label and test splits.
        min_positives: a concept is scored when it has this many positives and negatives in both splits.
        objective_rows: train samples the objective reads (first half chooses, second half scores).
        size_penalty: objective = detection coverage - size_penalty * |S|.
    """

    n_train: int = 8192
    n_label: int = 8192
    n_test: int = 8192
    n_concepts: int = 256
    min_positives: int = 10
    objective_rows: int = 4096
    size_penalty: float = 0.0

    def __post_init__(self) -> None:
        for k in ("n_train", "n_label", "n_test", "n_concepts", "min_positives", "objective_rows"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        check_task_config(self, ("objective_rows",))


def detection(
    label_acts: Any, label_labels: Any, test_acts: Any, test_labels: Any, min_positives: int
) -> dict[str, Metric]:
    """Per-feature detection of the planted features' firing: the shared concept metrics of every task
    (:func:`deeprobe_bench.metrics.concepts.concept_metrics`; its one call site in this task)."""
    from deeprobe_bench.metrics.concepts import concept_metrics

    return concept_metrics(label_acts, label_labels, test_acts, test_labels, min_positives=min_positives)


def concept_columns(world: Any, n_concepts: int, min_expected: float) -> list[int]:
    """The planted features scored by detection: ``n_concepts`` drawn (seed :data:`CONCEPT_SEED`) among the
    features whose firing probability ``p`` (the world's, after hierarchy compensation) gives
    ``p >= min_expected``; the most frequent ones when fewer qualify. Sorted."""
    import torch

    p = world.activation_generator.firing_probabilities.detach().float()
    eligible = torch.nonzero(p >= min_expected).flatten()
    if len(eligible) <= n_concepts:
        return sorted(torch.argsort(p, descending=True, stable=True)[: min(n_concepts, len(p))].tolist())
    gen = torch.Generator().manual_seed(CONCEPT_SEED)
    pick = eligible[torch.randperm(len(eligible), generator=gen)[:n_concepts]]
    return sorted(pick.tolist())


def _row_index(acts: Any) -> dict[bytes, int]:
    index: dict[bytes, int] = {}
    for i, r in enumerate(acts.float().numpy()):
        index.setdefault(r.tobytes(), i)
    return index


class SyntheticTask(Task):
    """Planted features of a synthetic world (SynthSAEBench-style): activations that are sums of known
    feature directions, so the ground truth is exact.

    Scores the fraction of planted features ``recovered`` (a found direction at ``|cos| > 0.9``; range
    [0, 1]), ``recovery`` and ``precision`` (mean best ``|cos|`` each way), the Hungarian-matched mean
    correlation of directions and of activations (``mcc_directions``, ``mcc_activations``), with L0 and
    explained variance for SAEs. Definitions: this folder's README.
    """

    name = "synthetic"
    description = "planted features of a SynthSAEBench world (exact ground truth): recovery, MCC, detection"
    version = "1"
    Config = SyntheticConfig
    primary_metric = "recovered"
    default_model = "synth-4k"

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        """Three splits of i.i.d. samples of the world (seeded by the cell seed); see README.md.

        Raises:
            UserError: the subject is not a synthetic world.
        """
        from deeprobe_bench.tasks.synthetic import data as sdata
        from deeprobe_bench.tasks.synthetic.worlds import HOOK

        world = getattr(subject, "model", None)
        if not hasattr(world, "feature_dict") or not hasattr(world, "sample_with_features"):
            raise UserError(
                f"task synthetic needs a synthetic world as its model (synth-4k, synth-16k), got {getattr(subject, 'name', subject)!r}"
            )
        cfg = self.config
        sizes = {"train": cfg.n_train, "label": cfg.n_label, "test": cfg.n_test}
        if limit is not None:
            sizes = {k: min(v, limit) for k, v in sizes.items()}
        splits = {k: sdata.sample(world, n, 10 * seed + SPLIT_SEEDS[k]) for k, n in sizes.items()}
        min_expected = 3 * cfg.min_positives / min(sizes["label"], sizes["test"])
        cols = concept_columns(world, cfg.n_concepts, min_expected)
        concepts = [f"feature_{i}" for i in cols]
        labels = {k: s.fires(cols) for k, s in splits.items()}
        planted = world.feature_dict.feature_vectors.detach().float()
        info = {
            "hook": HOOK,
            "world": getattr(subject, "name", ""),
            "num_features": int(world.cfg.num_features),
            "hidden_dim": int(world.cfg.hidden_dim),
            "split_sizes": sizes,
            "split_seeds": {k: 10 * seed + SPLIT_SEEDS[k] for k in sizes},
            "n_concepts": len(cols),
            "concept_columns": cols,
            "true_l0_test": float(splits["test"].features.values().numel() / max(len(splits["test"]), 1)),
            "positions": "one i.i.d. sample per row (no tokens, no positions)",
        }
        out = TaskData(
            hook_name=HOOK,
            train_acts=splits["train"].acts,
            train_labels=labels["train"],
            concepts=concepts,
            n_train=sizes["train"],
            n_test=sizes["test"],
            extra={"splits": splits, "labels": labels, "planted": planted, "columns": cols, "world": world},
            info=info,
        )
        for k in ("label", "test"):
            out.add_reference_rows(HOOK, splits[k].acts, labels[k])
        return out

    # ------------------------------------------------------------------ objective (train split)

    def objective(self, data: TaskData, features: FeatureSet) -> float:
        """Detection coverage of the chosen set on the train split: features and thresholds chosen on the
        first half of ``objective_rows`` train samples, scored on the second half, minus
        ``size_penalty * |S|``. Reads train labels only."""
        fs = features.chosen()
        if len(fs) == 0:
            return 0.0
        n = min(self.config.objective_rows, data.n_train)
        h = n // 2
        acts = fs.encoder(data.train_acts[:n]).float()
        lab = data.train_labels[:n]
        m = detection(acts[:h], lab[:h], acts[h:], lab[h:], self.config.min_positives)
        return float(m["coverage"].value) - self.config.size_penalty * len(fs)

    # ------------------------------------------------------------------ evaluation (test split)

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Any]:
        """Feature recovery, MCC, per-feature detection and (dictionaries) explained variance / L0, on the
        method's chosen set; definitions in README.md."""
        import torch

        from deeprobe_bench.tasks.synthetic.metrics import mcc_activations, recovery

        fs = features.chosen()
        splits, labels, planted = data.extra["splits"], data.extra["labels"], data.extra["planted"]
        if fs.hook_name != data.hook_name:
            raise UserError(f"task synthetic has one hook, {data.hook_name}; the features are at {fs.hook_name}")
        out: dict[str, Any] = {}
        details: dict[str, Any] = {"n_features": len(fs)}
        if len(fs) == 0:
            raise UserError("the method returned no features to score")
        test_x = splits["test"].acts
        with torch.no_grad():
            label_acts = fs.encoder(splits["label"].acts).float()
            test_acts = fs.encoder(test_x).float()
        dirs = fs.directions.detach().float()
        if dirs.shape[1] == planted.shape[1]:
            rec = recovery(dirs, planted)
            out["recovered"] = Metric(rec["recovered"])
            out["recovery"] = Metric(rec["recovery"])
            out["precision"] = Metric(rec["precision"])
            out["mcc_directions"] = Metric(rec["mcc_directions"])
        else:
            details["recovery_skipped"] = f"directions of width {dirs.shape[1]}, world of width {planted.shape[1]}"
        out["mcc_activations"] = Metric(mcc_activations(test_acts, splits["test"].features))
        out.update(detection(label_acts, labels["label"], test_acts, labels["test"], self.config.min_positives))
        if features.meta.get("latents") is not None or features.meta.get("dictionary"):
            active = test_acts != 0
            out["l0"] = Metric(float(active.float().sum(1).mean()), higher_is_better=False)
            if dirs.shape[1] == test_x.shape[1]:
                intercept = test_x.mean(0) - test_acts.mean(0) @ dirs
                recon = intercept + test_acts @ dirs
                sse = float(((test_x - recon) ** 2).sum())
                sst = float(((test_x - test_x.mean(0)) ** 2).sum())
                out["explained_variance"] = Metric(1 - sse / sst)
        out["_details"] = details
        return out

    # ------------------------------------------------------------------ oracle

    def oracle_features(self, data: TaskData, seed: int) -> FeatureSet:
        """The planted dictionary: every planted direction ``v_i``, with an encoder that returns the true
        activations ``a_i`` of the task's own samples (looked up by the exact bytes of the row; rows it
        does not know get 0). Perfect by construction on every metric of this task."""
        import torch

        splits = data.extra["splits"]
        acts = torch.cat([s.acts for s in splits.values()])
        feats = torch.cat([s.features for s in splits.values()]).coalesce()
        index = _row_index(acts)
        planted = data.extra["planted"]

        def encoder(x: Any) -> Any:
            flat = x.detach().float().reshape(-1, x.shape[-1])
            rows = torch.tensor([index.get(r.tobytes(), -1) for r in flat.numpy()], dtype=torch.long)
            out = torch.zeros(flat.shape[0], planted.shape[0])
            hit = torch.nonzero(rows >= 0).flatten()
            if len(hit):
                out[hit] = feats.index_select(0, rows[hit]).to_dense()
            return out.reshape(*x.shape[:-1], planted.shape[0])

        return FeatureSet(
            hook_name=data.hook_name,
            directions=planted.clone(),
            encoder=encoder,
            meta={
                "reference": "oracle",
                "oracle": "the planted dictionary and the true activations",
                "dictionary": True,
            },
        )
