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
from typing import Any


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


def patch_effects(
    model: Any, hook_name: str, clean: Any, rows: Any, acts: Any, pos: Any, delta: Any, metric: Any, m0: Any,
    counter: Any = None,
) -> Any:  # fmt: skip
    """Summed change of the behaviour metric under each of ``B`` patches, in one forward pass.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        hook_name: where the activation is patched.
        clean: ``Int[Tensor, "b pos"]`` the clean tokens of the batch; ``rows``: ``Int[Tensor, "b"]`` their
            indices for ``metric``.
        acts: ``Float[Tensor, "b pos d"]`` the clean activation at the hook.
        pos: ``Int[Tensor, "b k"]`` the positions patched.
        delta: ``Float[Tensor, "B b k d"]`` what each patch adds at those positions.
        metric: ``metric(logits, rows) -> Float[Tensor, "b"]`` (:class:`api.Behaviour`).
        m0: ``Float[Tensor, "b"]`` the metric of the unpatched run (float64).
        counter: a :class:`deeprobe_bench.hooks.Counter` charged the pass.

    Returns:
        ``Float[Tensor, "B"]`` (float64): the metric change summed over the batch, per patch.
    """
    from deeprobe_bench.hooks import add_at_positions, replace_at_hook

    n_patch, b = delta.shape[0], acts.shape[0]
    patched = add_at_positions(acts.repeat(n_patch, 1, 1), pos.repeat(n_patch, 1),
                               delta.reshape(n_patch * b, *delta.shape[2:]).to(acts.dtype))  # fmt: skip
    logits = replace_at_hook(model, clean.repeat(n_patch, 1), hook_name, patched, counter)
    m1 = metric(logits, rows.repeat(n_patch)).double().view(n_patch, b)
    return (m1 - m0).sum(1)


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

    from deeprobe_bench.hooks import at_positions, capture, replace_at_hook

    n = len(features)
    dirs = features.directions.float()
    total = torch.zeros(n, dtype=torch.float64)
    for rows in behaviour.batches():
        clean, pos = behaviour.clean[rows], behaviour.positions[rows]
        x = capture(model, clean, [hook_name])[hook_name]
        x_cf = capture(model, behaviour.counterfactual[rows], [hook_name])[hook_name]
        with torch.no_grad():
            da = features.encoder(at_positions(x_cf, pos).float()) - features.encoder(at_positions(x, pos).float())
            m0 = behaviour.metric(replace_at_hook(model, clean, hook_name, x), rows).double()
            for i in range(0, n, patch_batch):
                idx = torch.arange(i, min(i + patch_batch, n))
                delta = da[:, :, idx].permute(2, 0, 1).unsqueeze(-1) * dirs[idx][:, None, None, :]  # B b k d
                total[idx] += patch_effects(model, hook_name, clean, rows, x, pos, delta, behaviour.metric, m0)
    return (total / len(behaviour)).float()
