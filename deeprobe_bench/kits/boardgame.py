"""Shared base of the board-game tasks (``othello``, ``chess``): Karvonen et al. 2024 (arXiv 2408.00113).

The ground truth is the board itself: at every measured position of a game, one-hot *board-state
properties* (BSPs, e.g. "square c4 holds one of my stones") say what is true. A method's features are
read as binary classifiers with the threshold sweep of :mod:`deeprobe_bench.metrics.threshold_sweep`
and scored square by square.

Contract for a game (a subclass):

- ``Config``: a dataclass inheriting :class:`BoardGameConfig` (add game options as new fields).
- ``bsps(self) -> list[BSP]``: the BSP families, in column order. Each has a name, its concept names
  (``"c4:mine"``), whether it is part of the headline metrics (``primary``) and whether it is *masked but
  counted* in coverage (Othello's blank channel, which caps raw coverage at 2/3).
- ``make_games(self, n, seed) -> Any``: ``n`` games, deterministic in ``(n, seed)``; splits use disjoint
  seeds (:meth:`split_seed`).
- ``encode(self, subject, games) -> (tokens, measured)``: ``Int[Tensor, "g pos"]`` model inputs and
  ``Bool[Tensor, "g pos"]`` the positions where the board is measured (one *row* per True, in row-major
  (game, position) order).
- ``labels(self, games) -> Bool[Tensor, "rows n_concepts"]``: the BSPs at the measured positions, in the
  same row order, columns in the order of ``bsps()``. Any game-specific label masking (chess: pieces on
  their starting squares count as empty) happens here.
- optionally ``extra_metrics(self, data, features, ctx) -> dict``: game-specific metrics (Othello's
  causal intervention metric); ``ctx`` is a :class:`EvalContext` with the tags and activations.

What the base does:

- ``prepare``: three splits of games: ``train`` (methods see its activations at the task's hook at the
  measured positions, and, with supervision ``labels``, its BSPs), ``label`` (the paper's label split:
  tagging for reconstruction) and ``test`` (held-out). Activations are disk-cached
  (:mod:`deeprobe_bench.activations`). It provides ``train_tokens`` / ``train_measured`` (``Task.provides``,
  supervision-free) so methods reading another hook (``neurons``) can compute their own activations.
  ``TaskData.examples`` holds LLM-judge examples of the train and test splits (:meth:`judge_examples`).
- ``objective`` (search methods): board reconstruction (micro-F1 over the primary BSPs) of the chosen set,
  tagged on the first half of the first ``objective_games`` train games and scored on the second half,
  minus ``size_penalty * |S|``.
- ``evaluate`` (test split), on the method's chosen set (``FeatureSet.chosen()``), at
  ``features.hook_name`` (which may differ from the task's hook, e.g. MLP neurons), with
  :func:`deeprobe_bench.metrics.board.board_metrics`: ``reconstruction`` (primary; tagged on the label split
  at the quantile level chosen there, micro-F1 on the test split), ``coverage`` (chance-corrected, chosen on
  the label split), the paper's ``reconstruction_paper`` / ``coverage_paper``, per-BSP figures in
  ``_details["per_bsp"]``; for ranked sets (``scores`` given) the reconstruction curve at the top-k over
  ``faithfulness.K_GRID`` normalised by the whole set's, and its area (``reconstruction_cpr``).
- A feature whose ``hook_name`` is not a resid hook reads activations at that hook; if its
  ``FeatureSet.coordinates`` is given (``list[int]``), feature ``i`` is that coordinate of the hook's
  activation (used by interventions of game-specific metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from deeprobe_bench.api import FeatureSet, Metric, Task, TaskData, UserError, check_task_config
from deeprobe_bench.metrics.board import board_metrics, torch_index

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BSP:
    """One family of board-state properties (columns of the label matrix).

    Attributes:
        name: ``"mine"``, ``"theirs"``, ``"empty"``, ``"legal"``, ``"piece"`` ...
        concepts: one name per column (``"c4:mine"``).
        primary: part of the headline coverage / reconstruction.
        masked: masked but counted in the paper's ``coverage_paper`` (its best F1 counts as 0, the column
            still counts in the denominator); left out of ``coverage`` and ``reconstruction``.
    """

    name: str
    concepts: tuple[str, ...]
    primary: bool = True
    masked: bool = False


@dataclass
class BoardGameConfig:
    """Options shared by the board-game tasks (``-T key=value``).

    Attributes:
        hook: hook point studied; default the model card's ``task.hook_name``.
        n_train: games of the train split (methods see their activations, and labels if supervised).
        n_label: games of the label split (tagging for reconstruction; Karvonen et al.: 1000).
        n_test: held-out games (Karvonen et al.: 1000).
        objective_games: train games the objective uses (half tag, half score).
        size_penalty: objective = reconstruction - size_penalty * |S|.
        min_precision, min_true_positives: the tagging rule of reconstruction (0.95, 10).
        min_positives: a BSP element enters ``coverage`` when it has this many positives and negatives in
            both the label and the test split.
    """

    hook: str | None = None
    n_train: int = 500
    n_label: int = 1000
    n_test: int = 1000
    objective_games: int = 200
    size_penalty: float = 0.0
    min_precision: float = 0.95
    min_true_positives: int = 10
    min_positives: int = 10

    def __post_init__(self) -> None:
        check_task_config(self, ("n_train", "n_label", "n_test", "objective_games"))
        if not 0 < self.min_precision <= 1 or self.min_true_positives < 1:
            raise ValueError("min_precision must be in (0, 1] and min_true_positives >= 1")


@dataclass
class Split:
    """One split: its games, model inputs, measured positions, labels, and activations per hook."""

    name: str
    games: Any
    tokens: Any  # Int[Tensor, "g pos"]
    measured: Any  # Bool[Tensor, "g pos"]
    labels: Any  # Bool[Tensor, "rows c"]
    acts: dict[str, Any] = field(default_factory=dict)  # hook -> Float[Tensor, "rows d"]

    @property
    def n_games(self) -> int:
        return int(self.tokens.shape[0])

    def games_rows(self, n_games: int) -> int:
        """Rows belonging to the first ``n_games`` games."""
        return int(self.measured[:n_games].sum())


@dataclass
class EvalContext:
    """What :meth:`BoardGameTask.extra_metrics` gets besides the data and features.

    Attributes:
        tags: ``Bool[Tensor, "f c"]`` tags of the chosen features at the reconstruction level chosen on the
            label split.
        threshold: that level's firing rate (its thresholds are per-feature label-split quantiles).
        max_acts: unused (None); kept for game plugins written against the earlier context.
        label_acts: ``Float[Tensor, "rows d"]`` label-split activations at ``features.hook_name``.
    """

    tags: Any
    threshold: float
    max_acts: Any
    label_acts: Any


class BoardGameTask(Task):
    """Base of the board-game tasks; see the module docstring for the contract of a game."""

    Config = BoardGameConfig
    primary_metric = "reconstruction"
    other_hooks = True  # MLP neurons are read at their own hook (``FeatureSet.hook_name``, module docstring)
    provides = ("train_tokens", "train_measured")
    SPLIT_SEEDS = {"train": 0, "label": 1, "test": 2}
    calibration_notes = {
        "size": "a count of features, not a score",
        "coverage_paper": "the paper's figure, uncorrected for chance: an always-on feature scores 2p / (1 + p)",
        "reconstruction_cpr": "the shape of the reconstruction curve over the ranking, normalised by the set's own "
                              "reconstruction: no ceiling of 1 for a set of many useful features",
    }  # fmt: skip

    # ------------------------------------------------------------------ game-specific (override)

    def bsps(self) -> list[BSP]:  # pragma: no cover - interface
        raise NotImplementedError

    def make_games(self, n: int, seed: int) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, subject: Any, games: Any) -> tuple[Any, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def labels(self, games: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def extra_metrics(self, data: TaskData, features: FeatureSet, ctx: EvalContext) -> dict[str, Any]:
        """Game-specific metrics (``{name: Metric}``, plus an optional ``"_details"`` dict). Default none."""
        return {}

    #: joins a game's token strings into the text an LLM judge reads; None: "" when every token is one
    #: character (chess), else " " (Othello moves)
    example_separator: str | None = None
    #: judge examples per split at most (a seeded sample of the measured rows)
    max_judge_examples: int = 2000

    def example_token_strings(self, subject: Any, tokens: list[int]) -> list[str]:
        """The strings of a game's tokens for judge texts: the subject's tokenizer, else the token ids."""
        tok = getattr(subject, "tokenizer", None)
        if tok is not None and hasattr(tok, "convert_ids_to_tokens"):
            return [str(t) for t in tok.convert_ids_to_tokens(tokens)]
        return [str(t) for t in tokens]

    def judge_examples(self, data: TaskData, split: str, seed: int) -> Any:
        """Judge examples of ``split`` (:class:`api.ExampleSet`): a seeded sample of at most
        ``max_judge_examples`` measured rows, each the game so far with the measured token marked, its
        activation at the task's hook and its BSPs (read only by the local judge server)."""
        import torch

        from deeprobe_bench.api import ExampleSet

        sp: Split = data.extra["splits"][split]
        where = sp.measured.nonzero()  # row-major (game, position): the order of labels and activations
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(where), generator=gen)[: self.max_judge_examples].sort().values
        strings: dict[int, list[str]] = {}
        texts = []
        for r in rows.tolist():
            g, p = where[r].tolist()
            if g not in strings:
                strings[g] = self.example_token_strings(data.extra["subject"], sp.tokens[g].tolist())
            pieces = strings[g][: p + 1]
            sep = self.example_separator
            if sep is None:
                sep = "" if all(len(s) == 1 for s in strings[g]) else " "
            texts.append(ExampleSet.mark(sep.join(pieces[:-1]) + sep, pieces[-1]))
        acts = self.acts(data, split, data.hook_name)[rows]
        return ExampleSet(texts, acts, sp.labels[rows], self.concepts(), name=f"{self.name} {split} measured rows",
                          hook_name=data.hook_name, acts_at=lambda hook: self.acts(data, split, hook)[rows])  # fmt: skip

    # ------------------------------------------------------------------ shared

    def split_seed(self, seed: int, split: str) -> int:
        """The game seed of ``split`` for the cell seed ``seed`` (disjoint across splits and seeds)."""
        return 1000 * seed + self.SPLIT_SEEDS[split]

    def concepts(self) -> list[str]:
        return [c for b in self.bsps() for c in b.concepts]

    def columns(self) -> dict[str, list[int]]:
        """``{bsp name: column indices}``."""
        out, i = {}, 0
        for b in self.bsps():
            out[b.name] = list(range(i, i + len(b.concepts)))
            i += len(b.concepts)
        return out

    def primary_columns(self) -> tuple[list[int], list[int]]:
        """(scored columns: primary and not masked, masked primary columns); computed once per task (an
        objective asks for them on every call)."""
        if getattr(self, "_primary", None) is None:
            cols = self.columns()
            scored = [c for b in self.bsps() if b.primary and not b.masked for c in cols[b.name]]
            masked = [c for b in self.bsps() if b.primary and b.masked for c in cols[b.name]]
            self._primary = (scored, masked)
        return list(self._primary[0]), list(self._primary[1])

    def _split(self, subject: Any, name: str, n: int, seed: int) -> Split:
        import torch

        games = self.make_games(n, self.split_seed(seed, name))
        tokens, measured = self.encode(subject, games)
        labels = torch.as_tensor(self.labels(games)).bool()
        rows = int(measured.sum())
        if labels.shape != (rows, len(self.concepts())):
            raise ValueError(
                f"{name}: labels {tuple(labels.shape)} but {rows} measured rows x {len(self.concepts())} concepts"
            )
        return Split(name, games, tokens, measured.bool(), labels)

    def acts(self, data: TaskData, split: str, hook: str) -> Any:
        """``Float[Tensor, "rows d"]`` activations of ``split`` at ``hook`` at the measured positions (memoised)."""
        from deeprobe_bench import activations

        sp: Split = data.extra["splits"][split]
        if hook not in sp.acts:
            subject = data.extra["subject"]
            full = activations.get(subject.model, sp.tokens, hook)
            sp.acts[hook] = full[sp.measured].float()
        return sp.acts[hook]

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        cfg = self.config
        hook = cfg.hook or subject.card.get("task", {}).get("hook_name")
        if hook is None:
            raise UserError(f"model {subject.name} names no hook for {self.name}; pass -T hook=...")
        sizes = {"train": cfg.n_train, "label": cfg.n_label, "test": cfg.n_test}
        if limit is not None:
            sizes = {k: max(2, min(v, limit)) for k, v in sizes.items()}
        splits = {name: self._split(subject, name, n, seed) for name, n in sizes.items()}
        data = TaskData(
            hook_name=hook,
            train_acts=None,
            train_labels=splits["train"].labels,
            concepts=self.concepts(),
            n_train=splits["train"].n_games,
            n_test=splits["test"].n_games,
            extra={"subject": subject, "splits": splits},
            train_tokens=splits["train"].tokens,
            train_measured=splits["train"].measured,
        )
        data.train_acts = self.acts(data, "train", hook)
        for name in ("label", "test"):  # the rows the metrics score: what the oracle reads
            data.add_reference_rows(hook, self.acts(data, name, hook), splits[name].labels)
        data.examples = {"train": self.judge_examples(data, "train", seed), "eval": self.judge_examples(data, "test", seed)}
        n_obj = min(cfg.objective_games, splits["train"].n_games)
        half = max(1, n_obj // 2)
        data.extra["objective_rows"] = (splits["train"].games_rows(half), splits["train"].games_rows(n_obj))
        scored, masked = self.primary_columns()
        data.info = {
            "hook_name": hook,
            "splits": {k: {"games": s.n_games, "rows": int(s.measured.sum())} for k, s in splits.items()},
            "game_seeds": {k: self.split_seed(seed, k) for k in splits},
            "bsps": {b.name: {"n": len(b.concepts), "primary": b.primary, "masked": b.masked} for b in self.bsps()},
            "n_concepts_scored": len(scored),
            "n_concepts_masked": len(masked),
            "thresholds": "t x max activation on the label split, t in 0.0..1.0 step 0.1",
            "tagging": f"precision >= {cfg.min_precision}, true positives >= {cfg.min_true_positives}",
        }
        return data

    def _feature_acts(self, data: TaskData, split: str, features: FeatureSet) -> Any:
        import torch

        with torch.no_grad():
            return features.encode_shared(self.acts(data, split, features.hook_name)).float()

    def objective(self, data: TaskData, features: FeatureSet) -> float:
        """Board reconstruction (primary BSPs) of the chosen set on the train split, minus the size penalty."""
        from deeprobe_bench.metrics.threshold_sweep import reconstruction

        chosen = features.chosen()
        if len(chosen) == 0:
            return 0.0
        a, b = data.extra["objective_rows"]
        acts = self._feature_acts(data, "train", chosen)
        scored, _ = self.primary_columns()
        labels = data.extra["splits"]["train"].labels[:, scored]
        rec = reconstruction(
            acts[:a], labels[:a], acts[a:b], labels[a:b],
            min_precision=self.config.min_precision, min_true_positives=self.config.min_true_positives,
        )  # fmt: skip
        return rec.value - self.config.size_penalty * len(chosen)

    def paper_coverage(self) -> tuple[list[int], int]:
        """``(columns, denominator)`` of the paper-comparable ``coverage_paper``: the sum of the best F1 over
        ``columns`` divided by ``denominator``. Default: the scored primary columns over the scored plus
        masked primary columns (Othello: mine and theirs over the 3 channels of every square)."""
        scored, masked = self.primary_columns()
        return scored, len(scored) + len(masked)

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Any]:
        from deeprobe_bench.metrics import concepts
        from deeprobe_bench.metrics import faithfulness as faith

        cfg = self.config
        picked = features.chosen_indices()
        chosen = features.subset(picked)  # = features.chosen(); keeps FeatureSet.coordinates, remapped
        label, test = data.extra["splits"]["label"], data.extra["splits"]["test"]
        # Every feature once per split; the chosen set and the curve's prefixes are columns of it (a feature's
        # activations and quantile thresholds do not depend on the other features).
        all_label, all_test = self._feature_acts(data, "label", features), self._feature_acts(data, "test", features)
        lv_label, lv_test = concepts.split_levels(all_label, all_test)
        pick = torch_index(picked)
        # the label split's counts per feature, once: of every feature when the curve below reads its prefixes
        curve = features.scores is not None and len(features) > 0
        counts = None
        if lv_label.shape[0] >= 2 and len(picked):
            counts = concepts.label_counts(lv_label if curve else lv_label[:, pick], label.labels)
        label_acts, test_acts = all_label[:, pick], all_test[:, pick]
        groups = {b.name: cols for b, cols in zip(self.bsps(), self.columns().values(), strict=True)}
        scored, _ = self.primary_columns()
        res = board_metrics(
            label_acts, label.labels, test_acts, test.labels, groups, scored, self.paper_coverage(),
            min_precision=cfg.min_precision, min_true_positives=cfg.min_true_positives,
            min_positives=cfg.min_positives, levels=(lv_label[:, pick], lv_test[:, pick]),
            label_counts=counts.features(pick) if counts is not None and curve else counts,
        )  # fmt: skip
        metrics: dict[str, Any] = {
            "reconstruction": Metric(res.reconstruction),
            "coverage": Metric(res.coverage),
            "reconstruction_paper": Metric(res.reconstruction_paper),
            "coverage_paper": Metric(res.coverage_paper),
            "size": Metric(float(len(chosen)), higher_is_better=False),
        }
        details: dict[str, Any] = {
            "board": {
                "reconstruction_firing_rate": res.reconstruction_rate,
                "reconstruction_paper_threshold": res.reconstruction_paper_threshold,
                "coverage_paper_threshold": res.coverage_paper_threshold,
                "coverage_n_scored": res.coverage_n_scored,
                "coverage_n_columns": len(scored),
                "n_tagged_features": res.n_tagged_features,
                "per_bsp": res.per_group,
                "split": {"choose_and_tag": "label", "score": "test"},
            }
        }
        if curve:
            rank = features.ranking()

            def rec_at(k: int) -> float:
                idx = torch_index(rank[:k])
                return concepts.reconstruction_from_levels(
                    lv_label[:, idx], label.labels, lv_test[:, idx], test.labels, scored,
                    cfg.min_precision, cfg.min_true_positives,
                    counts=None if counts is None else counts.features(idx),
                ).value  # fmt: skip

            raw = faith.curve(rec_at, len(features), faith.K_GRID)
            full = rec_at(len(features))
            norm = [v / full if full > 0 else 0.0 for v in raw]
            metrics["reconstruction_cpr"] = Metric(faith.area(norm))
            details["reconstruction_curve"] = {"k": list(faith.K_GRID), "reconstruction": raw, "normalised": norm,
                                               "normalised_by": "reconstruction of the whole feature set"}  # fmt: skip
        ectx = EvalContext(tags=res.tags, threshold=res.reconstruction_rate, max_acts=None, label_acts=label_acts)
        extra = dict(self.extra_metrics(data, chosen, ectx))
        details.update(extra.pop("_details", {}))
        metrics.update(extra)
        metrics["_details"] = details
        return metrics
