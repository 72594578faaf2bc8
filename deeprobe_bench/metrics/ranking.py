"""Agreement of an approximate ranking with a reference one (attribution vs exact activation patching).

Attribution patching is judged by how well it reproduces the ranking exact patching gives (AtP*, Kramar
et al. 2024, arXiv 2403.00745; Sparse Feature Circuits, Marks et al. 2024; REFERENCE.md section 3):

- **Spearman rank correlation** of the two score vectors over a common sample of nodes
  (``scipy.stats.spearmanr``, ties get their average rank); -1..1, 1 = the same order.
- **Top-k recall**: the fraction of the reference's k best nodes that are among the approximation's k
  best; 0..1 (``k / n`` in expectation for a random order of ``n`` nodes).

Nodes are ranked by the *absolute* value of their effect (a node that destroys the behaviour matters as
much as one that carries it), so both figures are computed on ``|scores|`` by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor


def _as_list(x: Any) -> list[float]:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().flatten().tolist()
    return [float(v) for v in x]


def spearman(approx: Any, reference: Any, absolute: bool = True) -> float:
    """Spearman rank correlation of ``approx`` and ``reference`` (``Float[Tensor, "n"]`` or sequences).

    Args:
        approx: the approximate scores of n nodes.
        reference: the reference scores of the same n nodes, in the same order.
        absolute: rank ``|scores|`` (default) rather than signed scores.

    Returns:
        The correlation in [-1, 1]; NaN when n < 2 or either vector is constant (no ranking to compare).

    Raises:
        ValueError: the two have different lengths.
    """
    import math

    from scipy.stats import spearmanr

    a, b = _as_list(approx), _as_list(reference)
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} approximate scores for {len(b)} reference scores")
    if absolute:
        a, b = [abs(v) for v in a], [abs(v) for v in b]
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def top_k(scores: Sequence[float], k: int, absolute: bool = True) -> list[int]:
    """Indices of the ``k`` best scores (by ``|score|`` by default), best first; ties: lower index."""
    s = _as_list(scores)
    key = [abs(v) for v in s] if absolute else s
    return sorted(range(len(s)), key=lambda i: (-key[i], i))[:k]


def topk_recall(approx: Any, reference: Any, k: int, absolute: bool = True) -> float:
    """Fraction of the reference's top-``k`` nodes found in the approximation's top-``k``.

    With ``k >= n`` every node is in both top sets and the recall is 1.

    Raises:
        ValueError: different lengths, or ``k < 1``.
    """
    a, b = _as_list(approx), _as_list(reference)
    if len(a) != len(b):
        raise ValueError(f"topk_recall: {len(a)} approximate scores for {len(b)} reference scores")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not a:
        return float("nan")
    kk = min(k, len(a))
    return len(set(top_k(a, kk, absolute)) & set(top_k(b, kk, absolute))) / kk


def agreement(approx: Any, reference: Any, ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """``{"spearman": ..., "spearman_signed": ..., "recall@10": ..., "recall@50": ..., "n": ...}``.

    An approximation whose ``|scores|`` are all equal ranks nothing: every figure is NaN (its top-k would be
    the first k by index, an order the method never claimed)."""
    import math

    out = {"spearman": spearman(approx, reference), "spearman_signed": spearman(approx, reference, absolute=False)}
    flat = len({abs(v) for v in _as_list(approx)}) < 2
    for k in ks:
        out[f"recall@{k}"] = math.nan if flat else topk_recall(approx, reference, k)
    out["n"] = len(_as_list(approx))
    return out


class PatchedBatch:
    """One batch of a behaviour's examples, ready to be patched at a hook: the clean and counterfactual
    activations there, the clean metric, and the metric of any patched copy.

    Patched copies run from the hook (:func:`deeprobe_bench.hooks.replace_at_hook`), or, when the behaviour
    reads only the last token (:attr:`api.Behaviour.last_token_metric`) and the hook allows it, only from the
    first patched position on against the clean keys and values before it
    (:class:`deeprobe_bench.hooks.SuffixRun`): the same metric up to floating-point rounding.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        hook_name: where the activation is patched.
        behaviour: :class:`api.Behaviour` (clean / counterfactual tokens, positions, metric).
        rows: ``Int[Tensor, "b"]`` the examples of the batch.
        counter: a :class:`deeprobe_bench.hooks.Counter` charged every pass, if given.

    Attributes:
        rows, clean (``"b pos"``), pos (``"b k"``): the batch.
        x / x_cf: ``Float[Tensor, "b pos d"]`` the clean / counterfactual activations at the hook.
        m0: ``Float[Tensor, "b"]`` (float64) the metric of the unpatched run.
    """

    def __init__(self, model: Any, hook_name: str, behaviour: Any, rows: Any, counter: Any = None) -> None:
        import torch

        from deeprobe_bench.hooks import SuffixRun, capture

        self.model, self.hook_name, self.behaviour, self.counter = model, hook_name, behaviour, counter
        self.rows, self.clean, self.pos = rows, behaviour.clean[rows], behaviour.positions[rows]
        self.x = capture(model, self.clean, [hook_name], counter)[hook_name]
        self.x_cf = capture(model, behaviour.counterfactual[rows], [hook_name], counter)[hook_name]
        self._suffix = None
        with torch.no_grad():
            if behaviour.last_token_metric is not None and SuffixRun.applies(model, hook_name):
                self._suffix = SuffixRun(model, hook_name, behaviour.lengths[rows], self.x,
                                         self.pos.min(1).values, counter=counter)  # fmt: skip
                self.m0 = behaviour.last_token_metric(self._suffix.clean_logits, rows).double()
            else:
                self.m0 = self.metric(self.x[None])[0]

    def metric(self, patched: Float[Tensor, "B b pos d"]) -> Float[Tensor, "B b"]:
        """The behaviour metric (float64) of each of ``B`` patched copies of the batch's activations, one pass."""
        import torch

        from deeprobe_bench.hooks import replace_at_hook

        n_patch, b = patched.shape[:2]
        flat = patched.reshape(n_patch * b, *patched.shape[2:]).to(self.x.dtype)
        rep = self.rows.repeat(n_patch)
        with torch.no_grad():
            if self._suffix is not None:
                out = self.behaviour.last_token_metric(self._suffix.logits(flat, torch.arange(b).repeat(n_patch),
                                                                           self.counter), rep)  # fmt: skip
            else:
                logits = replace_at_hook(self.model, self.clean.repeat(n_patch, 1), self.hook_name, flat, self.counter)
                out = self.behaviour.metric(logits, rep)
        return out.double().view(n_patch, b)

    def effects(self, delta: Float[Tensor, "B b k d"]) -> Float[Tensor, " B"]:
        """Summed change of the metric over the batch under each of ``B`` patches, in one pass: patch ``j`` adds
        ``delta[j]`` to the clean activation at the batch's positions (float64)."""
        from deeprobe_bench.hooks import add_at_positions

        n_patch, b = delta.shape[0], self.x.shape[0]
        patched = add_at_positions(self.x.repeat(n_patch, 1, 1), self.pos.repeat(n_patch, 1),
                                   delta.reshape(n_patch * b, *delta.shape[2:]).to(self.x.dtype))  # fmt: skip
        return (self.metric(patched.view(n_patch, b, *patched.shape[1:])) - self.m0).sum(1)


def feature_patching(model: Any, hook_name: str, behaviour: Any, features: Any, patch_batch: int = 8) -> Any:
    """Exact effect on the behaviour metric of patching each feature alone, from its clean to its counterfactual
    activation, at the behaviour's positions (activation patching, Wang et al. 2022, per feature as Sparse
    Feature Circuits patches SAE latents, Marks et al. 2024):

        x' = x + (a_i(x_counterfactual) - a_i(x_clean)) d_i

    with ``a_i`` the feature's encoder column and ``d_i`` its direction. For SAE latents (directions the
    decoder rows, encoder ``sae.encode``) this is exact latent patching, as ``baselines/exact.py`` computes it.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        hook_name: the hook of the features (their directions as wide as its activation).
        behaviour: :class:`api.Behaviour` (clean / counterfactual tokens, positions, metric).
        features: the :class:`api.FeatureSet` whose features are patched.
        patch_batch: features patched side by side in one forward pass.

    Returns:
        ``Float[Tensor, "n"]``: the mean change of the metric over the behaviour's examples, per feature.
        Cost: per batch of examples, 3 + ``ceil(n / patch_batch)`` forward passes.
    """
    import torch

    from deeprobe_bench.hooks import at_positions

    n = len(features)
    dirs = features.directions.float()
    total = torch.zeros(n, dtype=torch.float64)
    for rows in behaviour.batches():
        pb = PatchedBatch(model, hook_name, behaviour, rows)
        with torch.no_grad():
            enc = features.encoder
            da = enc(at_positions(pb.x_cf, pb.pos).float()) - enc(at_positions(pb.x, pb.pos).float())
            for i in range(0, n, patch_batch):
                idx = torch.arange(i, min(i + patch_batch, n))
                delta = da[:, :, idx].permute(2, 0, 1).unsqueeze(-1) * dirs[idx][:, None, None, :]  # B b k d
                total[idx] += pb.effects(delta)
    return (total / len(behaviour)).float()
