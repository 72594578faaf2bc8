"""Interventions shared by every task: keep or ablate the span of a feature set (DESIGN.md).

For a feature set S with directions ``D`` (rows), ``P_S`` is the orthogonal projector onto their span.
At the positions a task names, with ``mean`` the dataset mean activation at that position:

- **keep** S:   ``x' = mean + P_S (x - mean)``  (only what S carries survives; the rest is mean-ablated)
- **ablate** S: ``x' = x - P_S (x - mean)``     (S is mean-ablated; the rest survives)

One definition for every method, so SAE latents, probe weights and steering vectors compete on the same
footing. The empty set keeps nothing (``x' = mean``), the full space keeps everything (``x' = x``).
This is the mean-ablation of Wang et al. 2022 and Sparse Feature Circuits (Marks et al. 2024) applied
to a subspace instead of a set of components.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

Mode = Literal["keep", "ablate"]


def projector(directions: Float[Tensor, "n d"], rtol: float = 1e-5) -> Float[Tensor, "d d"]:
    """Orthogonal projector onto the span of the rows of ``directions``.

    Directions need not be unit norm or independent: the span is taken from an SVD, dropping singular
    values below ``rtol`` x the largest. ``n = 0`` gives the zero matrix.
    """
    d = directions.shape[-1]
    if directions.shape[0] == 0:
        return torch.zeros(d, d, dtype=directions.dtype)
    u, s, vh = torch.linalg.svd(directions.to(torch.float64), full_matrices=False)
    basis = vh[s > rtol * s.max()]
    return (basis.T @ basis).to(directions.dtype)


def apply_projection(
    x: Float[Tensor, "... d"], mean: Float[Tensor, "... d"], proj: Float[Tensor, "d d"], mode: Mode
) -> Float[Tensor, "... d"]:
    """``keep``: ``mean + P (x - mean)``; ``ablate``: ``x - P (x - mean)``."""
    kept = (x - mean) @ proj  # P is symmetric
    if mode == "keep":
        return mean + kept
    if mode == "ablate":
        return x - kept
    raise ValueError(f"unknown intervention mode {mode!r}")


def intervene_at_positions(
    resid: Float[Tensor, "batch pos d"],
    positions: Int[Tensor, "batch k"],
    mean: Float[Tensor, "batch k d"],
    proj: Float[Tensor, "d d"],
    mode: Mode,
) -> Float[Tensor, "batch pos d"]:
    """Apply keep / ablate to ``resid`` at ``positions`` (per example), leaving other positions alone.

    Args:
        resid: activations at the hook point.
        positions: for each example, the ``k`` token positions to intervene at.
        mean: the mean activation to ablate towards, per example and intervened position.
        proj: projector of the feature set (:func:`projector`).
        mode: ``keep`` or ``ablate``.

    Returns:
        A new tensor; ``resid`` is not modified.
    """
    out = resid.clone()
    rows = torch.arange(resid.shape[0]).unsqueeze(1).expand_as(positions)
    x = resid[rows, positions]
    out[rows, positions] = apply_projection(x, mean, proj, mode)
    return out


def position_hook(positions: Int[Tensor, "batch k"], mean: Float[Tensor, "batch k d"], proj, mode: Mode):
    """A TransformerLens hook function applying :func:`intervene_at_positions` to the hook's output."""

    def hook(act: Float[Tensor, "batch pos d"], hook=None) -> Float[Tensor, "batch pos d"]:
        return intervene_at_positions(act, positions, mean, proj, mode)

    return hook



# --------------------------------------------------------------------------- steering


def add_vector(
    resid: Float[Tensor, "batch pos d"], vector: Float[Tensor, " d"], mask: Float[Tensor, "batch pos"] | None = None
) -> Float[Tensor, "batch pos d"]:
    """Activation addition (ActAdd, Turner et al. 2023; CAA, Panickssery et al. 2023): ``x' = x + v``.

    Args:
        resid: activations at the hook point.
        vector: the steering vector, already multiplied by its coefficient (same units as ``resid``).
        mask: where to add it (1 = add, 0 = leave alone), e.g. every non-BOS, non-pad token; None = all.

    Returns:
        A new tensor; ``resid`` is not modified.
    """
    add = vector.to(resid.dtype).expand_as(resid)
    if mask is not None:
        add = add * mask.to(resid.dtype).unsqueeze(-1)
    return resid + add


def steering_hook(vector: Float[Tensor, " d"], mask: Float[Tensor, "batch pos"] | None = None):
    """A TransformerLens hook function applying :func:`add_vector` to the hook's output."""

    def hook(act: Float[Tensor, "batch pos d"], hook=None) -> Float[Tensor, "batch pos d"]:
        m = mask[:, : act.shape[1]] if mask is not None else None
        return add_vector(act, vector, m)

    return hook
