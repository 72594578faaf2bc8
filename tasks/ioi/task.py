"""The ``ioi`` task: indirect object identification (Wang et al. 2022). Definitions: README.md."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import FeatureSet, Metric, Task, TaskData, UserError, check_subset, check_task_config

logger = logging.getLogger(__name__)


@dataclass
class IOIConfig:
    """Options of the ``ioi`` task (``-T key=value``).

    Attributes:
        hook: hook point studied; default the model card's task hook, else the subject's first SAE hook.
        positions: where keep / ablate interventions apply (of IO, S1, S2, END).
        n_train: prompts of the train split (methods see these).
        n_val: in-distribution prompts scored for attribute coverage.
        n_test: held-out prompts (held-out names and templates) for faithfulness.
        objective_batch: train prompts the objective evaluates (a fixed subsample, FUSE's cheap reward).
        size_penalty: objective = faithfulness - size_penalty * |S|.
        reuse_below_hook: start forward passes at the hook from cached activations (``start_at_layer``).
        min_positives: an attribute value enters ``attribute_coverage`` with this many positive and negative
            prompts in both the train and the val split (5: with 80 names, 512 train and 1000 val prompts
            score 123 of the 162 values; 10 would leave about 3).
        agreement_features: the best-ranked features of a scored set whose ranking is compared with exact
            patching on the test prompts (``agreement_spearman``, ``agreement_top10_recall``).
        agreement_prompts: the first this many test prompts are patched for it (one forward pass per 8 features
            per batch of prompts: 128 prompts keep it a few seconds a cell on ioi-mini).
    """

    hook: str | None = None
    positions: tuple[str, ...] = ("END", "S2")
    n_train: int = 512
    n_val: int = 1000
    n_test: int = 500
    objective_batch: int = 128
    size_penalty: float = 0.01
    reuse_below_hook: bool = True
    min_positives: int = 5
    agreement_features: int = 50
    agreement_prompts: int = 128

    def __post_init__(self) -> None:
        from deeprobe_bench.tasks.ioi.metrics import POSITION_NAMES

        check_subset("positions", self.positions, POSITION_NAMES)
        check_task_config(self, ("n_train", "n_val", "n_test", "objective_batch", "agreement_features", "agreement_prompts"))


class IOITask(Task):
    """Indirect object identification (Wang et al. 2022): "When Mary and John went to the store, John gave
    a drink to" -> " Mary", scored with the logit difference of the indirect object over the subject.

    Scores ``faithfulness_cpr`` (the area of the faithfulness curve over the fraction of the activation
    kept, range about [0, 1]), faithfulness, necessity and size of a feature set at the S2 / END positions,
    ``attribute_coverage`` of the IOI variables, and the ranking ``agreement`` of its scores with exact
    patching. Provides the behaviour (clean / ABC prompts and the metric) for patching methods.
    """

    name = "ioi"
    description = "indirect object identification (Wang et al. 2022): faithfulness + attribute coverage"
    # 4: ranking agreement computed here, on the test prompts, for every set with scores; 3: calibrated metrics:
    # CPR over the fraction of the stream kept, size = rank of the span, attribute coverage chance-corrected
    # and chosen on train; 2: faithfulness_cpr, attribution agreement
    version = "4"
    Config = IOIConfig
    primary_metric = "faithfulness_cpr"
    provides = ("site_acts", "behaviour")
    default_model = "ioi-mini"
    _FAITH = "ceiling unknown: the smallest subspace that carries the behaviour is not known (README)"
    _RANK = ("a ranking's agreement with exact patching, for sets with scores: the exact order scores 1, a random "
             "order about 0 (Spearman) and 10 / n (recall), tests/unit/test_ranking.py")
    _HEADS = "for sets of attention heads, on a model whose card names its IOI circuit heads"
    calibration_notes = {
        "faithfulness_cpr": _FAITH, "faithfulness": _FAITH, "necessity": _FAITH,
        "size": "a rank, not a score", "size_fraction": "a fraction of d_model, not a score",
        "full_span": "a flag: the kept span covers (nearly) the whole stream",
        "attribute_coverage_paper": "the paper's figure, uncorrected for chance and chosen on the scored split",
        "agreement_spearman": _RANK, "agreement_top10_recall": _RANK,
        "head_precision": _HEADS, "head_recall": _HEADS,
    }  # fmt: skip

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        import torch

        from deeprobe_bench.progress import progress
        from deeprobe_bench.tasks.ioi import metrics as ioi_metrics
        from deeprobe_bench.tasks.ioi.data import TRAIN_NAMES

        cfg = self.config
        hook = cfg.hook or subject.card.get("task", {}).get("hook_name") or next(iter(subject.saes), None)
        if hook is None:
            raise UserError(f"model {subject.name} names no hook for ioi and has no SAE; pass -T hook=...")
        sizes = {s: getattr(cfg, f"n_{s}") for s in ("train", "val", "test")}
        if limit is not None:
            sizes = {s: min(n, limit) for s, n in sizes.items()}
        splits = {
            s: ioi_metrics.build_split(subject, s, n, seed, hook, cfg.positions, progress=progress) for s, n in sizes.items()
        }
        gen = torch.Generator().manual_seed(seed)
        obj_idx = torch.randperm(len(splits["train"]), generator=gen)[: cfg.objective_batch]
        objective_split = splits["train"].rows(obj_idx)
        train_labels, concepts = ioi_metrics.concept_labels(splits["train"].dataset, TRAIN_NAMES)
        val_labels, _ = ioi_metrics.concept_labels(splits["val"].dataset, TRAIN_NAMES)
        base = {
            "objective": ioi_metrics.baseline(subject, objective_split, hook),
            "test": ioi_metrics.baseline(subject, splits["test"], hook),
        }
        logger.info(
            "ioi on %s at %s: test logit diff clean %.3f, empty %.3f",
            subject.name, hook, base["test"].m_all, base["test"].m_empty,
        )  # fmt: skip
        data = TaskData(
            hook_name=hook,
            train_acts=ioi_metrics.end_acts(splits["train"]),
            train_labels=train_labels,
            concepts=concepts,
            n_train=len(splits["train"]),
            n_test=len(splits["test"]),
            site_acts=ioi_metrics.site_acts(splits["train"]),
            examples={"train": ioi_metrics.example_set(splits["train"], train_labels, concepts),
                      "eval": ioi_metrics.example_set(splits["val"], val_labels, concepts)},  # fmt: skip
            behaviour=ioi_metrics.behaviour(objective_split),
            extra={"subject": subject, "splits": splits, "objective_split": objective_split, "base": base,
                   "val_labels": val_labels},  # fmt: skip
            info={
                "hook_name": hook,
                "ablation": "mean over ABC counterfactual prompts, per template and order (Wang et al. 2022)",
                "intervention": "keep: mean + P_S (x - mean); ablate: x - P_S (x - mean)",
                "positions": list(cfg.positions),
                "splits": {s: len(sp) for s, sp in splits.items()},
                "test_split": "held-out names and templates",
                "logit_diff_clean_test": base["test"].m_all,
                "logit_diff_empty_test": base["test"].m_empty,
                "behaviour": "logit difference, IOI prompts vs their ABC prompts, the objective's train prompts",
            },
        )
        for name, labels in (("train", train_labels), ("val", val_labels)):  # the rows attribute coverage scores
            data.add_reference_rows(hook, ioi_metrics.end_acts(splits[name]), labels)
        return data

    def objective(self, data: TaskData, features: FeatureSet) -> float:
        """Faithfulness of the chosen set on the fixed train subsample minus ``size_penalty * |S|``."""
        from deeprobe_bench.tasks.ioi import metrics as ioi_metrics

        chosen = features.chosen()
        f, _ = ioi_metrics.faithfulness(
            data.extra["subject"], data.extra["objective_split"], data.hook_name, data.extra["base"]["objective"],
            chosen, reuse_below_hook=self.config.reuse_below_hook,
        )  # fmt: skip
        return f - self.config.size_penalty * len(chosen)

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Any]:
        import torch

        from deeprobe_bench.metrics import concepts, threshold_sweep
        from deeprobe_bench.metrics import faithfulness as faith
        from deeprobe_bench.tasks.ioi import metrics as ioi_metrics

        subject, test, base = data.extra["subject"], data.extra["splits"]["test"], data.extra["base"]["test"]
        hook = data.hook_name
        chosen = features.chosen()
        d_model = int(data.train_acts.shape[-1])
        f, f_se = ioi_metrics.faithfulness(subject, test, hook, base, chosen)
        nec, nec_se = ioi_metrics.faithfulness(subject, test, hook, base, chosen, mode="ablate")
        curve = faith.stream_curve(lambda k: ioi_metrics.faithfulness(subject, test, hook, base, features.top(k))[0],
                                   features.directions.float(), features.ranking())  # fmt: skip
        rank = faith.span_rank(chosen.directions.float())
        full_span = rank >= faith.FULL_SPAN * d_model
        # Attribute coverage: feature and threshold chosen on the train prompts (label split), scored on val.
        label_acts, label_labels = ioi_metrics.end_acts(data.extra["splits"]["train"]), data.train_labels
        val_acts, val_labels = ioi_metrics.end_acts(data.extra["splits"]["val"]), data.extra["val_labels"]
        with torch.no_grad():
            lab_f, val_f = chosen.encoder(label_acts).float(), chosen.encoder(val_acts).float()
        cov = concepts.coverage(lab_f, label_labels, val_f, val_labels, self.config.min_positives)
        paper = threshold_sweep.coverage(val_f, val_labels[:, val_labels.any(0)])
        per_attr = {attr: cov.mean_over([i for i, c in enumerate(data.concepts) if c.startswith(attr + "=")])
                    for attr in ("IO", "S", "Pos")}  # fmt: skip
        metrics: dict[str, Any] = {
            "faithfulness_cpr": Metric(curve.cpr),
            "faithfulness": Metric(f, stderr=f_se),
            "necessity": Metric(nec, stderr=nec_se),
            "size": Metric(float(rank), higher_is_better=False),
            "size_fraction": Metric(rank / d_model, higher_is_better=False),
            "full_span": Metric(float(full_span), higher_is_better=False),
            "attribute_coverage": Metric(cov.value),
            "attribute_coverage_paper": Metric(paper.value),
        }
        details: dict[str, Any] = {
            "faithfulness_curve": curve.to_dict(),
            "size": {"rank": rank, "d_model": d_model, "n_features": len(chosen),
                     "full_span": bool(full_span), "full_span_at": faith.FULL_SPAN},  # fmt: skip
            "attribute_coverage": {"per_attribute": per_attr, "choose_on": "train", "score_on": "val",
                                   "concepts_scored": cov.n_scored, "concepts": len(data.concepts),
                                   "min_positives": self.config.min_positives,
                                   "paper_threshold": paper.threshold},  # fmt: skip
        }
        if features.scores is not None and len(features) >= 2 and features.directions.shape[-1] == d_model:
            metrics.update(self._agreement(features, subject, test, hook, details))
        heads, circuit = features.meta.get("heads"), ioi_metrics.known_circuit(subject)
        if heads is not None and circuit is not None:  # the model card names its known IOI circuit
            p, r = ioi_metrics.head_precision_recall(heads, circuit)
            metrics["head_precision"], metrics["head_recall"] = Metric(p), Metric(r)
        metrics["_details"] = details
        return metrics

    def _agreement(self, features: FeatureSet, subject: Any, test: Any, hook: str, details: dict[str, Any]):
        """Ranking agreement of the method's scores with exact patching of its features on the test prompts.

        The ``agreement_features`` best-ranked features are each patched alone from the clean to the ABC
        prompt at the task positions (:func:`deeprobe_bench.metrics.ranking.feature_patching`); the method's
        scores are compared with those exact effects (by absolute value): Spearman's rank correlation and the
        recall of the exact top 10 among the method's top 10 (:func:`deeprobe_bench.metrics.ranking.agreement`).
        Any method that returns scores gets them, the way AtP* and Sparse Feature Circuits judge an
        attribution by exact patching (REFERENCE.md section 3); a random ranking scores about 0 and 10 / n.
        """
        import torch

        from deeprobe_bench.metrics import ranking
        from deeprobe_bench.tasks.ioi import metrics as ioi_metrics

        top = features.top(self.config.agreement_features)
        t0 = time.perf_counter()
        prompts = test.rows(torch.arange(min(len(test), self.config.agreement_prompts)))
        exact = ranking.feature_patching(subject.model, hook, ioi_metrics.behaviour(prompts), top)
        agree = ranking.agreement(top.scores, exact, ks=(10,))
        details["agreement"] = {**agree, "reference": "exact patching of each feature alone on the test prompts",
                                "n_prompts": len(prompts),
                                "exact_effects": [float(v) for v in exact], "wall_s": time.perf_counter() - t0,
                                "finite": bool(torch.isfinite(exact).all())}  # fmt: skip
        return {"agreement_spearman": Metric(agree["spearman"]), "agreement_top10_recall": Metric(agree["recall@10"])}

