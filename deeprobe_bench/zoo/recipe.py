"""What every zoo recipe states: :class:`ZooRecipe`, the numbers of the language model and its SAE stage.

A task's ``Recipe`` (``tasks/<task>/recipe.py``) subclasses it with the numbers of its own data and
evaluation; the shipped recipe is one instance (``FULL``) and its smoke-test twin another (``TINY``).
:func:`recipe_args` is the command line every recipe module shares (``python -m <recipe module> --out DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.api import ConfigError, parse_config
from deeprobe_bench.zoo.lm import Schedule, transformer_config
from deeprobe_bench.zoo.sae import ARCHITECTURES, SAESpec


@dataclass(frozen=True, kw_only=True)
class ZooRecipe:
    """The model, its run, its threads, its SAE stage and the dtype it ships in. The fields are keyword-only
    and have no defaults (but ``decay_steps``, ``l1`` and ``weights_dtype``), so each instance states the
    whole model it trains.

    Attributes:
        n_layers, d_model, n_heads, d_head, d_mlp: the model's shape (``HookedTransformerConfig`` names).
        steps: optimizer steps; batch: sequences (games, documents) per step.
        lr, min_lr: peak and final learning rate; warmup_steps: linear warmup (:class:`Schedule`).
        decay_steps: the linear decay to ``min_lr`` takes the last this many steps (``None``: every step
            after the warmup, a warmup-then-linear-decay run).
        weight_decay: AdamW's, on parameters with 2 or more dimensions.
        threads: torch threads; results are bit-identical for a fixed count only.
        d_sae, k, l1, sae_steps, sae_batch, sae_lr: the SAE stage (:class:`deeprobe_bench.zoo.sae.SAESpec`:
            latents, TopK's active latents, the L1 coefficient of ``standard`` and p-anneal's initial alpha
            (``None``: the recipe trains TopK SAEs only), optimizer steps, activation rows per step, Adam's
            learning rate).
        weights_dtype: the dtype the model's weights ship in (:func:`deeprobe_bench.zoo.card.round_weights`:
            the card measures the rounded model); float16 keeps an 8-layer d_model-256 model under 16 MiB.
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    steps: int
    batch: int
    lr: float
    min_lr: float
    warmup_steps: int
    decay_steps: int | None = None
    weight_decay: float
    threads: int
    d_sae: int
    k: int
    l1: float | None = None
    sae_steps: int
    sae_batch: int
    sae_lr: float
    weights_dtype: str = "float32"

    def from_card(self, entry: dict[str, Any]) -> Any:
        """This recipe with the fields a zoo card's ``recipe`` entry records (what its model was trained with);
        the entry's other keys (training figures, the schedule) are ignored, and a field it lacks (a card of an
        older recipe) keeps this recipe's value."""
        names = {f.name for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in entry.items() if k in names})

    def transformer_config(self, name: str, *, n_ctx: int, d_vocab: int, **extra: Any) -> dict[str, Any]:
        """:func:`deeprobe_bench.zoo.lm.transformer_config` of this shape (``extra`` as there)."""
        return transformer_config(name, n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                                  d_head=self.d_head, d_mlp=self.d_mlp, n_ctx=n_ctx, d_vocab=d_vocab, **extra)  # fmt: skip

    def schedule(self) -> Schedule:
        """The run's :class:`Schedule` (its ``key()`` is what a work directory depends on)."""
        decay = self.steps - self.warmup_steps if self.decay_steps is None else self.decay_steps
        return Schedule(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps, decay_steps=max(0, decay),
                        min_lr=self.min_lr, weight_decay=self.weight_decay)  # fmt: skip

    def sae_kwargs(self, n_rows: int | None = None) -> dict[str, Any]:
        """:func:`deeprobe_bench.zoo.sae.train_sae` keywords (``steps``, ``batch``, ``lr``, ``k`` and ``l1`` where
        the recipe has one); ``n_rows`` (the activation rows there are) caps the batch."""
        batch = self.sae_batch if n_rows is None else min(self.sae_batch, n_rows)
        kwargs = {"steps": self.sae_steps, "batch": batch, "lr": self.sae_lr, "k": self.k}
        return kwargs if self.l1 is None else {**kwargs, "l1": self.l1}

    def sae_spec(self, archs: tuple[str, ...] = ARCHITECTURES, n_rows: int | None = None) -> SAESpec:
        """The SAE stage's :class:`SAESpec` for ``archs`` (``n_rows`` as in :meth:`sae_kwargs`).

        Raises:
            ValueError: an L1 architecture (``standard``, ``panneal``) in a TopK-only recipe (``l1`` None).
        """
        if self.l1 is None and set(archs) - {"topk"}:
            raise ValueError(f"this recipe trains TopK SAEs only (no l1), not {', '.join(archs)}")
        return SAESpec(d_sae=self.d_sae, archs=archs, **self.sae_kwargs(n_rows))


def recipe_args(
    description: str, full: ZooRecipe, tiny: ZooRecipe, argv: list[str] | None = None, *, out_required: bool = True,
    options: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> tuple[argparse.Namespace, Any, argparse.ArgumentParser]:
    """Parse a recipe module's command line: ``--out``, ``--seed``, ``--tiny`` (``tiny`` instead of ``full``) and
    ``--set KEY=VALUE`` (override a recipe field; repeatable), plus what ``options(parser)`` adds. Sets up INFO
    logging with timestamps, where a training run reports its progress.

    Returns:
        ``(args, recipe, parser)``: the recipe with the overrides applied.

    Raises:
        SystemExit (2, argparse's): an unknown option or field, or a value of the wrong type.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=out_required, default=None, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny configuration (for tests)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    recipe = tiny if args.tiny else full
    overrides = dict(kv.partition("=")[::2] for kv in args.set)
    try:
        recipe = parse_config(type(recipe), overrides, what=f"--set field of {type(recipe).__name__}", base=recipe)
    except ConfigError as e:
        parser.error(str(e))
    return args, recipe, parser
