"""The one home of hook plumbing: hook name -> layer, capture, forward from a hook (DESIGN.md, "Layout").

Every task and method that reads or edits a TransformerLens hook point goes through these functions, as
TransformerLens keeps its own in ``utils`` and ``patching``:

- **Parsing** a hook name (``blocks.L.hook_resid_post``, ``blocks.L.mlp.hook_post``, ``hook_embed`` ...):
  :func:`block_of` (the block ``L`` a hook is in), :func:`stop_layer` (the ``stop_at_layer`` that runs just
  far enough to reach it), :func:`resume_layer` (the ``start_at_layer`` that takes its activation as
  input; residual hooks only). Names are built with TransformerLens's ``get_act_name`` (:func:`act_name`).
- **Capture** (:func:`capture`): the activations at some hooks of one no-grad forward pass that stops after
  the last block needed (``run_with_cache(names_filter=..., stop_at_layer=...)``).
- **Forward from a hook** (:func:`run_from_hook`): the logits with the activation at a hook edited. With a
  residual hook and its clean activation at hand (e.g. from the activation cache), the pass starts at the
  hook (``start_at_layer``) from the edited activation and skips every block below it; otherwise the whole
  model runs from the tokens with the edit applied inside the hook (:func:`run_hooked`).
- **Positions** (:func:`at_positions`, :func:`add_at_positions`): read or add at per-example token
  positions, the sites tasks intervene at.
- **Counting** (:class:`Counter`): batched passes and sequences a computation spent, for cost records.

Forward passes go through ``model.__call__`` (never ``model.forward`` directly, as ``run_with_hooks`` does),
so ``Subject.forward_passes`` (a forward pre-hook) counts every one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from deeprobe_bench.api import UserError

#: hook points before the first block: a pass that stops at layer 0 computes them
EMBED_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens", "hook_tokens_embed")

_BLOCK = re.compile(r"blocks\.(\d+)\.")
_RESID = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|post)")


def act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name of ``name`` at ``layer`` (``act_name("resid_post", 1)`` -> ``blocks.1.hook_resid_post``;
    ``act_name("post", 0)`` -> ``blocks.0.mlp.hook_post``): TransformerLens's ``get_act_name``."""
    try:
        from transformer_lens.utilities import get_act_name
    except ImportError:  # transformer-lens < 3
        from transformer_lens.utils import get_act_name

    return get_act_name(name, layer, layer_type)


def block_of(hook_name: str, n_layers: int | None = None) -> int | None:
    """The block ``L`` of a hook point inside a block (``blocks.L.…``), else None (``hook_embed``, ``ln_final.…``).

    Args:
        hook_name: a TransformerLens hook name.
        n_layers: the model's number of blocks; when given, a block beyond it is an error.

    Raises:
        UserError: ``L >= n_layers``.
    """
    m = _BLOCK.match(hook_name)
    if m is None:
        return None
    layer = int(m.group(1))
    if n_layers is not None and layer >= n_layers:
        raise UserError(f"hook {hook_name} is beyond the model's {n_layers} layers")
    return layer


def stop_layer(hook_names: Iterable[str], n_layers: int) -> int | None:
    """The ``stop_at_layer`` of a pass that computes every hook of ``hook_names`` and no block after the last one
    needed: ``max(L) + 1`` over their blocks, 0 when all are embedding hooks, None (the whole model) when one is
    after the blocks (``ln_final.…``) or the last block is needed.

    Raises:
        UserError: a hook in a block beyond ``n_layers``.
    """
    stop = 0
    for name in hook_names:
        layer = block_of(name, n_layers)
        if layer is None:
            if name.split(".")[0] not in EMBED_HOOKS:
                return None
            continue
        stop = max(stop, layer + 1)
    return None if stop >= n_layers else stop


def resume_layer(hook_name: str, n_layers: int) -> int | None:
    """The ``start_at_layer`` whose input is the activation at ``hook_name``: ``L`` for ``blocks.L.hook_resid_pre``,
    ``L + 1`` for ``blocks.L.hook_resid_post`` (None for the last block's), None for any other hook."""
    m = _RESID.fullmatch(hook_name)
    if m is None:
        return None
    layer = int(m.group(1)) + (m.group(2) == "post")
    return layer if layer < n_layers else None


@dataclass
class Counter:
    """Batched forward and backward passes a computation spent, and its wall time.

    ``sequences`` counts the prompts pushed through those forward passes (a batched patch of ``B``
    latents over ``b`` prompts is one pass of ``B * b`` sequences), the unit compute scales with.
    """

    forward_passes: int = 0
    backward_passes: int = 0
    wall_s: float = 0.0
    sequences: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"forward_passes": self.forward_passes, "backward_passes": self.backward_passes,
                "sequences": self.sequences, "wall_s": round(self.wall_s, 4)}  # fmt: skip


def hook_names_of(model: Any) -> dict[str, Any] | None:
    """``{hook name: HookPoint}`` of a TransformerLens model (``model.hook_dict``), or None for another object."""
    hooks = getattr(model, "hook_dict", None)
    return hooks if isinstance(hooks, dict) else None


def capture(
    model: Any, tokens: Int[Tensor, "batch pos"], hook_names: list[str], counter: Counter | None = None
) -> dict[str, Tensor]:
    """Activations at ``hook_names`` of one no-grad forward pass over ``tokens``, stopped after the last block
    needed (:func:`stop_layer`).

    Args:
        model: a TransformerLens ``HookedTransformer``.
        tokens: the input tokens.
        hook_names: the hooks to read.
        counter: charged one forward pass of ``batch`` sequences, if given.

    Returns:
        ``{hook: Float[Tensor, "batch pos ..."]}`` (detached, in the model's dtype).
    """
    import torch

    wanted = set(hook_names)
    stop = stop_layer(hook_names, model.cfg.n_layers)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted, stop_at_layer=stop,
                                        return_type=None)  # fmt: skip
    if counter is not None:
        counter.forward_passes += 1
        counter.sequences += int(tokens.shape[0])
    return {h: cache[h].detach() for h in hook_names}


def run_hooked(model: Any, tokens: Int[Tensor, "batch pos"], fwd_hooks: list[tuple[str, Callable[..., Any]]]) -> Any:
    """``model(tokens)`` with ``fwd_hooks`` (``[(hook name, fn(act, hook) -> act)]``) attached for this pass,
    through ``model.__call__`` (``run_with_hooks`` calls ``forward`` directly), so that
    ``Subject.forward_passes`` counts it."""
    with model.hooks(fwd_hooks=fwd_hooks):
        return model(tokens)


def run_from_hook(
    model: Any,
    hook_name: str,
    tokens: Int[Tensor, "batch pos"],
    edit: Callable[[Tensor], Tensor] | None = None,
    act: Tensor | None = None,
    counter: Counter | None = None,
) -> Float[Tensor, "batch pos d_vocab"]:
    """The logits with the activation at ``hook_name`` replaced by ``edit(activation)``.

    With ``act`` (the clean activation at the hook for ``tokens``, e.g. cached, ``"batch pos ..."``) and a
    residual hook (:func:`resume_layer`), the pass starts at the hook: ``model(edit(act), start_at_layer=L)``,
    skipping every block below it. Otherwise the whole model runs on ``tokens`` with ``edit`` applied to the
    activation inside the hook (no hook at all when ``edit`` is None). Both give the same logits up to
    floating-point rounding; gradients flow into ``act`` and through ``edit``.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        hook_name: where the activation is edited.
        tokens: the input tokens (the whole-model path; also the batch size counted).
        edit: ``act -> act'`` of the same shape; None leaves the activation as it is.
        act: the activation at the hook, or None (always the whole-model path).
        counter: charged one forward pass of ``batch`` sequences, if given.
    """
    if counter is not None:
        counter.forward_passes += 1
        counter.sequences += int((act if act is not None else tokens).shape[0])
    start = resume_layer(hook_name, model.cfg.n_layers) if act is not None else None
    if start is not None:
        return model(act if edit is None else edit(act), start_at_layer=start)
    if edit is None:
        return model(tokens)
    return run_hooked(model, tokens, [(hook_name, lambda a, hook: edit(a))])


def replace_at_hook(model: Any, tokens: Int[Tensor, "batch pos"], hook_name: str, act: Tensor,
                    counter: Counter | None = None) -> Float[Tensor, "batch pos d_vocab"]:  # fmt: skip
    """The logits with the activation at ``hook_name`` replaced by ``act`` (same shape): :func:`run_from_hook`
    from the hook when it is a residual one, else the whole model with a replacing hook. Gradients flow into
    ``act``."""
    return run_from_hook(model, hook_name, tokens, edit=lambda _a: act, act=act, counter=counter)


def at_positions(act: Float[Tensor, "b pos d"], pos: Int[Tensor, "b k"]) -> Float[Tensor, "b k d"]:
    """``act[b, pos[b, j]]``: the activations at each example's ``k`` positions."""
    import torch

    rows = torch.arange(act.shape[0]).unsqueeze(1).expand_as(pos)
    return act[rows, pos]


def add_at_positions(act: Float[Tensor, "b pos d"], pos: Int[Tensor, "b k"], delta: Float[Tensor, "b k d"]
                     ) -> Float[Tensor, "b pos d"]:  # fmt: skip
    """A copy of ``act`` with ``delta`` added at the positions ``pos``."""
    import torch

    rows = torch.arange(act.shape[0]).unsqueeze(1).expand_as(pos)
    out = act.clone()
    out[rows, pos] = out[rows, pos] + delta
    return out
