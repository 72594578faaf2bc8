"""The zoo kit's language-model trainer: one resumable loop for every zoo recipe.

A recipe gives a model (a ``HookedTransformer``), a pure data stream ``batch_at(step)`` (the token ids
of training step ``step``; the same step always gives the same batch, so a resumed run sees exactly the
batches it would have seen) and a :class:`Schedule`. :func:`train_lm` trains with next-token
cross-entropy under AdamW (no weight decay on biases, LayerNorm and embeddings' 1-d parameters), clips
the gradient norm at 1.0 and checkpoints to ``work/lm.safetensors`` every ``checkpoint_every_s``
seconds: model and optimizer tensors, with the step, losses and learning curve as JSON in the
safetensors header (tensors only, nothing executable). Killed at any point, a rerun continues from the last
checkpoint: the steps after it are redone from the same batches, none is lost or repeated twice in
the final weights, so the result equals an uninterrupted run's (tested, bit for bit, on a small model in
float32 and bfloat16). At chess-mini v3's size under bfloat16 autocast two runs from the same weights and
batches first differed at step 18 (by 1e-5 in the logged loss; CPU, 2 threads): there the resumed run is the
same run up to the kernels' rounding, not bit for bit.

The learning rate follows warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): linear
warmup to ``lr``, constant, then a linear decay to ``min_lr`` over the last ``decay_steps`` steps.
Because the stable phase does not depend on the total, a long run can be extended or stopped early by
changing ``Schedule.steps`` before its decay began (the work directory does not depend on ``steps``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHECKPOINT = "lm.safetensors"
PROGRESS = "progress.json"


def transformer_config(
    name: str, *, n_layers: int, d_model: int, n_heads: int, d_head: int, d_mlp: int, n_ctx: int, d_vocab: int,
    **extra: Any,
) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (plain JSON types) of a zoo model: GELU, LayerNorm,
    learned absolute positions, CPU, ``model_name`` and ``original_architecture`` = ``name``; ``extra`` adds
    or overrides fields (``default_prepend_bos``, ``seed``, ``attn_only`` ...)."""
    return {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_head": d_head, "d_mlp": d_mlp,
            "n_ctx": n_ctx, "d_vocab": d_vocab, "act_fn": "gelu", "normalization_type": "LN",
            "positional_embedding_type": "standard", "model_name": name, "original_architecture": name,
            "device": "cpu", **extra}  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """Optimisation of one LM run.

    Attributes:
        steps: total optimizer steps (may change between resumes while ``step < steps - decay_steps``).
        lr: peak (stable) learning rate.
        warmup_steps: linear warmup from ``lr / warmup_steps`` to ``lr``.
        decay_steps: the last ``decay_steps`` steps decay linearly from ``lr`` to ``min_lr``.
        min_lr: learning rate at the last step.
        weight_decay: AdamW weight decay on parameters with 2 or more dimensions.
        betas: AdamW betas.
        grad_clip: maximum global gradient norm.
    """

    steps: int
    lr: float = 1e-3
    warmup_steps: int = 200
    decay_steps: int = 0
    min_lr: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup_steps < 0 or not 0 <= self.decay_steps <= self.steps:
            raise ValueError(f"need steps >= 1, warmup_steps >= 0, 0 <= decay_steps <= steps; got {self}")

    @property
    def decay_start(self) -> int:
        return self.steps - self.decay_steps

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if step < self.decay_start:
            return self.lr
        frac = (step - self.decay_start + 1) / max(1, self.decay_steps)
        return self.lr + (self.min_lr - self.lr) * min(1.0, frac)

    def key(self) -> dict[str, Any]:
        """The fields that fix the trajectory of the stable phase (``steps`` and the decay length excluded)."""
        d = asdict(self)
        d.pop("steps")
        d.pop("decay_steps")
        return d


def hooked_transformer(config: dict[str, Any], tokenizer: Any) -> Any:
    """A fresh ``HookedTransformer`` of ``config`` (:func:`transformer_config`) with ``tokenizer`` (a transformers
    tokenizer), initialised by TransformerLens (``config["seed"]`` or torch's global generator).

    TransformerLens rebuilds the tokenizer from its ``name_or_path``, so it is saved to a temporary directory
    and loaded from there (``deeprobe_bench.subject.load_tokenizer``): no network, no cache.
    """
    import tempfile

    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import load_tokenizer, quiet_hooked_transformer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return quiet_hooked_transformer(HookedTransformerConfig(**config), load_tokenizer(Path(tmp)))


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and check that it is ours and not writable by others.

    Raises:
        PermissionError: the directory belongs to another user or is group/world writable.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user (uid {st.st_uid}); refusing to use it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"{path} is writable by other users; refusing to use it (chmod 700 {path})")
    return path


def cache_root() -> Path:
    """``$DEEPROBE_CACHE`` or ``~/.cache/deeprobe_bench``: the root of zoo work directories.

    With the activation cache switched off (``DEEPROBE_CACHE=off``) checkpoints still need a home: the
    default folder, never a relative ``off/`` folder in the working directory.
    """
    root = os.environ.get("DEEPROBE_CACHE") or ""
    if root.lower() in ("off", "0", "none", ""):
        return Path.home() / ".cache" / "deeprobe_bench"
    return Path(root)


def work_dir(name: str, key: dict[str, Any]) -> Path:
    """``<cache>/zoo-work/<name>-<sha256(key)[:12]>``: checkpoints of one run, private (0700).

    ``key`` holds everything that fixes the run (model config, data, seed, :meth:`Schedule.key`), so a
    changed recipe never resumes another's checkpoint.
    """
    import hashlib

    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"a work directory name must be one plain path component, got {name!r}")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    root = private_dir(cache_root() / "zoo-work")
    return private_dir(root / f"{name}-{digest}")


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _optimizer_tensors(opt: Any, names: dict[int, str]) -> dict[str, Any]:
    out = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{names[pid]}.{k}"] = v.detach().reshape(v.shape).contiguous().clone()
    return out


def save_checkpoint(path: Path, model: Any, opt: Any, state: dict[str, Any]) -> None:
    """Write model and AdamW tensors with ``state`` (JSON) in the header, atomically (tmp + rename)."""
    from safetensors.torch import save_file

    names = {i: n for i, (n, _) in enumerate(model.named_parameters())}
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tensors.update(_optimizer_tensors(opt, names))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})
    tmp.replace(path)


def load_checkpoint(path: Path, model: Any, opt: Any = None) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into ``model`` and ``opt`` (``None``: the model only, to
    measure it); returns ``state``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from deeprobe_bench.api import UserError

    try:
        with safe_open(str(path), framework="pt") as fh:
            state = json.loads(fh.metadata()["state"])
        tensors = load_file(str(path))
    except Exception as e:  # a planted, truncated or foreign file: refused, never deserialised as objects
        raise UserError(f"resume checkpoint {path} is not a checkpoint of this kit ({type(e).__name__}); "
                        "delete it to train from the start") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if opt is None:
        return state
    sd = opt.state_dict()
    for pid, name in enumerate(n for n, _ in model.named_parameters()):
        st = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"opt.{name}.") and
              k.count(".") == name.count(".") + 2}  # fmt: skip
        if st:
            sd["state"][pid] = st
    opt.load_state_dict(sd)
    return state


def make_optimizer(model: Any, schedule: Schedule) -> Any:
    """AdamW over the trainable parameters: weight decay on those with 2+ dimensions only."""
    import torch

    params = [p for _, p in model.named_parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": schedule.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=schedule.lr,
        betas=schedule.betas,
    )


def tied(model: Any) -> Any:
    """A module training ``model`` (a ``HookedTransformer``) with its unembedding tied to the embedding:
    ``logits = ln_final(resid) @ W_E.T + b_U``. ``W_U`` gets no gradient; call :func:`untie` after
    training to copy ``W_E.T`` into it (the saved model is a plain HookedTransformer)."""
    from torch import nn

    class Tied(nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.cfg = inner.cfg

        def forward(self, tokens: Any) -> Any:
            m = self.inner
            return m.ln_final(m(tokens, stop_at_layer=m.cfg.n_layers)) @ m.embed.W_E.T + m.unembed.b_U

    return Tied(model)


def untie(model: Any) -> Any:
    """Copy ``W_E.T`` into ``W_U`` of a ``HookedTransformer`` trained through :func:`tied`; returns it."""
    import torch

    with torch.no_grad():
        model.unembed.W_U.copy_(model.embed.W_E.T)
    return model


class WorkDirBusy(RuntimeError):
    """Another process holds the work directory's lock (it is training this run now)."""


def _lock(work: Path) -> Any:
    """An exclusive ``flock`` on ``work/lock`` (released when the returned file is closed).

    Raises:
        WorkDirBusy: another process holds it.
    """
    import fcntl

    fh = open(Path(work) / "lock", "a")  # noqa: SIM115 - closed by the caller
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise WorkDirBusy(f"another process is training in {work} (wait for it, or stop it: it resumes later)") from None
    return fh


def ensure_free(work: Path) -> None:
    """Fail early, before any work, when another process is training in ``work``.

    Raises:
        WorkDirBusy: another process holds ``work``'s lock.
    """
    _lock(private_dir(work)).close()


def train_lm(
    model: Any,
    batch_at: Callable[[int], Any],
    schedule: Schedule,
    work: Path,
    *,
    pad: int | None = None,
    eval_fn: Callable[[Any], dict[str, float]] | None = None,
    eval_every: int = 0,
    checkpoint_every_s: float = 180.0,
    stop_after_s: float | None = None,
    stop_at_step: int | None = None,
    autocast: str | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place with next-token cross-entropy, resuming from ``work/lm.safetensors``.

    Args:
        model: a ``HookedTransformer`` (``model(tokens) -> Float[Tensor, "batch pos vocab"]``).
        batch_at: ``step -> Int[Tensor, "batch pos+1"]`` token ids (inputs ``[:, :-1]``, targets ``[:, 1:]``),
            or ``(inputs, targets)`` (``Int[Tensor, "batch pos"]`` each, targets -100 where ignored), or
            ``(inputs, targets, weight)`` with ``Float[Tensor, "batch pos"]`` loss weights (the loss is the
            weighted mean). Must be a pure function of ``step``.
        schedule: optimisation (:class:`Schedule`).
        work: private directory of this run (:func:`work_dir`).
        pad: target id ignored by the loss (``None``: none ignored).
        eval_fn: ``model -> {metric: value}`` run every ``eval_every`` steps and at the end (model in
            eval mode); points go to the learning curve.
        checkpoint_every_s: seconds between checkpoints (and one at the end).
        stop_after_s: return (after a checkpoint) once this many seconds have passed in this call, with
            ``done`` False; ``None``: run to ``schedule.steps``.
        stop_at_step: return (after a checkpoint) at this step, with ``done`` False. At the end of the stable
            phase (``schedule.decay_start``) this is the warmup-stable-decay branch point (Hu et al. 2024,
            MiniCPM, arXiv 2404.06395): a copy of the work directory taken there can be decayed and measured,
            and the run still extended from the copy with a larger ``schedule.steps``.
        autocast: ``"bf16"``: forward pass under ``torch.autocast("cpu", bfloat16)`` (weights, optimizer and
            loss stay float32; about 1.6x faster per step on CPUs with AVX512-BF16); ``None``: float32.

    Returns:
        ``{"done", "step", "first_loss", "final_loss" (mean of the last 100), "learning_curve",
        "lm_wall_time_s" (all sessions), "steps_per_s" (this call)}``.

    Raises:
        WorkDirBusy: another process is training in ``work``.
        ValueError: the checkpoint is past the decay start of a changed ``schedule`` (its lr history
            would differ from the schedule's), or was decaying under another schedule.
    """
    if autocast not in (None, "bf16"):
        raise ValueError(f"autocast must be None or 'bf16', got {autocast!r}")
    lock = _lock(private_dir(work))
    for stale in [*Path(work).glob("*.tmp"), *Path(work).glob(".tmp*")]:  # left by a run killed while saving
        stale.unlink(missing_ok=True)
    try:
        return _train(model, batch_at, schedule, Path(work), pad, eval_fn, eval_every, checkpoint_every_s, stop_after_s,
                      stop_at_step, autocast)  # fmt: skip
    finally:
        lock.close()


@contextlib.contextmanager
def torch_threads(n: int, seed: int | None = None) -> Iterator[None]:
    """Run a recipe stage with ``n`` torch threads, the caller's count restored after (also on error).

    With ``seed``, Python's, NumPy's and torch's global generators are seeded with it first, in that order
    (what every recipe did by hand before its first random draw).
    """
    import random

    import numpy as np
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        yield
    finally:
        torch.set_num_threads(before)


def _train(model: Any, batch_at: Callable[[int], Any], schedule: Schedule, work: Path, pad: int | None,
           eval_fn: Any, eval_every: int, checkpoint_every_s: float, stop_after_s: float | None,
           stop_at_step: int | None = None, autocast: str | None = None) -> dict[str, Any]:  # fmt: skip
    import contextlib

    import numpy as np
    import torch
    import torch.nn.functional as F

    opt = make_optimizer(model, schedule)
    cfg = getattr(model, "cfg", None)
    name = cfg.get("model_name", "lm") if isinstance(cfg, dict) else getattr(cfg, "model_name", "lm")
    ckpt = Path(work) / CHECKPOINT
    state: dict[str, Any] = {"step": 0, "losses": [], "curve": [], "wall": 0.0, "decay_start": None}
    if ckpt.exists():
        state = load_checkpoint(ckpt, model, opt)
        logger.info("resuming %s at step %d from %s", name, state["step"], ckpt)
        ds = state.get("decay_start")
        if ds is not None and ds != schedule.decay_start:
            raise ValueError(
                f"{ckpt} was already decaying from step {ds}; its schedule cannot change now (decay_start "
                f"{schedule.decay_start})"
            )
        if ds is None and schedule.decay_steps and state["step"] > schedule.decay_start:
            raise ValueError(
                f"{ckpt} is at step {state['step']}, past the decay start {schedule.decay_start} of a {schedule.steps}-step "
                f"schedule: give at least {state['step'] + schedule.decay_steps} steps"
            )
    step = state["step"]
    ignore = -100 if pad is None else pad
    start, last_save, start_step = time.time(), time.time(), step
    wall0 = state["wall"]

    def save() -> None:
        state["step"] = step
        state["wall"] = wall0 + time.time() - start
        save_checkpoint(ckpt, model, opt, state)
        _atomic_json(Path(work) / PROGRESS, {k: v for k, v in state.items() if k != "losses"} |
                     {"last_loss": float(np.mean(state["losses"][-100:])) if state["losses"] else None,
                      "steps": schedule.steps, "schedule": asdict(schedule)})  # fmt: skip

    def evaluate() -> None:
        if eval_fn is None:
            return
        model.eval()
        point = {"step": step, "loss": float(np.mean(state["losses"][-100:])) if state["losses"] else None,
                 **eval_fn(model), "wall_time_s": round(wall0 + time.time() - start, 1)}  # fmt: skip
        model.train()
        state["curve"].append(point)
        logger.info("%s eval %s", name, json.dumps(point))

    model.train()
    end = schedule.steps if stop_at_step is None else min(schedule.steps, stop_at_step)
    while step < end:
        batch = batch_at(step)
        if isinstance(batch, tuple):
            inputs, targets, weight = (*batch, None) if len(batch) == 2 else batch
        else:
            inputs, targets, weight = batch[:, :-1], batch[:, 1:], None
        lr = schedule.lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        if step >= schedule.decay_start and schedule.decay_steps:
            state["decay_start"] = schedule.decay_start
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast == "bf16" else contextlib.nullcontext():
            logits = model(inputs)
        logits = logits.float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none",
                              ignore_index=ignore if not isinstance(batch, tuple) else -100)  # fmt: skip
        counted = (targets.reshape(-1) != (ignore if not isinstance(batch, tuple) else -100)).float()
        if weight is not None:
            counted = counted * weight.reshape(-1).float()
        loss = (nll * counted).sum() / counted.sum().clamp(min=1e-12)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        opt.step()
        state["losses"].append(round(float(loss.item()), 5))
        step += 1
        if step % 50 == 0:
            rate = (step - start_step) / max(1e-9, time.time() - start)
            logger.info("%s step %d loss %.4f lr %.2e (%.3f steps/s)", name, step,
                        float(np.mean(state["losses"][-50:])), lr, rate)  # fmt: skip
        if eval_every and step % eval_every == 0 and step < schedule.steps:
            evaluate()
        if time.time() - last_save > checkpoint_every_s:
            save()
            last_save = time.time()
        if stop_after_s is not None and time.time() - start > stop_after_s:
            break
    done = step >= schedule.steps
    if done and (not state["curve"] or state["curve"][-1]["step"] != step):
        evaluate()
    save()
    model.eval()
    losses = state["losses"]
    return {
        "done": done,
        "step": step,
        "first_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(losses[-100:])) if losses else None,
        "learning_curve": state["curve"],
        "lm_wall_time_s": round(state["wall"], 1),
        "steps_per_s": round((step - start_step) / max(1e-9, time.time() - start), 4),
    }
