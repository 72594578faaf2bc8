"""SAE training for the zoo models: sae_lens ``standard`` and ``topk``, and ``panneal`` (p-annealing).

All three train on activations already in memory (``Float[Tensor, "n d_in"]``, e.g. resid_post rows at
a task's positions) through sae_lens' ``SAETrainer`` and come back as inference ``sae_lens.SAE`` objects
that ``SAE.save_model`` / ``SAE.load_from_disk`` round-trip:

- ``standard``: ReLU SAE with an L1 penalty on decoder-norm-weighted latents (sae_lens
  ``StandardTrainingSAE``).
- ``topk``: TopK SAE (Gao et al. 2024; sae_lens ``TopKTrainingSAE``).
- ``panneal``: the p-annealing SAE of Karvonen et al. 2024 (arXiv 2408.00113; the trainer
  ``trainers/p_anneal.py`` of saprmarks/dictionary_learning), written here as a sae_lens training SAE
  (:class:`PAnnealTrainingSAE`) because sae_lens has none: a ReLU SAE whose penalty is
  ``alpha * mean_batch sum_i (f_i |d_i|)^p``; p stays ``p_start`` until ``anneal_start``, then takes the
  ``n_sparsity_updates`` values of ``linspace(p_start, p_end, n)`` at the steps
  ``linspace(anneal_start, anneal_end, n)`` (:func:`p_anneal_schedule`); at each change alpha is
  rescaled by ``mean(Lp at old p) / mean(Lp at new p)`` over the last ``sparsity_queue_length`` steps,
  so the penalty is continuous. It saves as a sae_lens ``standard`` SAE (same inference architecture).

Inputs are scaled by one constant ``s`` so that their mean norm is ``sqrt(d_in)`` (sae_lens'
``expected_average_only_in`` convention) while training; ``s`` is folded back into the weights at the end,
so the returned SAE takes raw activations and its latent activations are those it was trained with.
"""

from __future__ import annotations

import math
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

ARCHITECTURES = ("standard", "topk", "panneal")


def p_anneal_schedule(
    n_steps: int,
    anneal_start: int,
    anneal_end: int | None = None,
    n_sparsity_updates: int = 10,
    p_start: float = 1.0,
    p_end: float = 0.2,
) -> list[float]:
    """The exponent p at every training step ``0 .. n_steps - 1`` (dictionary_learning's schedule).

    ``p_values = linspace(p_start, p_end, n)`` are taken in turn at the steps
    ``linspace(anneal_start, anneal_end, n)`` (rounded down; ``anneal_end`` defaults to ``n_steps - 1``);
    before the first of them p is ``p_start``. The first value equals ``p_start``, so p first moves at
    the second update step and reaches ``p_end`` at ``anneal_end``.

    Raises:
        ValueError: ``anneal_start`` outside ``[0, anneal_end]`` or ``n_sparsity_updates < 2``.
    """
    import torch

    end = n_steps - 1 if anneal_end is None else anneal_end
    if not 0 <= anneal_start <= end or n_sparsity_updates < 2:
        raise ValueError(f"need 0 <= anneal_start <= anneal_end and n_sparsity_updates >= 2, got {anneal_start}, {end}, {n_sparsity_updates}")
    steps = torch.linspace(anneal_start, end, n_sparsity_updates).long().tolist()
    values = torch.linspace(p_start, p_end, n_sparsity_updates).tolist()
    out, p, i = [], p_start, 0
    for step in range(n_steps):
        while i < len(steps) and step >= steps[i]:
            p, i = values[i], i + 1
        out.append(p)
    return out


def _lp(weighted: Any, p: float) -> Any:
    """``mean_batch sum_i w_i^p`` over positive entries only (0^p for p < 1 has an infinite gradient)."""
    import torch

    pos = weighted > 0
    return (torch.where(pos, weighted, torch.ones_like(weighted)).pow(p) * pos).sum(-1).mean()


def _panneal_classes() -> tuple[type, type]:
    """``(PAnnealTrainingSAEConfig, PAnnealTrainingSAE)``, built lazily so importing this module is cheap."""
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig

    @dataclass
    class PAnnealTrainingSAEConfig(StandardTrainingSAEConfig):
        """``StandardTrainingSAEConfig`` plus the p-annealing schedule; ``l1_coefficient`` is the initial alpha."""

        total_steps: int = 1000
        anneal_start: int = 0
        anneal_end: int | None = None
        n_sparsity_updates: int = 10
        p_start: float = 1.0
        p_end: float = 0.2
        sparsity_queue_length: int = 10

    class PAnnealTrainingSAE(StandardTrainingSAE):
        """ReLU SAE trained with the annealed ``L_p^p`` penalty (see the module docstring).

        Attributes:
            p_by_step: the schedule of :func:`p_anneal_schedule`.
            alpha_scale: the running product of the alpha rescalings (alpha = l1_coefficient x this).
            history: ``[(step, p, alpha_scale)]`` at every change of p.
        """

        def __init__(self, cfg: Any, use_error_term: bool = False) -> None:
            super().__init__(cfg, use_error_term)
            self.p_by_step = p_anneal_schedule(
                cfg.total_steps, cfg.anneal_start, cfg.anneal_end, cfg.n_sparsity_updates, cfg.p_start, cfg.p_end
            )
            self.alpha_scale = 1.0
            self.queue: deque = deque(maxlen=cfg.sparsity_queue_length)
            self.history: list[tuple[int, float, float]] = []

        def calculate_aux_loss(self, step_input, feature_acts, hidden_pre, sae_out):
            step = min(step_input.n_training_steps, len(self.p_by_step) - 1)
            p = self.p_by_step[step]
            previous = self.p_by_step[step - 1] if step > 0 else p
            weighted = feature_acts * self.W_dec.norm(dim=1)
            if p != previous and self.queue:
                old, new = map(sum, zip(*self.queue, strict=True))
                if new > 0:
                    self.alpha_scale *= old / new
                self.history.append((step, p, self.alpha_scale))
                self.queue.clear()
            following = self.p_by_step[min(step + 1, len(self.p_by_step) - 1)]
            lp = _lp(weighted, p)
            if following != p:
                with_next = _lp(weighted.detach(), following)
                self.queue.append((float(lp.detach()), float(with_next)))
            return {"lp_loss": step_input.coefficients["l1"] * self.alpha_scale * lp}

    return PAnnealTrainingSAEConfig, PAnnealTrainingSAE


def shuffled_batches(acts: Any, batch: int, seed: int) -> Iterator[Any]:
    """Endless ``batch``-row batches of ``acts``, reshuffled every epoch by a generator seeded with ``seed``
    (the last partial batch of an epoch is dropped): the data provider of sae_lens' ``SAETrainer``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(acts), generator=gen)
        for i in range(0, len(perm) - batch + 1, batch):
            yield acts[perm[i : i + batch]]


def _fold_scale(sae: Any, s: float) -> None:
    """Make an SAE trained on ``x * s`` take ``x``: latents unchanged, reconstruction in ``x`` units."""
    import torch

    with torch.no_grad():
        sae.W_enc.mul_(s)
        sae.W_dec.div_(s)
        sae.b_dec.div_(s)


def train_sae(
    acts: Any,
    hook_name: str,
    arch: Literal["standard", "topk", "panneal"],
    d_sae: int,
    seed: int,
    *,
    steps: int,
    batch: int = 4096,
    lr: float = 3e-4,
    k: int = 32,
    l1: float = 5.0,
    warmup_steps: int | None = None,
    anneal_start: int | None = None,
    model_name: str = "",
    sae_class: Any = None,
) -> Any:
    """Train an SAE of architecture ``arch`` on ``acts``; return it as an inference ``sae_lens.SAE``.

    Args:
        acts: ``Float[Tensor, "n d_in"]`` training activations (rows are shuffled; reused across epochs).
        hook_name: the hook point they come from; written into the SAE's metadata.
        arch: ``standard`` (L1), ``topk`` or ``panneal`` (see the module docstring).
        d_sae: number of latents (the board-game paper uses 8x or 16x d_model).
        seed: seeds the initialisation and the batch order.
        steps: optimiser steps; ``batch`` rows per step.
        lr: Adam learning rate (paper: 3e-4), warmed up over ``warmup_steps`` (default steps // 20),
            constant after (paper) — except ``topk``, whose lr decays to lr / 10 (cosine).
        k: active latents of ``topk``.
        l1: the sparsity coefficient of ``standard`` and the initial alpha of ``panneal``, for inputs
            scaled to mean norm sqrt(d_in).
        anneal_start: ``panneal``: step where p starts moving (default steps // 2).
        model_name: written into the SAE's metadata.
        sae_class: optional ``cls -> subclass``: given the sae_lens training-SAE class ``arch`` uses, returns
            the class to train instead (the sanity baselines of :mod:`deeprobe_bench.sanity_saes` constrain
            training this way, with this recipe and budget unchanged).

    Raises:
        ValueError: an unknown ``arch``, or ``acts`` with fewer rows than ``batch``.
    """
    import torch
    from sae_lens import (
        SAE,
        SAETrainer,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown SAE architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    acts = acts.detach().float()
    if len(acts) < batch:
        raise ValueError(f"{len(acts)} activation rows are fewer than one batch of {batch}")
    d_in = acts.shape[1]
    scale = math.sqrt(d_in) / float(acts.norm(dim=-1).mean())
    torch.manual_seed(seed)
    common = dict(
        d_in=d_in,
        d_sae=d_sae,
        normalize_activations="none",
        metadata=SAEMetadata(model_name=model_name, hook_name=hook_name, hook_head_index=None),
    )
    warmup = steps // 20 if warmup_steps is None else warmup_steps
    wrap = sae_class or (lambda cls: cls)
    if arch == "topk":
        sae = wrap(TopKTrainingSAE)(TopKTrainingSAEConfig(k=k, **common))
    elif arch == "standard":
        sae = wrap(StandardTrainingSAE)(StandardTrainingSAEConfig(l1_coefficient=l1, l1_warm_up_steps=warmup, **common))
    else:
        cfg_cls, sae_cls = _panneal_classes()
        start = steps // 2 if anneal_start is None else anneal_start
        sae = wrap(sae_cls)(cfg_cls(l1_coefficient=l1, total_steps=steps, anneal_start=start, **common))
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch,
        train_batch_size_samples=batch,
        lr=lr,
        lr_end=lr / 10 if arch == "topk" else lr,
        lr_scheduler_name="cosineannealing" if arch == "topk" else "constant",
        lr_warm_up_steps=warmup,
        lr_decay_steps=0,
        device="cpu",
        dead_feature_window=max(50, steps // 10),
        feature_sampling_window=max(100, steps // 5),
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        logger=LoggingConfig(log_to_wandb=False),
    )
    trained = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=shuffled_batches(acts * scale, batch, seed)).fit()
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        inference = SAE.load_from_disk(tmp)
    _fold_scale(inference, scale)
    inference.eval()
    inference.training_history = getattr(trained, "history", None)  # panneal: [(step, p, alpha_scale)]
    inference.training_record = getattr(trained, "record", None)  # sae_class's own record, if any
    return inference


def sae_quality(sae: Any, acts: Any) -> dict[str, float]:
    """Reconstruction quality of ``sae`` on held-out ``acts`` (``Float[Tensor, "n d_in"]``).

    Returns:
        ``explained_variance`` (1 - SSE / total sum of squares around the mean; 1 is perfect),
        ``l0`` (mean active latents per row), ``dead_fraction`` (latents never active on ``acts``, 0..1).
    """
    import torch

    x = acts.detach().float()
    with torch.no_grad():
        codes = sae.encode(x)
        recon = sae.decode(codes)
    active = codes != 0
    return {
        "explained_variance": 1 - float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()),
        "l0": float(active.float().sum(-1).mean()),
        "dead_fraction": float((~active.any(0)).float().mean()),
    }


@dataclass(frozen=True)
class SAESpec:
    """The numbers of a recipe's SAE stage (see :func:`train_sae` for their meaning).

    Attributes:
        d_sae: latents; steps, batch, lr: optimisation; k: TopK's active latents; l1: standard's L1
        coefficient and p-anneal's initial alpha; archs: the architectures to train (ids ``<hook>@<arch>``).
    """

    d_sae: int
    steps: int
    batch: int = 1024
    lr: float = 3e-4
    k: int = 32
    l1: float = 5.0
    archs: tuple[str, ...] = ARCHITECTURES

    def __post_init__(self) -> None:
        unknown = set(self.archs) - set(ARCHITECTURES)
        if unknown or self.d_sae < 1 or self.steps < 1 or self.batch < 1:
            raise ValueError(f"bad SAE spec {self} (architectures: {', '.join(ARCHITECTURES)})")


def sae_stage(
    acts: Any,
    eval_acts: Any,
    hook_name: str,
    spec: SAESpec,
    seed: int,
    work: Any = None,
    model_name: str = "",
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Train one SAE per architecture of ``spec`` at ``hook_name`` and measure it on held-out rows.

    Each finished SAE is stored under ``work/sae/<hook>@<arch>-<key>/`` with its ``quality.json``
    (sae_lens' own ``save_model`` files: safetensors + JSON), so a rerun skips it (resumable per SAE). The
    key hashes the spec, the seed and the training rows' values: rows of other model weights (a work
    directory restored to an earlier checkpoint and trained on) never reuse an SAE of the old ones.

    Args:
        acts: ``Float[Tensor, "n d_in"]`` training activations; eval_acts: ``Float[Tensor, "m d_in"]``
            held-out activations of the same hook (the rows the task measures).
        work: the run's work directory (``None``: nothing stored).

    Returns:
        ``({"<hook>@<arch>": sae_lens.SAE}, {arch: sae_quality on eval_acts + training facts})``.
    """
    import hashlib
    import json
    import time
    from dataclasses import asdict
    from pathlib import Path

    from sae_lens import SAE

    rows = hashlib.sha256(memoryview(acts.detach().float().contiguous().numpy())).hexdigest()
    key = hashlib.sha256(json.dumps({**asdict(spec), "seed": seed, "rows": rows}, sort_keys=True).encode()).hexdigest()[:12]
    saes, quality = {}, {}
    batch = min(spec.batch, len(acts))
    for arch in spec.archs:
        sid = f"{hook_name}@{arch}"
        path = Path(work) / "sae" / f"{sid}-{key}" if work is not None else None
        if path is not None and (path / "quality.json").exists():
            sae = SAE.load_from_disk(path)
            sae.eval()
            saes[sid], quality[arch] = sae, json.loads((path / "quality.json").read_text())
            continue
        t0 = time.time()
        sae = train_sae(acts, hook_name, arch, spec.d_sae, seed, steps=spec.steps, batch=batch, lr=spec.lr, k=spec.k,
                        l1=spec.l1, model_name=model_name)  # fmt: skip
        q: dict[str, Any] = {k: float(v) for k, v in sae_quality(sae, eval_acts).items()}
        q.update({"arch": arch, "d_sae": spec.d_sae, "steps": spec.steps, "batch": batch, "lr": spec.lr,
                  "n_activations": len(acts), "n_eval_rows": len(eval_acts), "wall_time_s": round(time.time() - t0, 1)})  # fmt: skip
        if arch == "topk":
            q["k"] = spec.k
        else:
            q["l1"] = spec.l1
        if path is not None:
            sae.save_model(path)
            tmp = path / "quality.json.tmp"
            tmp.write_text(json.dumps(q, sort_keys=True))
            tmp.replace(path / "quality.json")
        saes[sid], quality[arch] = sae, q
    return saes, quality
