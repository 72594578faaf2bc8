"""``sae``: SAE latents ranked without supervision, by activation frequency at the task positions.

The unsupervised baseline of the benchmark: the subject's SAE at the task's hook, its latents ordered by
how often they fire (activation > 0) on the train split at the positions the task intervenes at
(``ctx.site_acts`` when the task gives them, else ``ctx.train_acts``). All latents (or the ``n``
most frequent) are returned in that order, their decoder rows as directions and their SAE activations as
encoder.
The same ranking is the prior and candidate pool of the ``mcts`` and ``greedy`` searches.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method

#: the sanity-baseline variant names (:data:`deeprobe_bench.sanity_saes.SANITY_ARCHS`, kept torch-free here)
SANITY_ARCHS = ("frozen-decoder", "soft-frozen-decoder", "frozen-encoder")


def latent_frequency(sae, acts):
    """``Float[Tensor, "d_sae"]``: fraction of rows of ``acts`` (``"n d_model"``) where each latent is > 0."""
    import torch

    with torch.no_grad():
        return (sae.encode(acts.float()) > 0).float().mean(0)


def rank_latents(ctx: DiscoveryContext, method: str, sae=None):
    """``(order, frequency)``: all latents of ``sae`` (default: the hook's default SAE) by descending
    frequency at the task positions (ties: index)."""
    import torch

    sae = sae if sae is not None else ctx.require_sae(method)
    freq = latent_frequency(sae, ctx.site_acts if ctx.site_acts is not None else ctx.train_acts)
    order = sorted(range(len(freq)), key=lambda i: (-float(freq[i]), i))
    return torch.tensor(order), freq


def latent_features(sae, hook_name: str, latents, scores=None, selected=None, meta=None) -> FeatureSet:
    """A FeatureSet of SAE latents: decoder rows as directions, ``sae.encode`` restricted as encoder."""
    import torch

    idx = torch.as_tensor(latents, dtype=torch.long)

    def encoder(x):
        with torch.no_grad():
            return sae.encode(x.float())[..., idx]

    return FeatureSet(
        hook_name=hook_name,
        directions=sae.W_dec.detach()[idx].float(),
        encoder=encoder,
        scores=None if scores is None else torch.as_tensor(scores, dtype=torch.float32),
        selected=selected,
        meta={"latents": idx.tolist(), **(meta or {})},
    )


def decoder_directions(sae, chunk: int = 4096):
    """``Float[Tensor, "d_sae d_in"]``: row i = ``decode(e_i) - decode(0)``, the direction latent i writes.

    ``sae.decode`` is affine in the latents for the SAEs of sae_lens (a TopK SAE with
    ``rescale_acts_by_decoder_norm`` divides by the decoder norm, so the raw ``W_dec`` row is not it).
    When ``decode(f) - decode(0) = f @ W_dec`` holds for a Gaussian random ``f`` (for an affine decode
    whose matrix differs from ``W_dec`` this fails with probability 1), the rows are ``W_dec`` itself:
    ``O(d_sae d_in)``. Otherwise ``decode`` runs on the identity in chunks: ``O(d_sae^2 d_in)``, 460
    GFLOP at 24,576 latents x 768.
    """
    import torch

    d_sae = sae.cfg.d_sae
    with torch.no_grad():
        zero = sae.decode(torch.zeros(1, d_sae))
        w_dec = sae.W_dec.detach().float()
        f = torch.randn(2, d_sae, generator=torch.Generator().manual_seed(0))
        linear = f @ w_dec
        if float((sae.decode(f) - zero - linear).norm()) <= 1e-4 * float(linear.norm()):
            return w_dec.clone()
        rows = [sae.decode(torch.eye(d_sae)[i : i + chunk]) - zero for i in range(0, d_sae, chunk)]
    return torch.cat(rows).float()


@dataclass
class SAEConfig:
    """Options of ``sae``.

    Attributes:
        n: how many of the most frequent latents to return; None (the default): all of them, so that
            coverage and reconstruction see the whole dictionary, as Karvonen et al. 2024 score SAEs.
        arch: which of the subject's SAEs at the hook (a variant name such as ``standard``, ``topk``,
            ``panneal``, see ``Subject.sae_variants``); empty for the hook's default SAE. The random-SAE
            sanity baselines of Korznikov et al. 2026 (arXiv 2602.14111) are variants too, where a subject
            ships them: ``frozen-decoder``, ``soft-frozen-decoder``, ``frozen-encoder``
            (:mod:`deeprobe_bench.sanity_saes`, trained with the recipe and budget of the real SAE).
    """

    n: int | None = None
    arch: str = ""

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 1:
            raise ValueError("n must be >= 1")


class SAELatents(Method):
    """The unsupervised baseline: the subject's SAE latents at the task hook, ordered by how often they fire
    (activation > 0) on the train split at the task's positions.

    Returns all latents (or the ``n`` most frequent): decoder rows as directions, SAE activations as
    encoder, scores = firing frequency in [0, 1].
    """

    name = "sae"
    description = "SAE latents ranked by activation frequency at the task positions (no supervision)"
    supervision = "none"
    Config = SAEConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        sae = ctx.require_sae(self.name, self.config.arch or None)
        order, freq = rank_latents(ctx, self.name, sae)
        top = order if self.config.n is None else order[: self.config.n]
        meta = {"ranking": "frequency", "sae": {"arch": self.config.arch or "default", "d_sae": sae.cfg.d_sae}}
        if self.config.arch in SANITY_ARCHS:
            meta["sanity_baseline"] = self.config.arch
        return latent_features(sae, ctx.hook_name, top, scores=freq[top], meta=meta)
