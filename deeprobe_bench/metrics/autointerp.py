"""Autointerp: explanation then detection scoring by an LLM judge, for any task and any feature set.

After SAEBench's autointerp eval and EleutherAI delphi (REFERENCE.md section 6). For each feature:

1. **Pool.** The *activating pool* is the example rows (:class:`~deeprobe_bench.api.ExampleSet`) where
   the feature's activation is > 0, strongest first; the *non-activating pool* the rows where it is <= 0.
   For features positive almost everywhere (probe probabilities: fewer than ``n_detect_neg`` rows
   <= 0), "on" is above ``dense_on_fraction`` x the feature's max (the threshold-sweep convention of
   ``metrics/threshold_sweep.py``) and "off" the bottom half of the ranking below that.
2. **Explanation.** The judge reads the ``n_explain`` strongest rows of the activating pool (token marked)
   and writes a one-sentence explanation (SAEBench: top examples for generation).
3. **Detection.** The judge reads the explanation and a shuffled mix of ``n_detect_pos`` other rows of
   the activating pool, drawn with probability proportional to the activation (SAEBench's
   importance-weighted sampling), and ``n_detect_neg`` uniformly drawn rows of the non-activating pool,
   and says which activate. The feature's score is the balanced accuracy of that answer (0.5 = chance,
   1 = perfect).
4. A feature with fewer than ``min_active`` activating rows (dead, or almost) is not shown to the judge
   and scores 0.5 (chance): it explains nothing.

``judge_score`` = the mean score over the ``n_features`` best-ranked features of the set (the method's
ranking, :meth:`FeatureSet.top`). Example draws are seeded, so the prompts, and hence the cache keys, of
a rerun are the same and cost nothing.

**Simplicity** (used by the ``rlaif`` reward): ``score * min(1, simple_words / words(explanation))``:
short explanations that still predict where the feature fires.

Cautions (REFERENCE.md section 6): SAEs on random-init transformers get similar autointerp scores (Heap
et al. 2025), and judge scores track usefulness weakly; read ``judge_score`` next to the task's causal
metrics, never alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from deeprobe_bench.api import ExampleSet, FeatureSet
from deeprobe_bench.judge import prompts

log = logging.getLogger(__name__)


@dataclass
class AutointerpConfig:
    """Options of the autointerp metric.

    Attributes:
        n_features: how many of the best-ranked features are scored (``judge_score`` is their mean).
        n_explain: top-activating examples shown for the explanation.
        n_detect_pos / n_detect_neg: activating / non-activating examples in the detection mix.
        dense_on_fraction: for features positive almost everywhere, "on" above this fraction of the max.
        min_active: fewer activating rows than this: the feature is not judged and scores 0.5.
        simple_words: explanations up to this many words count as fully simple.
    """

    n_features: int = 10
    n_explain: int = 10
    n_detect_pos: int = 5
    n_detect_neg: int = 5
    min_active: int = 4
    dense_on_fraction: float = 0.5
    simple_words: int = 12

    def __post_init__(self) -> None:
        if min(self.n_features, self.n_explain, self.n_detect_pos, self.n_detect_neg, self.min_active) < 1:
            raise ValueError("autointerp counts must be >= 1")
        if not 0 <= self.dense_on_fraction < 1:
            raise ValueError("dense_on_fraction must be in [0, 1)")


@dataclass
class FeatureScore:
    """The judge's verdict on one feature.

    Attributes:
        feature: index of the feature in the scored set.
        score: balanced detection accuracy in [0, 1]; 0.5 for unjudged features.
        explanation: the judge's explanation ('' when unjudged).
        simplicity: ``score * min(1, simple_words / words)`` in [0, 1].
        n_active: rows in the activating pool.
        judged: whether the judge saw it (False: too few activating rows).
    """

    feature: int
    score: float
    explanation: str = ""
    simplicity: float = 0.0
    n_active: int = 0
    judged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AutointerpResult:
    """Scores of a feature set: the mean ``value`` and one :class:`FeatureScore` per scored feature."""

    value: float
    stderr: float | None
    features: list[FeatureScore] = field(default_factory=list)

    def details(self, max_features: int = 50) -> dict[str, Any]:
        return {
            "value": self.value,
            "judged": sum(f.judged for f in self.features),
            "scored": len(self.features),
            "features": [f.to_dict() for f in self.features[:max_features]],
        }


def _rng(seed: int, feature_key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{feature_key}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def _pools(acts: list[float], cfg: AutointerpConfig) -> tuple[list[int], list[int]]:
    """(activating rows strongest first, non-activating rows) of one feature's activations."""
    n = len(acts)
    order = sorted(range(n), key=lambda i: (-acts[i], i))
    inactive = [i for i in range(n) if acts[i] <= 0]
    if len(inactive) >= cfg.n_detect_neg:  # a sparse feature (SAE latent, projection): on where > 0
        return [i for i in order if acts[i] > 0], inactive
    # Positive almost everywhere (a probe's probability): on above dense_on_fraction x max (the
    # threshold-sweep convention), off in the bottom half of the ranking.
    threshold = cfg.dense_on_fraction * acts[order[0]]
    active = [i for i in order if acts[i] > threshold]
    return active, [i for i in order[n // 2 :] if acts[i] <= threshold]


@dataclass
class _Plan:
    feature: int
    n_active: int
    explain: list[int]
    mix: list[int]
    truth: list[bool]


def _weighted_sample(rng: random.Random, items: list[int], weights: list[float], k: int) -> list[int]:
    """``k`` of ``items`` without replacement, with probability proportional to ``weights``
    (Efraimidis & Spirakis 2006: the ``k`` largest ``u ** (1 / w)``)."""
    keyed = [(rng.random() ** (1.0 / w) if w > 0 else 0.0, i) for i, w in zip(items, weights, strict=True)]
    return [i for _, i in sorted(keyed, reverse=True)[:k]]


def _plan(j: int, acts: list[float], cfg: AutointerpConfig, seed: int, key: str) -> _Plan | None:
    active, inactive = _pools(acts, cfg)
    if len(active) < cfg.min_active or not inactive:
        return None
    rng = _rng(seed, key)
    n_pos = min(cfg.n_detect_pos, len(active) // 2)
    n_exp = min(cfg.n_explain, len(active) - n_pos)
    explain = active[:n_exp]
    rest = active[n_exp:]
    low = min(acts[i] for i in rest)
    pos = _weighted_sample(rng, rest, [acts[i] - low + 1e-6 for i in rest], n_pos)
    neg = rng.sample(inactive, min(cfg.n_detect_neg, len(inactive)))
    mix = [(i, True) for i in pos] + [(i, False) for i in neg]
    rng.shuffle(mix)
    return _Plan(j, len(active), explain, [i for i, _ in mix], [t for _, t in mix])


def _balanced_accuracy(predicted: set[int], truth: list[bool]) -> float:
    pos = [k for k, t in enumerate(truth) if t]
    neg = [k for k, t in enumerate(truth) if not t]
    tpr = sum(k + 1 in predicted for k in pos) / len(pos) if pos else 1.0
    tnr = sum(k + 1 not in predicted for k in neg) / len(neg) if neg else 1.0
    return (tpr + tnr) / 2


def score_activations(
    feature_acts: Any,
    examples: ExampleSet,
    judge: Any,
    seed: int = 0,
    config: AutointerpConfig | None = None,
    keys: list[str] | None = None,
) -> list[FeatureScore]:
    """Explain and detection-score each column of ``feature_acts`` with ``judge``.

    Args:
        feature_acts: ``Float[Tensor, "n_examples n_features"]``, each feature's activation on each row of
            ``examples`` (e.g. ``features.encoder(examples.acts)``).
        examples: the rows (texts with the token marked; labels go to the local judge server only).
        judge: a :class:`~deeprobe_bench.judge.JudgeClient`.
        seed: seeds the example draws (with ``keys``).
        config: see :class:`AutointerpConfig`.
        keys: a stable name per feature for its draws (default its index); the ``rlaif`` method passes
            the latent id so a latent keeps its draws while its activations change.

    Returns:
        One :class:`FeatureScore` per column.

    Raises:
        deeprobe_bench.judge.JudgeError: the judge failed for good on some request.
        ValueError: ``feature_acts`` does not have one row per example.
    """
    cfg = config or AutointerpConfig()
    if feature_acts.ndim != 2 or feature_acts.shape[0] != len(examples):
        raise ValueError(f"feature_acts must be ({len(examples)}, n_features), got {tuple(feature_acts.shape)}")
    cols = feature_acts.detach().float().T.tolist()
    keys = keys or [str(j) for j in range(len(cols))]
    plans = [_plan(j, a, cfg, seed, keys[j]) for j, a in enumerate(cols)]
    out = [FeatureScore(j, 0.5, n_active=len(_pools(a, cfg)[0])) for j, a in enumerate(cols)]
    live = [p for p in plans if p is not None]
    texts = examples.texts
    explained = judge.complete_many(
        [(prompts.explanation_messages([texts[i] for i in p.explain]), prompts.parse_explanation) for p in live],
        ground_truth=examples,
    )
    detected = judge.complete_many(
        [
            (prompts.detection_messages(e.parsed, [texts[i] for i in p.mix]), _detection_parser(len(p.mix)))
            for p, e in zip(live, explained, strict=True)
        ],
        ground_truth=examples,
    )
    for p, e, d in zip(live, explained, detected, strict=True):
        score = _balanced_accuracy(set(d.parsed), p.truth)
        words = max(1, len(e.parsed.split()))
        out[p.feature] = FeatureScore(
            feature=p.feature,
            score=score,
            explanation=e.parsed,
            simplicity=score * min(1.0, cfg.simple_words / words),
            n_active=p.n_active,
            judged=True,
        )
    return out


def _detection_parser(n: int):
    return lambda text: prompts.parse_detection(text, n)


def score_features(
    features: FeatureSet,
    examples: ExampleSet,
    judge: Any,
    seed: int = 0,
    config: AutointerpConfig | None = None,
) -> AutointerpResult:
    """``judge_score`` of a feature set: mean detection score of its ``n_features`` best-ranked features.

    Raises:
        deeprobe_bench.judge.JudgeError: the judge failed for good.
    """
    import torch

    cfg = config or AutointerpConfig()
    top = features.top(cfg.n_features)
    if len(top) == 0:
        return AutointerpResult(0.5, None, [])
    with torch.no_grad():
        acts = top.encoder(examples.acts.float())
    scores = score_activations(acts, examples, judge, seed, cfg)
    values = [s.score for s in scores]
    mean = sum(values) / len(values)
    se = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5 if len(values) > 1 else None
    return AutointerpResult(mean, se, scores)


class JudgeScorer:
    """What a ``judge``-supervised method receives as ``ctx.judge``: the judge bound to the train examples.

    Attributes:
        client: the :class:`~deeprobe_bench.judge.JudgeClient`.
        examples: the task's train :class:`~deeprobe_bench.api.ExampleSet`. Its ``texts`` and ``acts`` are
            the method's to use; its ``labels`` exist only for the local judge server and a method must not
            read them (that would be supervision ``labels``).
        seed: the cell's seed (example draws).
        config: the autointerp options.
    """

    def __init__(self, client: Any, examples: ExampleSet, seed: int = 0, config: AutointerpConfig | None = None):
        self.client = client
        self.examples = examples
        self.seed = seed
        self.config = config or AutointerpConfig()

    def score_activations(self, feature_acts: Any, keys: list[str] | None = None) -> list[FeatureScore]:
        """:func:`score_activations` on the train examples (``feature_acts``: ``"n_train_examples n_features"``)."""
        return score_activations(feature_acts, self.examples, self.client, self.seed, self.config, keys)

    def score(self, features: FeatureSet) -> AutointerpResult:
        """:func:`score_features` on the train examples."""
        return score_features(features, self.examples, self.client, self.seed, self.config)


def examples_from_tokens(
    tokenizer: Any,
    tokens: Any,
    lengths: Any,
    site: Any,
    acts: Any,
    labels: Any = None,
    concepts: list[str] | None = None,
    name: str = "",
    sep: str = " ",
    skip_bos: bool = True,
) -> ExampleSet:
    """An :class:`~deeprobe_bench.api.ExampleSet` of tokenised prompts, one row per prompt, read at ``site``.

    Each text is the prompt's tokens (``tokenizer.convert_ids_to_tokens``; the BOS position dropped when
    ``skip_bos``) joined by ``sep``, with the token at ``site`` marked ``<<token>>``; the rest of the prompt
    after it stays as context.

    Args:
        tokenizer: a Hugging Face tokenizer (``convert_ids_to_tokens``).
        tokens: ``Int[Tensor, "n pos"]``, right-padded.
        lengths: ``Int[Tensor, "n"]`` tokens per prompt.
        site: ``Int[Tensor, "n"]`` the position each row is read at.
        acts: ``Float[Tensor, "n d_model"]`` the activations at ``site``.
        labels / concepts / name: as in :class:`~deeprobe_bench.api.ExampleSet`.
        sep: joins token strings (" " for word-level tokenizers).
        skip_bos: leave position 0 out of the text.
    """
    texts = []
    for row, (n, s) in enumerate(zip(lengths.tolist(), site.tolist(), strict=True)):
        words = [str(w) for w in tokenizer.convert_ids_to_tokens(tokens[row, :n].tolist())]
        start = 1 if skip_bos else 0
        before = sep.join(words[start:s])
        after = sep.join(words[s + 1 :])
        texts.append(ExampleSet.mark(before + sep if before else "", words[s], sep + after if after else ""))
    return ExampleSet(texts, acts, labels, concepts, name=name)
