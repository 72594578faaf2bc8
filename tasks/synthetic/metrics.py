"""Feature recovery against a planted dictionary: direction cosines and the MCC of matched activations.

Definitions (``V``: the ``F`` planted unit directions, ``D``: the ``n`` directions a method found):

- ``recovery``: mean over planted features of ``max_j |cos(v_i, d_j)|`` (1 = every planted feature has an
  exact match); ``recovered``: the fraction of planted features with ``max_j |cos| > 0.9`` (our threshold;
  not checked against the criterion behind the recovered fraction of Korznikov et al. 2026, arXiv 2602.14111).
- ``precision``: mean over found directions of ``max_i |cos(d_j, v_i)|`` (are the found directions real
  features, whatever their number).
- ``mcc_directions``: sae_lens' ``mean_correlation_coefficient`` (SynthSAEBench): Hungarian one-to-one
  matching of found and planted directions maximising ``|cos|``, mean over the ``min(n, F)`` pairs.
- ``mcc_activations``: the mean correlation coefficient of the independent-component literature
  (Hyvarinen & Morioka 2016; Khemakhem et al. 2020): Pearson correlations between each found feature's
  activation and each planted feature's activation over the same samples, a Hungarian one-to-one
  matching maximising the correlation, mean over the ``min(n, F)`` matched pairs (a constant feature
  correlates 0).
"""

from __future__ import annotations

from typing import Any

#: cosine above which a planted feature counts as recovered
RECOVERED_COS = 0.9


def _unit(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def recovery(found: Any, planted: Any, chunk: int = 1024) -> dict[str, float]:
    """Direction recovery of ``found`` (``Float[Tensor, "n d"]``) against ``planted`` (``Float[Tensor, "F d"]``).

    Returns:
        ``recovery``, ``recovered``, ``precision``, ``mcc_directions`` (see the module docstring), all in 0..1.

    Raises:
        ValueError: the two live in spaces of different dimension, or ``found`` is empty.
    """
    import torch
    from sae_lens.synthetic import mean_correlation_coefficient

    if found.ndim != 2 or found.shape[1] != planted.shape[1]:
        raise ValueError(f"found directions {tuple(found.shape)} do not live in the world's {planted.shape[1]}-d space")
    if found.shape[0] == 0:
        raise ValueError("no found directions")
    f, p = _unit(found.float()), _unit(planted.float())
    best_planted = torch.zeros(p.shape[0])
    best_found = torch.zeros(f.shape[0])
    for i in range(0, p.shape[0], chunk):
        c = (p[i : i + chunk] @ f.T).abs()
        best_planted[i : i + chunk] = c.max(1).values
        best_found = torch.maximum(best_found, c.max(0).values)
    return {
        "recovery": float(best_planted.mean()),
        "recovered": float((best_planted > RECOVERED_COS).float().mean()),
        "precision": float(best_found.mean()),
        "mcc_directions": float(mean_correlation_coefficient(f, p)),
    }


def correlations(found_acts: Any, planted_acts: Any) -> Any:
    """``Float[Tensor, "F n"]`` Pearson correlations of planted (sparse COO ``"m F"``) and found (dense ``"m n"``)
    activations over the same ``m`` samples; 0 where either is constant."""
    import torch

    a = found_acts.double()
    m = a.shape[0]
    mu_a = a.mean(0)
    sd_a = a.std(0, unbiased=False)
    p = planted_acts.coalesce()
    idx, val = p.indices(), p.values().double()
    n_f = p.shape[1]
    sum_p = torch.zeros(n_f, dtype=torch.float64).index_add_(0, idx[1], val)
    sum_p2 = torch.zeros(n_f, dtype=torch.float64).index_add_(0, idx[1], val * val)
    mu_p = sum_p / m
    sd_p = (sum_p2 / m - mu_p**2).clamp(min=0).sqrt()
    pt = torch.sparse_coo_tensor(torch.stack([idx[1], idx[0]]), val, size=(n_f, m), check_invariants=True)
    cross = torch.sparse.mm(pt, a) / m  # F n: E[p a]
    cov = cross - mu_p[:, None] * mu_a[None, :]
    denom = sd_p[:, None] * sd_a[None, :]
    return torch.where(denom > 1e-12, cov / denom.clamp(min=1e-300), torch.zeros_like(cov)).float()


def mcc_activations(found_acts: Any, planted_acts: Any) -> float:
    """The mean correlation coefficient of matched activations (see the module docstring); in -1..1."""
    from scipy.optimize import linear_sum_assignment

    corr = correlations(found_acts, planted_acts)
    rows, cols = linear_sum_assignment(corr.numpy(), maximize=True)
    return float(corr[rows, cols].mean()) if len(rows) else 0.0
