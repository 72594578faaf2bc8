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
- **Forward from a position** (:class:`SuffixRun`): when an edit changes only the positions from some
  ``first`` on and only the last token's logits are read (IOI's logit difference, persona's steered answer),
  those positions alone are pushed through the layers after the hook, against the clean keys and values of
  the tokens before them (TransformerLens's key-value cache).
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


class SuffixRun:
    """The logits at each prompt's last token when the activation at a residual hook is edited only from a
    position ``first`` of each prompt on.

    A causal model's tokens before ``first`` cannot see the edit: their keys and values at every layer after
    the hook are those of the clean run. They are computed once, by one clean pass from the hook, and each
    edited run then pushes only the positions ``first .. last`` of each prompt through the layers after the
    hook (``start_at_layer``), attending to the cached keys and values through TransformerLens's frozen
    key-value cache (``TransformerLensKeyValueCache``; in one batch the prefixes are left-padded and the
    suffixes right-padded, both masked). The logits equal :func:`run_from_hook`'s at the last token up to
    floating-point rounding (``tests/unit/test_hooks.py``), at about ``(last - first + 1) / pos`` of its
    compute outside attention. TransformerLens's own use of the cache is generation; this is the same
    mechanism with the prefix frozen.

    Only for models with a standard positional embedding (added to the residual stream before block 0, so
    an activation at a residual hook carries its position): :meth:`applies`.

    Args:
        model: a TransformerLens ``HookedTransformer``.
        hook_name: a residual hook with a block after it (:func:`resume_layer` is not None).
        lengths: ``Int[Tensor, "n"]`` tokens per prompt; each prompt's last token is ``lengths - 1``.
        act: ``Float[Tensor, "n pos d_model"]`` the clean activations at the hook of the prompts (right-padded).
        first: ``Int[Tensor, "n"]`` the first position an edit may change (default ``lengths - 1``: the last).
        batch_size: prompts per clean pass.
        counter: charged the clean passes, if given.

    Raises:
        ValueError: the run does not apply (:meth:`applies`), or ``first`` is outside ``0 .. lengths - 1``.
    """

    def __init__(self, model: Any, hook_name: str, lengths: Int[Tensor, " n"], act: Float[Tensor, "n pos d_model"],
                 first: Int[Tensor, " n"] | None = None, batch_size: int = 256,
                 counter: Counter | None = None) -> None:  # fmt: skip
        import torch

        if not self.applies(model, hook_name):
            raise ValueError(f"no suffix run at {hook_name}: it needs a residual hook with a block after it and a "
                             f"model with a standard positional embedding")  # fmt: skip
        self.model, self.start = model, resume_layer(hook_name, model.cfg.n_layers)
        # index arithmetic happens on the CPU (``logits``): keep the indices there once
        self.lengths = lengths.long().cpu()
        self.first = self.lengths - 1 if first is None else first.long().cpu()
        if bool((self.first < 0).any()) or bool((self.first >= self.lengths).any()):
            raise ValueError("first must lie in 0 .. lengths - 1 for every prompt")
        self.act = act
        names = [f"blocks.{layer}.attn.hook_{kv}" for layer in range(self.start, model.cfg.n_layers) for kv in "kv"]
        parts: dict[str, list[Tensor]] = {n: [] for n in names}
        with torch.no_grad():
            for i in range(0, len(act), batch_size):
                if counter is not None:
                    counter.forward_passes += 1
                    counter.sequences += int(act[i : i + batch_size].shape[0])
                chunk = act[i : i + batch_size].to(device=model.cfg.device, dtype=model.cfg.dtype)
                logits, cache = model.run_with_cache(chunk, start_at_layer=self.start, names_filter=names)
                for n in names:
                    parts[n].append(cache[n])
                last = (self.lengths[i : i + batch_size] - 1).to(logits.device)
                parts.setdefault("logits", []).append(logits[torch.arange(len(last), device=logits.device), last].float())
        #: per layer from ``start`` on: clean keys and values, ``"n pos kv_heads d_head"``
        self.kv = [(torch.cat(parts[f"blocks.{layer}.attn.hook_k"]), torch.cat(parts[f"blocks.{layer}.attn.hook_v"]))
                   for layer in range(self.start, model.cfg.n_layers)]  # fmt: skip
        #: ``Float[Tensor, "n d_vocab"]`` the clean logits at each prompt's last token (of the same pass)
        self.clean_logits = torch.cat(parts["logits"])

    @staticmethod
    def applies(model: Any, hook_name: str) -> bool:
        """Whether a suffix run can start at ``hook_name``: a residual hook with a block after it, on a model whose
        position enters the residual stream only through the standard positional embedding."""
        return (resume_layer(hook_name, model.cfg.n_layers) is not None
                and model.cfg.positional_embedding_type == "standard")  # fmt: skip

    def logits(self, edited: Float[Tensor, "b pos d_model"], rows: Int[Tensor, " b"],
               counter: Counter | None = None) -> Float[Tensor, "b d_vocab"]:  # fmt: skip
        """The logits at the last token of the prompts ``rows`` with the activation at the hook replaced by
        ``edited`` (no grad; one pass).

        Args:
            edited: the edited activations at the hook, the whole width of this run's prompts; a row may repeat
                a prompt (several edits of it).
            rows: the prompt of each row of ``edited``.
            counter: charged the pass, if given.

        Raises:
            ValueError: ``edited`` does not match ``rows`` and the prompts' shape, or changes a position before
                ``first`` (that change could not be seen here).
        """
        import torch
        from transformer_lens import TransformerLensKeyValueCache, TransformerLensKeyValueCacheEntry

        rows = rows.long().cpu()
        if edited.shape[0] != len(rows) or tuple(edited.shape[1:]) != tuple(self.act.shape[1:]):
            raise ValueError(f"edited has shape {tuple(edited.shape)}; expected ({len(rows)}, "
                             f"{', '.join(map(str, self.act.shape[1:]))})")  # fmt: skip
        # index arithmetic on the CPU; the pass's inputs on the model's device (keys and values are there)
        f, n_tok = self.first[rows], self.lengths[rows]
        ar = torch.arange(edited.shape[1])
        before = (ar[None, :] < f[:, None]).to(edited.device)
        if not torch.equal(edited[before], self.act[rows.to(self.act.device)].to(edited)[before]):
            raise ValueError("the edit changes positions before `first`: a suffix run cannot see that")
        b, p, s = len(rows), int(f.max()), int((n_tok - f).max())
        device = self.kv[0][0].device if self.kv else edited.device
        every = torch.arange(b)[:, None]
        suffix = f[:, None] + torch.arange(s)[None, :]  # b s: the positions pushed through, right-padded
        prefix = torch.arange(p)[None, :] - (p - f)[:, None]  # b p: the cached positions, left-padded
        mask = torch.cat([prefix >= 0, suffix < n_tok[:, None]], 1).int().to(device)
        x = edited[every.to(edited.device), suffix.clamp(max=edited.shape[1] - 1).to(edited.device)]
        x = x.to(device=device, dtype=self.model.cfg.dtype)
        at, kv_rows = prefix.clamp(min=0).to(device), rows[:, None].to(device)
        entries = [TransformerLensKeyValueCacheEntry(k[kv_rows, at], v[kv_rows, at], frozen=True)
                   for k, v in self.kv]  # fmt: skip
        # layers below the start are never run: their entries are placeholders
        cache = TransformerLensKeyValueCache([None] * self.start + entries,  # type: ignore[list-item]
                                             mask[:, :p], frozen=True)  # fmt: skip
        if counter is not None:
            counter.forward_passes += 1
            counter.sequences += b
        with torch.no_grad():
            out = self.model(x, start_at_layer=self.start, past_kv_cache=cache, attention_mask=mask)
        return out[torch.arange(b, device=out.device), (n_tok - f - 1).to(out.device)].float()


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
