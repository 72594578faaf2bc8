"""The zoo recipe of a synthetic world: build it from its config, sample training activations, train its SAEs.

``deeprobe-bench zoo train synth-4k`` runs :func:`train`: the world (``worlds.world_config``, its own seed)
is saved under ``world/`` with ``SyntheticModel.save``; ``n_acts`` training activations are drawn with
seed ``TRAIN_SEED + seed`` (a stream the task's splits never use); on them, with one recipe and budget
(``worlds.SAE_RECIPES``; :func:`deeprobe_bench.sae_training.train_sae`): the ``standard`` (L1) and
``topk`` SAEs, and the three random baselines of Korznikov et al. 2026 (``frozen-decoder``,
``soft-frozen-decoder``, ``frozen-encoder``; :mod:`deeprobe_bench.sanity_saes`) built on the TopK recipe
from the TopK SAE's own random initialisation (same seed). ``card.json`` records the config, recipe,
seeds and each SAE's quality on held-out samples (explained variance, L0, dead fraction, feature recovery).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: seed offset of the SAE training stream (task splits use seeds below 10**6)
TRAIN_SEED = 7_000_000
#: seed of the held-out samples the card's quality figures are measured on
QUALITY_SEED = 8_000_000
#: SAE variants trained by the recipe, in order
VARIANTS = ("topk", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder", "standard")


def train(out_dir: Path, seed: int = 0, name: str = "synth-4k", variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Build world ``name`` into ``out_dir`` and train its SAEs; return the card (also written there).

    Raises:
        KeyError: unknown world name or variant.
    """
    import torch
    from sae_lens.synthetic import SyntheticModel

    from deeprobe_bench.sae_training import sae_quality, train_sae
    from deeprobe_bench.sanity_saes import SANITY_ARCHS, train_sanity_sae
    from deeprobe_bench.tasks.synthetic import data, worlds
    from deeprobe_bench.tasks.synthetic.metrics import recovery

    out = Path(out_dir)
    recipe = dict(worlds.SAE_RECIPES[name])
    t0 = time.perf_counter()
    world = SyntheticModel(worlds.world_config(name))
    if (out / "world").exists():
        shutil.rmtree(out / "world")
    if (out / "saes").exists():
        shutil.rmtree(out / "saes")  # trained on an earlier world
    world.save(out / "world")
    build_s = time.perf_counter() - t0
    train_set = data.sample(world, recipe["n_acts"], TRAIN_SEED + seed)
    held = data.sample(world, min(8192, recipe["n_acts"]), QUALITY_SEED + seed)
    planted = world.feature_dict.feature_vectors.detach()
    common = dict(steps=recipe["steps"], batch=recipe["batch"], lr=recipe["lr"], k=recipe["k"], l1=recipe["l1"],
                  model_name=name)  # fmt: skip
    saes: dict[str, Any] = {}
    quality: dict[str, Any] = {}
    card = {
        "name": name,
        "kind": "synthetic-world",
        "version": "1",
        "seed": seed,
        "world_config": world.cfg.to_dict(),
        "hook_name": worlds.HOOK,
        "default_sae_variant": "topk",
        "recipe": {
            **recipe,
            "base_of_sanity_baselines": "topk",
            "train_seed": TRAIN_SEED + seed,
            "quality_seed": QUALITY_SEED + seed,
            "variants": list(variants),
        },
        "quality": {"world_build_s": round(build_s, 1), "saes": quality},
        "source": "sae_lens.synthetic.SyntheticModel (SynthSAEBench); SAEs: deeprobe_bench.zoo.sae / sanity_saes",
    }
    _write_card(out, card)
    for variant in variants:
        t1 = time.perf_counter()
        logger.info("%s: training the %s SAE", name, variant)
        if variant in SANITY_ARCHS:
            sae = train_sanity_sae(train_set.acts, worlds.HOOK, variant, recipe["d_sae"], seed, base="topk", **common)
        elif variant in ("standard", "topk", "panneal"):
            sae = train_sae(train_set.acts, worlds.HOOK, variant, recipe["d_sae"], seed, **common)
        else:
            raise KeyError(f"unknown SAE variant {variant!r}")
        q = sae_quality(sae, held.acts)
        with torch.no_grad():
            q.update(recovery(sae.W_dec.detach().float(), planted))
        q["train_s"] = round(time.perf_counter() - t1, 1)
        if getattr(sae, "training_record", None):
            q["constraint"] = sae.training_record
        quality[variant] = q
        saes[f"{worlds.HOOK}@{variant}"] = sae
        (out / "saes").mkdir(parents=True, exist_ok=True)
        sae.save_model(out / "saes" / f"{worlds.HOOK}@{variant}")
        _write_card(out, card)  # after every SAE, so an interrupted run leaves a loadable world
        logger.info("%s %s: %s", name, variant, q)
    return card


def _write_card(out: Path, card: dict[str, Any]) -> None:
    tmp = out / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / "card.json")
