"""The random-SAE sanity baselines of Korznikov et al. 2026 (arXiv 2602.14111), trained with sae_lens.

"Sanity Checks for Sparse Autoencoders: Do SAEs Beat Random Baselines?" asks whether a trained SAE beats
an SAE whose feature directions (or activation patterns) are pinned to random values. Its three baselines,
each trained with the same recipe and budget as the SAE it is compared with:

- ``frozen-decoder``: the decoder ``W_dec`` stays at its random initialisation; the encoder and both
  biases train. The feature *directions* are random; only which latent fires when is learned.
- ``soft-frozen-decoder``: the decoder trains, but every row keeps a cosine similarity >= ``min_cos``
  (0.8 in the paper) with its random initial value. Here this is enforced by projection: before every
  training step and once after the last, a row whose cosine fell below ``min_cos`` is moved to the
  nearest direction on the cone ``cos = min_cos`` around its initial direction (its norm kept). The paper
  states the constraint, not how it is enforced; the projection is our choice.
- ``frozen-encoder``: the encoder ``W_enc`` stays at its random initialisation (sae_lens initialises it
  as the transpose of the random decoder); the decoder and both biases train. The activation *pattern*
  is a fixed random projection (thresholded by the trained bias).

This module is a thin layer over :func:`deeprobe_bench.sae_training.train_sae`: it passes a ``sae_class``
wrapper that applies the constraint to the sae_lens training SAE of the base architecture, so the
recipe (input scaling, learning-rate schedule, batch order, steps) is exactly the trained SAE's. The
zoo kit can call :func:`train_sanity_sae` wherever it calls ``train_sae``.
"""

from __future__ import annotations

from typing import Any

#: the baseline names, usable as SAE variants (``sae -M arch=frozen-decoder``)
SANITY_ARCHS: tuple[str, ...] = ("frozen-decoder", "soft-frozen-decoder", "frozen-encoder")

#: the paper's cosine bound of the soft-frozen decoder
MIN_COS = 0.8


def project_to_cone(w: Any, w0: Any, min_cos: float) -> Any:
    """Rows of ``w`` moved onto the cone ``cos(w_i, w0_i) >= min_cos`` where they lie outside it.

    A row outside the cone is replaced by ``|w_i| (min_cos u_i + sqrt(1 - min_cos^2) r_i)`` with ``u_i``
    the unit initial row and ``r_i`` the unit component of ``w_i`` orthogonal to ``u_i`` (the nearest
    direction on the cone); a row with no orthogonal component becomes ``|w_i| u_i``. Rows inside the cone
    are returned unchanged.

    Args:
        w: ``Float[Tensor, "n d"]`` current rows.
        w0: ``Float[Tensor, "n d"]`` initial rows (same shape).
        min_cos: the bound, in ``(-1, 1]``.

    Returns:
        ``Float[Tensor, "n d"]``, a new tensor.

    Raises:
        ValueError: shapes differ or ``min_cos`` is out of range.
    """
    import torch

    if tuple(w.shape) != tuple(w0.shape):
        raise ValueError(f"shapes differ: {tuple(w.shape)} vs {tuple(w0.shape)}")
    if not -1 < min_cos <= 1:
        raise ValueError(f"min_cos must be in (-1, 1], got {min_cos}")
    u = w0 / w0.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    norm = w.norm(dim=-1, keepdim=True)
    along = (w * u).sum(-1, keepdim=True)
    cos = along / norm.clamp(min=1e-12)
    r = w - along * u
    r_norm = r.norm(dim=-1, keepdim=True)
    has_r = r_norm > 1e-6 * norm  # else (anti)parallel up to rounding: no orthogonal direction to keep
    r_unit = torch.where(has_r, r / r_norm.clamp(min=1e-12), torch.zeros_like(r))
    side = (1 - min_cos**2) ** 0.5 * has_r
    on_cone = norm * (min_cos * u + side * r_unit)
    on_cone = on_cone / on_cone.norm(dim=-1, keepdim=True).clamp(min=1e-12) * norm
    return torch.where(cos < min_cos, on_cone, w)


def constrained(variant: str, min_cos: float = MIN_COS):
    """The ``sae_class`` wrapper of :func:`deeprobe_bench.sae_training.train_sae` for one baseline.

    Returns:
        ``cls -> subclass``: the subclass freezes ``W_dec`` (``frozen-decoder``) or ``W_enc``
        (``frozen-encoder``) at initialisation, or projects ``W_dec`` onto the cone around its initial
        rows before every training step and before saving (``soft-frozen-decoder``). Its ``record``
        attribute holds what was constrained and, after training, the mean / min cosine of the decoder
        rows to their initial values.

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in SANITY_ARCHS:
        raise ValueError(f"unknown sanity baseline {variant!r}; choose from {', '.join(SANITY_ARCHS)}")

    def wrap(base: type) -> type:
        class Constrained(base):  # type: ignore[misc, valid-type]
            def __init__(self, cfg: Any, *args: Any, **kwargs: Any) -> None:
                super().__init__(cfg, *args, **kwargs)
                self._w_dec0 = self.W_dec.detach().clone()
                self._w_enc0 = self.W_enc.detach().clone()
                if variant == "frozen-decoder":
                    self.W_dec.requires_grad_(False)
                elif variant == "frozen-encoder":
                    self.W_enc.requires_grad_(False)
                self.record = {"variant": variant, "base": base.__name__,
                               "min_cos": min_cos if variant == "soft-frozen-decoder" else None}  # fmt: skip

            def _project(self) -> None:
                if variant == "soft-frozen-decoder":
                    import torch

                    with torch.no_grad():
                        self.W_dec.copy_(project_to_cone(self.W_dec, self._w_dec0, min_cos))

            def training_forward_pass(self, step_input: Any) -> Any:
                self._project()  # after the previous optimiser step
                return super().training_forward_pass(step_input)

            def save_inference_model(self, path: Any) -> Any:
                import torch

                self._project()  # after the last optimiser step
                with torch.no_grad():
                    cos = torch.nn.functional.cosine_similarity(self.W_dec, self._w_dec0, dim=-1)
                    enc_cos = torch.nn.functional.cosine_similarity(self.W_enc, self._w_enc0, dim=0)
                self.record.update(
                    decoder_cos_to_init_mean=float(cos.mean()),
                    decoder_cos_to_init_min=float(cos.min()),
                    encoder_cos_to_init_mean=float(enc_cos.mean()),
                )
                return super().save_inference_model(path)

        Constrained.__name__ = Constrained.__qualname__ = f"{variant.title().replace('-', '')}{base.__name__}"
        return Constrained

    return wrap


def train_sanity_sae(
    acts: Any,
    hook_name: str,
    variant: str,
    d_sae: int,
    seed: int,
    *,
    base: str = "topk",
    min_cos: float = MIN_COS,
    **recipe: Any,
) -> Any:
    """Train one sanity baseline with the recipe of :func:`deeprobe_bench.sae_training.train_sae`.

    Args:
        acts: ``Float[Tensor, "n d_in"]`` training activations (as for ``train_sae``).
        hook_name: where they come from (SAE metadata).
        variant: one of :data:`SANITY_ARCHS`.
        d_sae: latents.
        seed: seeds the random initialisation (so the frozen weights) and the batch order; with the same
            seed the baseline starts from the same random SAE as ``train_sae(..., arch=base, seed=seed)``.
        base: the architecture whose recipe and training SAE are constrained (``standard``, ``topk``,
            ``panneal``).
        min_cos: the soft-frozen decoder's bound (paper: 0.8).
        **recipe: the other keyword arguments of ``train_sae`` (``steps``, ``batch``, ``lr``, ``k``, ``l1`` ...).

    Returns:
        An inference ``sae_lens.SAE`` of the base architecture; ``training_record`` says what was
        constrained and the decoder's mean / min cosine to its initial rows after training.

    Raises:
        ValueError: an unknown variant or base (or what ``train_sae`` raises).
    """
    from deeprobe_bench.sae_training import train_sae

    return train_sae(acts, hook_name, base, d_sae, seed, sae_class=constrained(variant, min_cos), **recipe)
