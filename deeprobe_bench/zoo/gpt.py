"""A plain-PyTorch GPT with the layout of a TransformerLens ``HookedTransformer``, for fast CPU training.

TransformerLens' hook points and einsum attention cost about twice the time of a fused
``scaled_dot_product_attention`` block on CPU, so the zoo kit trains :class:`FastGPT` and ships the
same weights as a ``HookedTransformer`` (:func:`to_hooked`, which checks that both give the same
logits). Supported configs: pre-LN (``normalization_type="LN"``), GELU MLP, learned absolute positions,
untied unembedding, causal attention: the layout of every zoo model.
"""

from __future__ import annotations

import math
from typing import Any


def _classes() -> tuple[type, type]:
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cfg: dict[str, Any]) -> None:
            super().__init__()
            d, h, dh = cfg["d_model"], cfg["n_heads"], cfg["d_head"]
            self.h, self.dh = h, dh
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * h * dh)
            self.o = nn.Linear(h * dh, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, cfg["d_mlp"])
            self.proj = nn.Linear(cfg["d_mlp"], d)

        def forward(self, x: Any) -> Any:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, self.h * self.dh)
            x = x + self.o(z)
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class FastGPT(nn.Module):
        """``tokens Int[Tensor, "batch pos"] -> logits Float[Tensor, "batch pos d_vocab"]``."""

        def __init__(self, cfg: dict[str, Any]) -> None:
            super().__init__()
            for key, want in (("normalization_type", "LN"), ("act_fn", "gelu"), ("positional_embedding_type", "standard")):
                if cfg.get(key, want) != want:
                    raise ValueError(f"FastGPT supports {key}={want!r} only, got {cfg[key]!r}")
            self.cfg = dict(cfg)
            d = cfg["d_model"]
            self.embed = nn.Embedding(cfg["d_vocab"], d)
            self.pos = nn.Embedding(cfg["n_ctx"], d)
            self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layers"])])
            self.ln_final = nn.LayerNorm(d)
            self.unembed = nn.Linear(d, cfg["d_vocab"])
            for name, p in self.named_parameters():
                if p.ndim >= 2:
                    std = 0.02 / math.sqrt(2 * cfg["n_layers"]) if name.endswith(("o.weight", "proj.weight")) else 0.02
                    nn.init.normal_(p, std=std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, tokens: Any) -> Any:
            x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.unembed(self.ln_final(x))

    return Block, FastGPT


def fast_gpt(cfg: dict[str, Any], seed: int) -> Any:
    """A fresh :class:`FastGPT` of the ``HookedTransformerConfig`` keyword arguments ``cfg``, initialised
    (GPT-2 style: normal 0.02, residual projections scaled by ``1/sqrt(2 n_layers)``) from ``seed``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _classes()[1](cfg)


def hooked_state_dict(fast: Any) -> dict[str, Any]:
    """The weights of a :class:`FastGPT` in ``HookedTransformer`` names and shapes."""
    cfg = fast.cfg
    h, dh, d = cfg["n_heads"], cfg["d_head"], cfg["d_model"]
    sd = {k: v.detach() for k, v in fast.state_dict().items()}
    out = {"embed.W_E": sd["embed.weight"], "pos_embed.W_pos": sd["pos.weight"]}
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        w, b = sd[p + "qkv.weight"], sd[p + "qkv.bias"]
        for j, name in enumerate("QKV"):
            out[p + f"attn.W_{name}"] = w[j * h * dh : (j + 1) * h * dh].view(h, dh, d).transpose(1, 2)
            out[p + f"attn.b_{name}"] = b[j * h * dh : (j + 1) * h * dh].view(h, dh)
        out[p + "attn.W_O"] = sd[p + "o.weight"].T.reshape(h, dh, d)
        out[p + "attn.b_O"] = sd[p + "o.bias"]
        out[p + "ln1.w"], out[p + "ln1.b"] = sd[p + "ln1.weight"], sd[p + "ln1.bias"]
        out[p + "ln2.w"], out[p + "ln2.b"] = sd[p + "ln2.weight"], sd[p + "ln2.bias"]
        out[p + "mlp.W_in"], out[p + "mlp.b_in"] = sd[p + "fc.weight"].T, sd[p + "fc.bias"]
        out[p + "mlp.W_out"], out[p + "mlp.b_out"] = sd[p + "proj.weight"].T, sd[p + "proj.bias"]
    out["ln_final.w"], out["ln_final.b"] = sd["ln_final.weight"], sd["ln_final.bias"]
    out["unembed.W_U"], out["unembed.b_U"] = sd["unembed.weight"].T, sd["unembed.bias"]
    return {k: v.contiguous().clone() for k, v in out.items()}


def to_hooked(fast: Any, hooked: Any, atol: float = 1e-4) -> Any:
    """Copy the weights of ``fast`` into the ``HookedTransformer`` ``hooked`` (same config); returns it.

    Raises:
        RuntimeError: a weight has no counterpart, or the two models' logits differ by more than ``atol``
            on a random batch.
    """
    import torch

    state = hooked.state_dict()
    new = hooked_state_dict(fast)
    missing = [k for k in new if k not in state]
    if missing:
        raise RuntimeError(f"HookedTransformer has no parameters {missing}")
    state.update(new)
    hooked.load_state_dict(state)
    was_training = fast.training
    hooked.eval()
    fast.eval()
    x = torch.randint(0, fast.cfg["d_vocab"], (2, fast.cfg["n_ctx"]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((hooked(x) - fast(x)).abs().max())
    fast.train(was_training)
    if diff > atol:
        raise RuntimeError(f"HookedTransformer and FastGPT logits differ by {diff}")
    return hooked
