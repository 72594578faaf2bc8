"""``neurons``: the MLP neurons of the hook's layer as features (Karvonen et al. 2024's "MLP neurons" row).

For a task hook in block ``L`` (``blocks.L.hook_resid_post`` ...), the features are the ``d_mlp`` neurons of
``blocks.L.mlp``: feature ``i`` reads the neuron's activation at ``blocks.L.mlp.hook_post`` (after the
nonlinearity; ``FeatureSet.hook_name`` is that hook, so tasks evaluate the neurons there) and writes
along ``W_out[i]`` (``Float[Tensor, "d_mlp d_model"]`` row ``i``), its direction.
``FeatureSet.coordinates`` says feature ``i`` is that coordinate of the hook's activation (also recorded in
``meta["hook_coordinates"]``).

Ranking (``scores``): the fraction of train rows where the neuron's activation is > 0, when the task
gives the train inputs (``ctx.train_tokens`` and the measured positions ``ctx.train_measured``, as the
board-game tasks do); else the given order. No supervision.
Works for any task and any TransformerLens subject with MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method, UserError


@dataclass
class NeuronsConfig:
    """Options of ``neurons``.

    Attributes:
        layer: block whose MLP neurons are used; -1 (default) = the block of the task's hook.
        n: how many neurons to return (the most frequently active first); 0 = all.
    """

    layer: int = -1
    n: int = 0

    def __post_init__(self) -> None:
        if self.n < 0 or self.layer < -1:
            raise ValueError("n must be >= 0 and layer >= -1")


class Neurons(Method):
    """The MLP neurons of the hook's block (Karvonen et al. 2024's neuron row): feature ``i`` reads neuron
    ``i`` at ``blocks.L.mlp.hook_post`` and writes along ``W_out[i]``.

    Returns ``d_mlp`` features (or the ``n`` most often active) at that hook, ``coordinates`` = their
    indices, scores = the fraction of train rows where the neuron is > 0 (when the task gives train tokens).
    """

    name = "neurons"
    description = "MLP neurons of the hook's layer (activation at mlp.hook_post, direction W_out row)"
    supervision = "none"
    Config = NeuronsConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        from deeprobe_bench.hooks import act_name, block_of

        model = ctx.subject.model
        layer = self.config.layer if self.config.layer >= 0 else block_of(ctx.hook_name)
        if layer is None:
            raise UserError(f"neurons: hook {ctx.hook_name} is in no block; pass -M layer=L")
        if layer >= model.cfg.n_layers or getattr(model.cfg, "attn_only", False):
            raise UserError(f"neurons: model {ctx.subject.name} has no MLP in block {layer}")
        hook = act_name("post", layer)  # blocks.L.mlp.hook_post
        w_out = model.blocks[layer].mlp.W_out.detach().float()  # d_mlp d_model
        d_mlp = w_out.shape[0]
        scores = None
        tokens, measured = ctx.train_tokens, ctx.train_measured
        if tokens is not None:
            from deeprobe_bench import activations

            acts = activations.get(model, tokens, hook)
            rows = acts[measured] if measured is not None else acts.reshape(-1, d_mlp)
            scores = (rows > 0).float().mean(0)
        idx = list(range(d_mlp))
        if scores is not None:
            idx = sorted(idx, key=lambda i: (-float(scores[i]), i))
        if self.config.n:
            idx = idx[: self.config.n]
        index = torch.tensor(idx, dtype=torch.long)
        return FeatureSet(
            hook_name=hook,
            directions=w_out[index],
            encoder=lambda x: x.float()[..., index],
            scores=scores[index] if scores is not None else None,
            meta={"layer": layer, "hook_coordinates": idx, "ranking": "frequency" if scores is not None else "index"},
            coordinates=idx,
        )
