"""Add the random-SAE sanity baselines to a trained zoo model (the zoo kit's stage for issue 18).

Korznikov et al. 2026 (arXiv 2602.14111) compare a trained SAE with three SAEs whose directions or
activation pattern stay random (:mod:`deeprobe_bench.sanity_saes`), each trained *with the recipe and budget
of the SAE it is compared with*. :func:`add_sanity_saes` does that for a model already in a zoo directory:
the task's recipe supplies the activation rows (the same source its SAE stage draws from) and the SAE
recipe from the model's card; the baselines are written beside the trained SAEs as
``saes/<hook>@<variant>/`` (sae_lens ``save_model`` files), with their quality, the base SAE's quality on
the same held-out rows, and what was constrained in the card's ``sanity_saes`` entry. The model's weights
and its other SAEs are left as they are (only the card and the new folders are written; the card last,
atomically, with its sha256 map recomputed).

Each recipe exposes this as ``sanity_saes(out_dir, seed)`` (the catalogue's ``sanity`` entry);
``deeprobe-bench zoo sanity NAME`` runs it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: ``train_sae`` keyword arguments a card's SAE recipe may carry
RECIPE_KEYS = ("steps", "batch", "lr", "k", "l1")


def add_sanity_saes(
    directory: Path,
    subject: Any,
    acts: Any,
    held: Any,
    base: str,
    d_sae: int,
    recipe: dict[str, Any],
    seed: int = 0,
    *,
    source: str = "",
    variants: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Train the sanity baselines of ``base`` at the model's task hook and add them to its zoo directory.

    Args:
        directory: the zoo model directory ``subject`` was loaded from (``card.json``, weights, ``saes/``).
        subject: the loaded model (:func:`deeprobe_bench.subject.load_zoo_dir`); its card names the hook
            (``task.hook_name``), and its SAE there is measured on ``held`` beside the baselines.
        acts: ``Float[Tensor, "n d_model"]`` training rows at that hook, drawn as the model's SAE stage draws them.
        held: ``Float[Tensor, "m d_model"]`` held-out rows the quality figures are measured on.
        base: the trained SAE's architecture (``topk``, ``standard``, ``panneal``); its recipe is reused.
        d_sae: latents (the trained SAE's).
        recipe: the trained SAE's ``train_sae`` keywords (``steps``, ``batch``, ``lr``, ``k``, ``l1``).
        seed: seeds the random initialisation and the batch order.
        source: one line saying where ``acts`` and ``held`` come from (written into the card).
        variants: which baselines (default: all of :data:`deeprobe_bench.sanity_saes.SANITY_ARCHS`).

    Returns:
        The card's new ``sanity_saes`` entry: ``{variant: quality + training record}`` plus ``base``.

    Raises:
        ValueError: an unknown variant or base, or fewer rows than one batch (from ``train_sae``).
    """
    from deeprobe_bench.sanity_saes import SANITY_ARCHS, train_sanity_sae
    from deeprobe_bench.subject import CARD, SAES, SHA256, zoo_file_digests
    from deeprobe_bench.zoo.sae import sae_quality

    directory = Path(directory)
    card = dict(subject.card)
    hook_name = card["task"]["hook_name"]
    base_sae = subject.sae_for(hook_name)
    kwargs = {k: recipe[k] for k in RECIPE_KEYS if recipe.get(k) is not None}
    entry: dict[str, Any] = {
        "base": base,
        "hook_name": hook_name,
        "d_sae": d_sae,
        "recipe": kwargs,
        "seed": seed,
        "activations": source,
        "n_activations": len(acts),
        "heldout_rows": len(held),
        "paper": "Korznikov et al. 2026, arXiv 2602.14111",
    }
    if base_sae is not None:
        entry["base_quality"] = sae_quality(base_sae, held)
    for variant in variants or SANITY_ARCHS:
        t0 = time.time()
        sae = train_sanity_sae(acts, hook_name, variant, d_sae, seed, base=base, **kwargs)
        quality = sae_quality(sae, held)
        entry[variant] = {**quality, **(sae.training_record or {}), "wall_time_s": round(time.time() - t0, 1)}
        logger.info("%s: %s@%s %s", directory.name, hook_name, variant, json.dumps(entry[variant]))
        final = directory / SAES / f"{hook_name}@{variant}"
        tmp = directory / SAES / f".{hook_name}@{variant}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        sae.save_model(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    card["sanity_saes"] = entry
    card[SHA256] = zoo_file_digests(directory)
    tmp_card = directory / (CARD + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp_card.replace(directory / CARD)
    return entry
