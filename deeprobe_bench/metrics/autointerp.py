"""Autointerp: explanation then detection scoring by an LLM judge, for any task and any feature set.

After SAEBench's autointerp eval and EleutherAI delphi (REFERENCE.md sections 6 and 9). For each feature:

1. **Activating rows** follow the feature's own distribution. A sparse, non-negative feature (an SAE
   latent, a label indicator: at least ``n_detect_neg`` rows at or below 0) is on where it is > 0, and its
   firing rate is the share of such rows. A dense feature with values in [0, 1] (a probe's probability)
   fires on ``mean(p)`` of the rows in expectation: its activating rows are that top quantile. Any other
   dense or signed feature (a projection, a logit) has no zero to read: its activating rows are the upper
   class of the two-class split of its values that maximises the between-class variance (Otsu 1979, exact
   on the sorted values). Either way a detector of a concept of base rate p fires on about p of the rows,
   as delphi draws examples by activation quantile of the latent's own activations. The non-activating
   rows are the rest.
2. **Disjoint, stratified halves.** The activating rows, strongest first, are cut into ``n_quantiles``
   quantile bins (delphi's 10); each bin is shuffled (seeded) and split in two, so the *explanation* half
   and the *detection* half are disjoint and both hold rows of every quantile, the strongest included (the
   previous version showed the 10 strongest rows to the explanation and used up the true positives of a
   rare concept: a correctly explained supervised direction scored 0.52).
3. **Explanation.** The judge reads the ``n_explain`` strongest rows of the explanation half (token
   marked) and writes a one-sentence explanation (SAEBench: top examples for generation).
4. **Detection.** The judge reads the explanation and a shuffled mix of ``n_detect_pos`` rows of the
   detection half, one per quantile bin in turn (delphi's quantile sampling), and ``n_detect_neg``
   uniformly drawn non-activating rows, and says which activate. The feature's score is the balanced
   accuracy of that answer (0.5 = chance, 1 = perfect).
5. **Unscorable features** (constant; fewer than ``min_active`` activating rows; no non-activating row)
   are not shown to the judge, are **left out** of the mean and counted: ``judge_n_scored`` is how many
   features the mean is over (delphi and SAEBench drop dead latents instead of scoring them at chance).

``judge_score`` = the mean score over the scored features among the ``n_features`` best-ranked features of
the set (the method's ranking, :meth:`FeatureSet.top`); 0.5 (chance) when none can be scored. A set that
reads a task's concept labels scores 1 with the local judge server, a constant or noise feature 0.5
(``tests/unit/test_autointerp.py``). Example draws are seeded, so the prompts, and hence the cache keys, of
a rerun are the same and cost nothing.

**Simplicity** (used by the ``rlaif`` reward): ``score * min(1, simple_words / words(explanation))``:
short explanations that still predict where the feature fires. An unscorable feature has score 0.5 and
simplicity 0 there (a reward needs a number for every latent), marked ``judged=False``.

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
        n_features: how many of the best-ranked features are considered (``judge_score`` is the mean over
            those the judge could score).
        n_explain: examples shown for the explanation (the strongest of the explanation half).
        n_detect_pos / n_detect_neg: activating / non-activating examples in the detection mix (10 + 10: a
            feature's balanced accuracy moves in steps of 0.05; with 5 + 5 one noise feature scored 0.5, 0.6
            and 0.9 on three seeds).
        n_quantiles: quantile bins of the activating rows (delphi: 10), for the stratified halves and draws.
        min_active: fewer activating rows than this: the feature is not judged (left out, counted).
        simple_words: explanations up to this many words count as fully simple.
    """

    n_features: int = 10
    n_explain: int = 10
    n_detect_pos: int = 10
    n_detect_neg: int = 10
    n_quantiles: int = 10
    min_active: int = 4
    simple_words: int = 12

    def __post_init__(self) -> None:
        counts = (self.n_features, self.n_explain, self.n_detect_pos, self.n_detect_neg, self.n_quantiles)
        if min(counts) < 1 or self.min_active < 2:
            raise ValueError("autointerp counts must be >= 1 (min_active >= 2: one row for each half)")


@dataclass
class FeatureScore:
    """The judge's verdict on one feature.

    Attributes:
        feature: index of the feature in the scored set.
        score: balanced detection accuracy in [0, 1]; 0.5 for unjudged features.
        explanation: the judge's explanation ('' when unjudged).
        simplicity: ``score * min(1, simple_words / words)`` in [0, 1] (0 when unjudged).
        n_active: activating rows (the feature's firing rate times the rows).
        judged: whether the judge scored it (False: left out of ``judge_score``, see ``reason``).
        rule: what "activating" meant: ``> 0``, ``top q (mean probability)`` or ``top q`` (the Otsu upper
            class), q the share of rows.
        reason: why it was not judged ('' when judged).
    """

    feature: int
    score: float
    explanation: str = ""
    simplicity: float = 0.0
    n_active: int = 0
    judged: bool = False
    rule: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AutointerpResult:
    """Scores of a feature set: ``value`` (mean over the scored features), ``n_scored`` (how many the judge
    could score) and one :class:`FeatureScore` per feature considered."""

    value: float
    stderr: float | None
    features: list[FeatureScore] = field(default_factory=list)
    n_scored: int = 0

    def details(self, max_features: int = 50) -> dict[str, Any]:
        return {
            "value": self.value,
            "judged": self.n_scored,
            "scored": len(self.features),
            "left_out": {str(f.feature): f.reason for f in self.features if not f.judged},
            "features": [f.to_dict() for f in self.features[:max_features]],
        }


def _rng(seed: int, feature_key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{feature_key}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def otsu_threshold(values: list[float]) -> float | None:
    """The threshold of the two-class split of ``values`` that maximises the between-class variance
    (Otsu 1979), evaluated exactly at every gap between distinct sorted values; the upper class is
    ``values > threshold``. None when all values are equal."""
    import numpy as np

    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n < 2 or v[0] == v[-1]:
        return None
    k = np.arange(1, n)  # lower class = the k smallest values
    cut = v[1:] > v[:-1]  # only between distinct values
    csum = np.cumsum(v)[:-1]
    total = v.sum()
    w0, w1 = k / n, (n - k) / n
    mu0, mu1 = csum / k, (total - csum) / (n - k)
    between = np.where(cut, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    i = int(np.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


def _pools(acts: list[float], cfg: AutointerpConfig) -> tuple[list[int], list[int], str]:
    """(activating rows strongest first, non-activating rows, the rule) of one feature's activations."""
    n = len(acts)
    order = sorted(range(n), key=lambda i: (-acts[i], i))
    off = [i for i in range(n) if acts[i] <= 0]
    if n and min(acts) >= 0 and len(off) >= cfg.n_detect_neg:  # sparse, non-negative: on where > 0
        return [i for i in order if acts[i] > 0], off, "> 0"
    if n and min(acts) >= 0 and max(acts) <= 1:  # a probability fires on mean(acts) of the rows, in expectation
        k = round(sum(acts))
        if 0 < k < n and acts[order[k - 1]] > acts[order[k]]:
            return order[:k], order[k:], f"top {k / n:.3f} (mean probability)"
    t = otsu_threshold(acts)
    if t is None:  # constant
        return [], list(range(n)), "constant"
    active = [i for i in order if acts[i] > t]
    return active, [i for i in range(n) if acts[i] <= t], f"top {len(active) / n:.3f}"


@dataclass
class _Plan:
    feature: int
    n_active: int
    explain: list[int]
    mix: list[int]
    truth: list[bool]
    rule: str


def _halves(active: list[int], cfg: AutointerpConfig, rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
    """The activating rows (strongest first) cut into quantile bins, each shuffled and split in two:
    ``(explanation bins, detection bins)``, disjoint; the odd row of a bin goes to each side in turn."""
    n_bins = min(cfg.n_quantiles, len(active) // 2)
    size = len(active)
    bins = [active[b * size // n_bins : (b + 1) * size // n_bins] for b in range(n_bins)]
    exp, det = [], []
    odd = 0
    for rows in bins:
        rows = list(rows)
        rng.shuffle(rows)
        half = len(rows) // 2 + (len(rows) % 2 if odd % 2 == 0 else 0)
        odd += len(rows) % 2
        exp.append(rows[:half])
        det.append(rows[half:])
    return exp, det


def _plan(j: int, acts: list[float], cfg: AutointerpConfig, seed: int, key: str) -> tuple[_Plan | None, str, int, str]:
    """The plan of feature ``j``, or None with the reason it cannot be scored; also (rule, n_active)."""
    active, inactive, rule = _pools(acts, cfg)
    if rule == "constant":
        return None, "constant", 0, rule
    if len(active) < cfg.min_active:
        return None, f"{len(active)} activating rows (< min_active {cfg.min_active})", len(active), rule
    if not inactive:
        return None, "no non-activating row", len(active), rule
    rng = _rng(seed, key)
    exp_bins, det_bins = _halves(active, cfg, rng)
    explain = sorted((i for b in exp_bins for i in b), key=lambda i: (-acts[i], i))[: cfg.n_explain]
    pos: list[int] = []
    pools = [list(b) for b in det_bins if b]
    for pool in pools:
        rng.shuffle(pool)
    k = 0
    while len(pos) < cfg.n_detect_pos and any(pools):  # one row per quantile bin in turn, strongest bin first
        pool = pools[k % len(pools)]
        if pool:
            pos.append(pool.pop())
        k += 1
    neg = rng.sample(inactive, min(cfg.n_detect_neg, len(inactive)))
    mix = [(i, True) for i in pos] + [(i, False) for i in neg]
    rng.shuffle(mix)
    return _Plan(j, len(active), explain, [i for i, _ in mix], [t for _, t in mix], rule), "", len(active), rule


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
        One :class:`FeatureScore` per column; a column the judge cannot score has ``judged=False``, score
        0.5 and its ``reason``.

    Raises:
        deeprobe_bench.judge.JudgeError: the judge failed for good on some request.
        ValueError: ``feature_acts`` does not have one row per example.
    """
    cfg = config or AutointerpConfig()
    if feature_acts.ndim != 2 or feature_acts.shape[0] != len(examples):
        raise ValueError(f"feature_acts must be ({len(examples)}, n_features), got {tuple(feature_acts.shape)}")
    cols = feature_acts.detach().float().T.tolist()
    keys = keys or [str(j) for j in range(len(cols))]
    out = []
    live = []
    for j, a in enumerate(cols):
        plan, reason, n_active, rule = _plan(j, a, cfg, seed, keys[j])
        out.append(FeatureScore(j, 0.5, n_active=n_active, rule=rule, reason=reason))
        if plan is not None:
            live.append(plan)
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
            rule=p.rule,
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
    """``judge_score`` of a feature set: mean detection score over the features the judge could score among
    its ``n_features`` best-ranked ones (``AutointerpResult.n_scored`` of them; 0.5 when there are none).

    Raises:
        deeprobe_bench.judge.JudgeError: the judge failed for good.
    """
    import torch

    cfg = config or AutointerpConfig()
    top = features.top(cfg.n_features)
    if len(top) == 0:
        return AutointerpResult(0.5, None, [], 0)
    with torch.no_grad():
        acts = top.encoder(examples.acts_for(top.hook_name).float())
    scores = score_activations(acts, examples, judge, seed, cfg)
    values = [s.score for s in scores if s.judged]
    if not values:  # nothing the judge could score: chance, with judge_n_scored = 0 saying why
        return AutointerpResult(0.5, None, scores, 0)
    mean = sum(values) / len(values)
    se = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5 if len(values) > 1 else None
    return AutointerpResult(mean, se, scores, len(values))


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
